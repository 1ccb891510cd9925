-- Payments and what they buy: subscriptions, unlocks, credits.
-- Amounts are integer minor units (kopecks, single stars), never floats.

CREATE TABLE payments (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             BIGINT NOT NULL REFERENCES users (id),
    provider            TEXT NOT NULL CHECK (provider IN ('telegram_stars', 'yookassa')),
    provider_payment_id TEXT NOT NULL,
    amount_minor        BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency            TEXT NOT NULL,
    product             TEXT NOT NULL,
    state               TEXT NOT NULL
                        CHECK (state IN ('pending', 'succeeded', 'canceled', 'refunded')),
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    -- A repeated provider notification must map onto the same payment.
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX payments_by_user ON payments (user_id, id);

CREATE TABLE subscriptions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan       TEXT NOT NULL,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at),
    payment_id BIGINT REFERENCES payments (id)
);
CREATE INDEX subscriptions_by_user ON subscriptions (user_id, ends_at);

CREATE TABLE unlocks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    feature    TEXT NOT NULL,
    persona_id BIGINT REFERENCES personas (id) ON DELETE CASCADE,
    granted_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ
);
CREATE INDEX unlocks_by_user ON unlocks (user_id, feature);

CREATE TABLE credits (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('voice', 'image')),
    balance BIGINT NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (user_id, kind)
);

-- Every change of a balance, for support and audits.
CREATE TABLE credit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    delta      BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX credit_events_by_user ON credit_events (user_id, id);
