-- Messages to many users, with one delivery row per recipient so a restarted
-- broadcast never sends twice.

CREATE TABLE broadcasts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    text         TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('draft', 'scheduled', 'running', 'done', 'canceled')),
    scheduled_at TIMESTAMPTZ,
    sent         BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE broadcast_deliveries (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered    BOOLEAN NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);
