DROP INDEX messages_one_per_update;
ALTER TABLE dialogs
    DROP COLUMN reply_lease_until,
    DROP COLUMN reply_owner;
