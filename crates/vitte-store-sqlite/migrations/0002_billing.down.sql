DROP TABLE credit_events;
DROP TABLE credits;
DROP TABLE unlocks;
DROP TABLE subscriptions;
DROP TABLE payments;
