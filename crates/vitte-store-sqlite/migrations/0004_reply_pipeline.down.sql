DROP INDEX messages_one_per_update;
ALTER TABLE dialogs DROP COLUMN reply_lease_until;
ALTER TABLE dialogs DROP COLUMN reply_owner;
