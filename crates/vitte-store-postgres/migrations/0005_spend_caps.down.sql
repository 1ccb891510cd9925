DROP INDEX dialogs_by_user;
DROP INDEX messages_usage_by_dialog;
DROP INDEX messages_usage_by_time;
