-- The dispatcher claims an endpoint's due deliveries in feed order, a few at a time: walked in
-- `seq` order from this index, a claim reads about as many rows as it takes, however long the
-- backlog (by `next_attempt_at` it sorted every due row of the backlog on every claim).
ALTER TABLE webhook_deliveries
    ADD KEY ix_webhook_deliveries_pending_seq (endpoint_id, status, seq);
