-- A process that finds a dialog's reply lease held by another leaves a
-- request on the dialog instead of polling for the lease; the holder sees it
-- when it finishes or gives the lease up, and answers again.

ALTER TABLE dialogs ADD COLUMN reply_wanted BOOLEAN NOT NULL DEFAULT false;
