-- Fulfilment steps: why the service itself cancelled an order, and what the not-collected job
-- looks for.
--
-- `cancel_reason` is set only by the service's own cancels (`NOT_COLLECTED`: a pickup left ready
-- longer than PICKUP_EXPIRY); a customer's or an operator's cancel leaves it NULL.
ALTER TABLE orders
    ADD COLUMN cancel_reason VARCHAR(32) NULL AFTER cancelled_at,
    -- The not-collected job: ready pickups, the longest waiting first.
    ADD KEY ix_orders_ready (fulfillment, ready_at);
