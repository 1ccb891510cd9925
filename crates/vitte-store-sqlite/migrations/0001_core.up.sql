-- People, personas, dialogs, messages, memory and the inbound update inbox:
-- everything the chat path touches.
--
-- SQLite translation of the PostgreSQL schema: STRICT tables so a value of the
-- wrong type is refused as PostgreSQL would refuse it; ids are INTEGER PRIMARY
-- KEY; timestamps are INTEGER microseconds since the Unix epoch (they compare
-- and sort correctly, unlike text of varying precision); JSON is TEXT checked
-- with json_valid; booleans are INTEGER 0/1.

CREATE TABLE personas (
    id                        INTEGER PRIMARY KEY,
    slug                      TEXT NOT NULL UNIQUE,
    name                      TEXT NOT NULL,
    description               TEXT NOT NULL DEFAULT '',
    personality               TEXT NOT NULL DEFAULT '',
    scenario                  TEXT NOT NULL DEFAULT '',
    first_message             TEXT NOT NULL DEFAULT '',
    example_messages          TEXT NOT NULL DEFAULT '',
    system_prompt             TEXT NOT NULL DEFAULT '',
    post_history_instructions TEXT NOT NULL DEFAULT '',
    alternate_greetings       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(alternate_greetings)),
    lorebook                  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(lorebook)),
    tags                      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    creator                   TEXT NOT NULL DEFAULT '',
    creator_notes             TEXT NOT NULL DEFAULT '',
    listed                    INTEGER NOT NULL DEFAULT 1 CHECK (listed IN (0, 1)),
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
) STRICT;

CREATE TABLE persona_pictures (
    persona_id INTEGER PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
    mime       TEXT NOT NULL,
    bytes      BLOB NOT NULL
) STRICT;

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY,
    telegram_id        INTEGER NOT NULL UNIQUE CHECK (telegram_id > 0),
    first_name         TEXT NOT NULL,
    last_name          TEXT,
    username           TEXT,
    language           TEXT,
    terms_version      INTEGER,
    terms_accepted_at  INTEGER,
    age_confirmed      INTEGER NOT NULL DEFAULT 0 CHECK (age_confirmed IN (0, 1)),
    blocked_bot        INTEGER NOT NULL DEFAULT 0 CHECK (blocked_bot IN (0, 1)),
    current_persona_id INTEGER REFERENCES personas (id) ON DELETE SET NULL,
    first_seen         INTEGER NOT NULL,
    last_seen          INTEGER NOT NULL
) STRICT;

CREATE TABLE dialogs (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    persona_id     INTEGER NOT NULL REFERENCES personas (id),
    active         INTEGER NOT NULL CHECK (active IN (0, 1)),
    intimacy_score INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
-- At most one active dialog per user and persona, even under concurrent opens.
CREATE UNIQUE INDEX dialogs_one_active ON dialogs (user_id, persona_id) WHERE active;

CREATE TABLE messages (
    id                  INTEGER PRIMARY KEY,
    dialog_id           INTEGER NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    role                TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    text                TEXT NOT NULL,
    state               TEXT NOT NULL
                        CHECK (state IN ('pending', 'answered', 'failed', 'dropped', 'sent')),
    telegram_message_id INTEGER,
    update_id           INTEGER,
    reply_to            INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    model               TEXT,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    created_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_dialog ON messages (dialog_id, id);
-- The recovery sweep scans only unanswered messages.
CREATE INDEX messages_pending ON messages (created_at) WHERE state = 'pending';

CREATE TABLE memories (
    id           INTEGER PRIMARY KEY,
    dialog_id    INTEGER NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('summary', 'fact')),
    text         TEXT NOT NULL,
    covers_until INTEGER,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX memories_one_summary ON memories (dialog_id) WHERE kind = 'summary';
CREATE INDEX memories_by_dialog ON memories (dialog_id, id);

CREATE TABLE inbound_updates (
    update_id    INTEGER PRIMARY KEY CHECK (update_id >= 0),
    payload      TEXT NOT NULL CHECK (json_valid(payload)),
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased_until INTEGER,
    received_at  INTEGER NOT NULL,
    finished_at  INTEGER
) STRICT;
CREATE INDEX inbound_updates_pending ON inbound_updates (update_id) WHERE state = 'pending';
