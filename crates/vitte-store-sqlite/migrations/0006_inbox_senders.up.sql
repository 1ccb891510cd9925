-- Updates of one sender are handed out one at a time, oldest first, so
-- that two processes never handle one person's updates out of order. The
-- sender is taken from the payload when the update is stored.

ALTER TABLE inbound_updates ADD COLUMN sender INTEGER;
UPDATE inbound_updates SET sender = (
    SELECT id FROM (
        SELECT 1 AS n, json_extract(payload, '$.message.from.id') AS id
        UNION ALL SELECT 2, json_extract(payload, '$.edited_message.from.id')
        UNION ALL SELECT 3, json_extract(payload, '$.callback_query.from.id')
        UNION ALL SELECT 4, json_extract(payload, '$.pre_checkout_query.from.id'))
    WHERE typeof(id) = 'integer'
    ORDER BY n
    LIMIT 1)
WHERE state = 'pending';
CREATE INDEX inbound_updates_pending_by_sender ON inbound_updates (sender, update_id)
    WHERE state = 'pending';
