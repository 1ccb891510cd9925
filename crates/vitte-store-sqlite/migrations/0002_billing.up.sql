-- Payments and what they buy: subscriptions, unlocks, credits.
-- Amounts are integer minor units (kopecks, single stars), never floats.
-- Timestamps are INTEGER microseconds since the Unix epoch.

CREATE TABLE payments (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id),
    provider            TEXT NOT NULL CHECK (provider IN ('telegram_stars', 'yookassa')),
    provider_payment_id TEXT NOT NULL,
    amount_minor        INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency            TEXT NOT NULL,
    product             TEXT NOT NULL,
    state               TEXT NOT NULL
                        CHECK (state IN ('pending', 'succeeded', 'canceled', 'refunded')),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- A repeated provider notification must map onto the same payment.
    UNIQUE (provider, provider_payment_id)
) STRICT;
CREATE INDEX payments_by_user ON payments (user_id, id);

CREATE TABLE subscriptions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan       TEXT NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL CHECK (ends_at > starts_at),
    payment_id INTEGER REFERENCES payments (id)
) STRICT;
CREATE INDEX subscriptions_by_user ON subscriptions (user_id, ends_at);

CREATE TABLE unlocks (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    feature    TEXT NOT NULL,
    persona_id INTEGER REFERENCES personas (id) ON DELETE CASCADE,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;
CREATE INDEX unlocks_by_user ON unlocks (user_id, feature);

CREATE TABLE credits (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('voice', 'image')),
    balance INTEGER NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (user_id, kind)
) STRICT;

-- Every change of a balance, for support and audits.
CREATE TABLE credit_events (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    delta      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX credit_events_by_user ON credit_events (user_id, id);
