-- People, personas, dialogs, messages, memory and the inbound update inbox:
-- everything the chat path touches.

CREATE TABLE personas (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug                      TEXT NOT NULL UNIQUE,
    name                      TEXT NOT NULL,
    description               TEXT NOT NULL DEFAULT '',
    personality               TEXT NOT NULL DEFAULT '',
    scenario                  TEXT NOT NULL DEFAULT '',
    first_message             TEXT NOT NULL DEFAULT '',
    example_messages          TEXT NOT NULL DEFAULT '',
    system_prompt             TEXT NOT NULL DEFAULT '',
    post_history_instructions TEXT NOT NULL DEFAULT '',
    alternate_greetings       JSONB NOT NULL DEFAULT '[]',
    lorebook                  JSONB NOT NULL DEFAULT '[]',
    tags                      JSONB NOT NULL DEFAULT '[]',
    creator                   TEXT NOT NULL DEFAULT '',
    creator_notes             TEXT NOT NULL DEFAULT '',
    listed                    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                TIMESTAMPTZ NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL
);

CREATE TABLE persona_pictures (
    persona_id BIGINT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,
    mime       TEXT NOT NULL,
    bytes      BYTEA NOT NULL
);

CREATE TABLE users (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    telegram_id        BIGINT NOT NULL UNIQUE CHECK (telegram_id > 0),
    first_name         TEXT NOT NULL,
    last_name          TEXT,
    username           TEXT,
    language           TEXT,
    terms_version      INTEGER,
    terms_accepted_at  TIMESTAMPTZ,
    age_confirmed      BOOLEAN NOT NULL DEFAULT FALSE,
    blocked_bot        BOOLEAN NOT NULL DEFAULT FALSE,
    current_persona_id BIGINT REFERENCES personas (id) ON DELETE SET NULL,
    first_seen         TIMESTAMPTZ NOT NULL,
    last_seen          TIMESTAMPTZ NOT NULL
);

CREATE TABLE dialogs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    persona_id     BIGINT NOT NULL REFERENCES personas (id),
    active         BOOLEAN NOT NULL,
    intimacy_score BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
-- At most one active dialog per user and persona, even under concurrent opens.
CREATE UNIQUE INDEX dialogs_one_active ON dialogs (user_id, persona_id) WHERE active;

CREATE TABLE messages (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dialog_id           BIGINT NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    role                TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    text                TEXT NOT NULL,
    state               TEXT NOT NULL
                        CHECK (state IN ('pending', 'answered', 'failed', 'dropped', 'sent')),
    telegram_message_id BIGINT,
    update_id           BIGINT,
    reply_to            BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    model               TEXT,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_by_dialog ON messages (dialog_id, id);
-- The recovery sweep scans only unanswered messages.
CREATE INDEX messages_pending ON messages (created_at) WHERE state = 'pending';

CREATE TABLE memories (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dialog_id    BIGINT NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('summary', 'fact')),
    text         TEXT NOT NULL,
    covers_until BIGINT,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX memories_one_summary ON memories (dialog_id) WHERE kind = 'summary';
CREATE INDEX memories_by_dialog ON memories (dialog_id, id);

CREATE TABLE inbound_updates (
    update_id    BIGINT PRIMARY KEY CHECK (update_id >= 0),
    payload      JSONB NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased_until TIMESTAMPTZ,
    received_at  TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX inbound_updates_pending ON inbound_updates (update_id) WHERE state = 'pending';
