-- Defined ends for Redis-path orders under faults.

-- An order accepted in Redis that MySQL could not take as sold (the units were not there, or its
-- event could not be written) ends REJECTED, with the reason readable by the customer and listed
-- for operators, who may retry it after a restock.
ALTER TABLE orders
    MODIFY status ENUM('CONFIRMED', 'CANCELLED', 'REJECTED') NOT NULL,
    ADD COLUMN reject_reason VARCHAR(500) NULL AFTER cancelled_at,
    ADD COLUMN rejected_at DATETIME(3) NULL AFTER reject_reason,
    ADD KEY ix_orders_status (status, created_at);

-- Each time the service found that Redis had lost the data it had loaded (a restart without
-- persistence, a flush). Orders accepted in Redis between `since` and `detected_at` that never
-- reached MySQL were lost with it; a status look-up says so instead of "unknown".
CREATE TABLE redis_data_losses (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- When the lost data set was loaded (the epoch marker's time).
    since        DATETIME(3) NOT NULL,
    detected_at  DATETIME(3) NOT NULL,
    created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_redis_data_losses_since (since)
) ENGINE = InnoDB;
