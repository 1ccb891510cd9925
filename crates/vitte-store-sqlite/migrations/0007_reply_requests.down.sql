ALTER TABLE dialogs DROP COLUMN reply_wanted;
