-- Spend caps sum the token usage of today's replies before every reply:
-- everyone's by time, and one person's through their dialogs. Only replies
-- carry a model, so both indexes hold only those rows.

CREATE INDEX messages_usage_by_time ON messages (created_at) WHERE model IS NOT NULL;
CREATE INDEX messages_usage_by_dialog ON messages (dialog_id, created_at) WHERE model IS NOT NULL;
-- All of a person's dialogs, including those /reset deactivated.
CREATE INDEX dialogs_by_user ON dialogs (user_id);
