-- Messages to many users, with one delivery row per recipient so a restarted
-- broadcast never sends twice. Timestamps are INTEGER microseconds since the
-- Unix epoch.

CREATE TABLE broadcasts (
    id           INTEGER PRIMARY KEY,
    text         TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('draft', 'scheduled', 'running', 'done', 'canceled')),
    scheduled_at INTEGER,
    sent         INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE broadcast_deliveries (
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered    INTEGER NOT NULL CHECK (delivered IN (0, 1)),
    at           INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
) STRICT;
