-- The reply pipeline across processes: a lease per dialog so that one
-- process at a time generates its reply (a crashed owner's lease runs out),
-- and one message per Telegram update so a handler that re-runs after a
-- crash finds the message it stored instead of storing it twice.

ALTER TABLE dialogs
    ADD COLUMN reply_owner       TEXT,
    ADD COLUMN reply_lease_until TIMESTAMPTZ;

-- Messages stored twice from one update before this index existed keep
-- their text; only the oldest keeps the link to the update.
UPDATE messages SET update_id = NULL
WHERE update_id IS NOT NULL
  AND id NOT IN (SELECT MIN(id) FROM messages WHERE update_id IS NOT NULL GROUP BY update_id);

CREATE UNIQUE INDEX messages_one_per_update ON messages (update_id) WHERE update_id IS NOT NULL;
