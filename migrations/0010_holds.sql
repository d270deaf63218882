-- Checkout holds: units set aside while a customer pays, released on time, converted once.
--
-- A hold is MySQL-first, like a DB-lock order: its row, its lines and its ledger rows are written
-- in the transaction that moves its units from `available` to `reserved`, so it is as durable as
-- an order. `status` is what was last written; a hold whose `expires_at` has passed reads
-- `EXPIRED` before the expiry job writes it (one rule, in persistence/src/holds/decide.rs).
CREATE TABLE holds (
    id                  VARCHAR(64) NOT NULL PRIMARY KEY,
    delivery_type       ENUM('NORMAL', 'SAME_DAY', 'PICKUP') NOT NULL,
    status              ENUM('ACTIVE', 'CONVERTED', 'RELEASED', 'EXPIRED') NOT NULL,
    location_id         BIGINT UNSIGNED NOT NULL,
    distance_km         DOUBLE NULL,
    delivery_latitude   DOUBLE NULL,
    delivery_longitude  DOUBLE NULL,
    total_amount        BIGINT NOT NULL,
    -- The order the hold became (status CONVERTED).
    order_id            VARCHAR(64) NULL,
    expires_at          DATETIME(3) NOT NULL,
    created_at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    -- When the hold left ACTIVE.
    ended_at            DATETIME(3) NULL,
    -- The expiry job's work list: active holds, soonest first.
    KEY ix_holds_expiry (status, expires_at),
    UNIQUE KEY uq_holds_order (order_id),
    CONSTRAINT fk_holds_location FOREIGN KEY (location_id) REFERENCES locations (id)
) ENGINE = InnoDB;

-- A hold's lines, with the price the hold was given (the order made from it keeps it).
CREATE TABLE hold_lines (
    hold_id     VARCHAR(64) NOT NULL,
    product_id  BIGINT UNSIGNED NOT NULL,
    quantity    INT NOT NULL CHECK (quantity > 0),
    unit_price  BIGINT NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (hold_id, product_id),
    CONSTRAINT fk_hold_lines_hold FOREIGN KEY (hold_id) REFERENCES holds (id)
) ENGINE = InnoDB;

-- The ledger learns `reserved`: for every stock row, reserved = Σ reserved_delta = the units of
-- its ACTIVE holds, and onHand moves by the sum of the three deltas (MariaDB cannot change a
-- generated column's expression in place, so it is dropped and added again).
ALTER TABLE stock_movements
    ADD COLUMN reserved_delta BIGINT NOT NULL DEFAULT 0 AFTER committed_delta,
    DROP COLUMN on_hand_delta,
    MODIFY reason ENUM('ORDER', 'CANCEL', 'FULFILLED', 'NOT_COLLECTED', 'POS_SALE', 'POS_RETURN',
                       'RESTOCK', 'ADJUST', 'COUNT', 'DAMAGED', 'RECONCILE', 'HOLD',
                       'HOLD_RELEASED', 'HOLD_EXPIRED', 'HOLD_CONVERTED') NOT NULL;
ALTER TABLE stock_movements
    ADD COLUMN on_hand_delta BIGINT AS (available_delta + committed_delta + reserved_delta) STORED
        AFTER reserved_delta;
