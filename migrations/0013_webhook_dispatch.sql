-- Webhook deliveries: when a delivery was first tried, so that it is retried for its whole
-- window (at least 24 h) from then, however long it waited behind an earlier event of its
-- subject.

ALTER TABLE webhook_deliveries
    ADD COLUMN first_attempt_at DATETIME(3) NULL AFTER attempts;

-- The dispatcher sends a delivery only when no earlier delivery of its endpoint and subject is
-- still pending: found here without reading the subject's whole history.
ALTER TABLE webhook_deliveries
    ADD KEY ix_webhook_deliveries_subject_status (endpoint_id, subject, status, seq);

-- The figures the metrics show (deliveries pending, the oldest of them) without reading the
-- delivered history.
ALTER TABLE webhook_deliveries
    ADD KEY ix_webhook_deliveries_status (status, created_at);

-- Housekeeping removes old events with their deliveries and attempts by `seq`, and keeps an
-- event a delivery still waits for: found by `seq` without reading every endpoint's rows.
ALTER TABLE webhook_deliveries
    ADD KEY ix_webhook_deliveries_seq (seq, status);
ALTER TABLE webhook_attempts
    ADD KEY ix_webhook_attempts_seq (seq);
