-- Updates of one sender are handed out one at a time, oldest first, so
-- that two processes never handle one person's updates out of order. The
-- sender is taken from the payload when the update is stored.

ALTER TABLE inbound_updates ADD COLUMN sender BIGINT;
UPDATE inbound_updates SET sender = (
    SELECT (v ->> 'id')::BIGINT
    FROM (VALUES
        (1, payload -> 'message' -> 'from'),
        (2, payload -> 'edited_message' -> 'from'),
        (3, payload -> 'callback_query' -> 'from'),
        (4, payload -> 'pre_checkout_query' -> 'from')) AS f (n, v)
    WHERE jsonb_typeof(v -> 'id') = 'number' AND (v ->> 'id') ~ '^-?[0-9]{1,18}$'
    ORDER BY n
    LIMIT 1)
WHERE state = 'pending';
CREATE INDEX inbound_updates_pending_by_sender ON inbound_updates (sender, update_id)
    WHERE state = 'pending';
