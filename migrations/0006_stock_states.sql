-- Stock gets its states, and orders their way out of the building.
--
-- What both order paths decide on stays one figure per (location, product), now named for what it
-- is: `available` = onHand − committed − reserved, the figure Redis mirrors. `committed` counts the
-- units of persisted online orders not yet handed over; `reserved` the units held for checkouts.
-- onHand is not stored apart: it is available + committed + reserved, and may not fall below 0.
-- Existing data keeps its meaning: today's figure is onHand with nothing committed, and every
-- order placed before this migration counts as handed over.
ALTER TABLE stock
    MODIFY on_hand BIGINT NOT NULL;
ALTER TABLE stock
    RENAME COLUMN on_hand TO available,
    ADD COLUMN committed BIGINT NOT NULL DEFAULT 0 CHECK (committed >= 0) AFTER available,
    ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0) AFTER committed,
    -- The buffer online channels may not take; NULL: the location's default.
    ADD COLUMN safety_stock BIGINT NULL CHECK (safety_stock >= 0) AFTER reserved,
    ADD CONSTRAINT stock_on_hand_not_negative CHECK (available + committed + reserved >= 0);

ALTER TABLE locations
    ADD COLUMN safety_stock BIGINT NOT NULL DEFAULT 0 CHECK (safety_stock >= 0) AFTER longitude;

-- Each movement carries what it does to each state. `available_delta` is the change of the figure
-- the order paths decide on; onHand moves by available_delta + committed_delta (+ reserved later).
-- For every stock row: available = initial_quantity + Σ available_delta, committed = Σ
-- committed_delta.
ALTER TABLE stock_movements
    CHANGE delta available_delta BIGINT NOT NULL,
    ADD COLUMN committed_delta BIGINT NOT NULL DEFAULT 0 AFTER available_delta,
    ADD COLUMN on_hand_delta BIGINT AS (available_delta + committed_delta) STORED AFTER committed_delta,
    MODIFY reason ENUM('ORDER', 'CANCEL', 'FULFILLED', 'NOT_COLLECTED', 'POS_SALE', 'POS_RETURN',
                       'RESTOCK', 'ADJUST', 'COUNT', 'DAMAGED', 'RECONCILE') NOT NULL;

-- The order's way out: prepared, handed over. Steps only go forward.
ALTER TABLE orders
    ADD COLUMN fulfillment ENUM('UNFULFILLED', 'READY_FOR_PICKUP', 'COLLECTED', 'DISPATCHED',
                                'SHIPPED') NOT NULL DEFAULT 'UNFULFILLED' AFTER status,
    ADD COLUMN pickup_code CHAR(6) NULL AFTER fulfillment,
    ADD COLUMN wrong_codes INT NOT NULL DEFAULT 0 AFTER pickup_code,
    ADD COLUMN ready_at DATETIME(3) NULL AFTER wrong_codes,
    ADD COLUMN handed_over_at DATETIME(3) NULL AFTER ready_at,
    -- A store's work list: its orders at one step, oldest first.
    ADD KEY ix_orders_work (location_id, fulfillment, accepted_at, id);

UPDATE orders
SET fulfillment = CASE delivery_type
                      WHEN 'PICKUP' THEN 'COLLECTED'
                      WHEN 'IN_STORE' THEN 'COLLECTED'
                      WHEN 'SAME_DAY' THEN 'DISPATCHED'
                      ELSE 'SHIPPED'
                  END,
    handed_over_at = accepted_at
WHERE status = 'CONFIRMED';
