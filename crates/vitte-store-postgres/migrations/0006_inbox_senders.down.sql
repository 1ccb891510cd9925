DROP INDEX inbound_updates_pending_by_sender;
ALTER TABLE inbound_updates DROP COLUMN sender;
