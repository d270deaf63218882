-- Events out: every event is written to `events` (an outbox) in the transaction of the change that
-- causes it, given its place in the feed once it has committed, and delivered to the operators'
-- webhook endpoints from MySQL.

CREATE TABLE events (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- The Standard Webhooks message id (`webhook-id`): the same on every delivery of the event.
    event_id    VARCHAR(40) NOT NULL,
    type        VARCHAR(40) NOT NULL,
    -- What the event is about, the key its deliveries keep the order of: an order id, a hold id,
    -- or `stock:<location>:<product>`.
    subject     VARCHAR(64) NOT NULL,
    -- The channel whose order or hold it is (NULL: none; stock events and till sales).
    channel_id  BIGINT UNSIGNED NULL,
    -- The event's payload, `{"type", "timestamp", "data"}`, exactly as it is sent.
    payload     MEDIUMTEXT NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    -- Its place in the feed, given after it committed, in commit order (NULL until then): the
    -- feed's cursor, and the order in which deliveries are made.
    seq         BIGINT UNSIGNED NULL,
    UNIQUE KEY uq_events_event_id (event_id),
    UNIQUE KEY uq_events_seq (seq),
    KEY ix_events_channel_seq (channel_id, seq)
) ENGINE = InnoDB;

-- Below this many sellable units a location's product is low (`stock.low`); 0: no low events,
-- only `stock.out` and `stock.back`.
ALTER TABLE locations
    ADD COLUMN low_stock_threshold BIGINT NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0)
    AFTER safety_stock;

CREATE TABLE webhook_endpoints (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    url               VARCHAR(2000) NOT NULL,
    description       VARCHAR(500) NOT NULL DEFAULT '',
    -- The event types it receives, comma-separated.
    event_types       VARCHAR(1000) NOT NULL,
    -- `whsec_<base64>`; kept as it is, since deliveries are signed with it.
    secret            VARCHAR(100) NOT NULL,
    -- The secret before the last rotation, still signing until `previous_until`.
    previous_secret   VARCHAR(100) NULL,
    previous_until    DATETIME(3) NULL,
    enabled           TINYINT(1) NOT NULL DEFAULT 1,
    disabled_reason   VARCHAR(500) NULL,
    disabled_at       DATETIME(3) NULL,
    -- Since when every attempt has failed (NULL: the last attempt succeeded).
    failing_since     DATETIME(3) NULL,
    -- The feed position up to which its deliveries have been created.
    fanned_to_seq     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at        DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at        DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB;

-- One event for one endpoint.
CREATE TABLE webhook_deliveries (
    endpoint_id      BIGINT UNSIGNED NOT NULL,
    seq              BIGINT UNSIGNED NOT NULL,
    subject          VARCHAR(64) NOT NULL,
    status           ENUM('PENDING', 'DELIVERED', 'FAILED') NOT NULL DEFAULT 'PENDING',
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_attempt_at  DATETIME(3) NULL,
    last_status_code SMALLINT NULL,
    last_error       VARCHAR(500) NULL,
    delivered_at     DATETIME(3) NULL,
    created_at       DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (endpoint_id, seq),
    KEY ix_webhook_deliveries_due (endpoint_id, status, next_attempt_at),
    KEY ix_webhook_deliveries_subject (endpoint_id, subject, seq),
    CONSTRAINT fk_webhook_deliveries_endpoint FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- Every attempt of a delivery, for the operators' view.
CREATE TABLE webhook_attempts (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    endpoint_id  BIGINT UNSIGNED NOT NULL,
    seq          BIGINT UNSIGNED NOT NULL,
    status_code  SMALLINT NULL,
    error        VARCHAR(500) NULL,
    duration_ms  INT NOT NULL,
    created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY ix_webhook_attempts_delivery (endpoint_id, seq),
    CONSTRAINT fk_webhook_attempts_endpoint FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- Leases of MySQL-only work: held by one instance until `until`, then free for another.
CREATE TABLE leases (
    name        VARCHAR(40) NOT NULL PRIMARY KEY,
    holder      VARCHAR(100) NOT NULL,
    until       DATETIME(3) NOT NULL
) ENGINE = InnoDB;

-- `stock.low`, `stock.out` and `stock.back`, once per crossing, written by the change itself,
-- whichever writer makes it. `sellableOnline` is the rule of `Need::Sellable`
-- (persistence/src/orders/ledger.rs): available less the product's safety stock, else the
-- location's, and never below 0. With `t` the location's `low_stock_threshold`:
--   stock.low   it went from above t to t or below (t > 0);
--   stock.out   it went from above 0 to 0;
--   stock.back  it went from 0 to above 0.
-- One change may cross two (20 to 0: low, then out). A new row is no crossing.
CREATE TRIGGER stock_crossings AFTER UPDATE ON stock FOR EACH ROW
INSERT INTO events (event_id, type, subject, payload)
SELECT CONCAT('msg_', REPLACE(UUID(), '-', '')), c.type,
       CONCAT('stock:', NEW.location_id, ':', NEW.product_id),
       JSON_OBJECT(
           'type', c.type,
           'timestamp', CONCAT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.'),
                               LPAD(FLOOR(MICROSECOND(UTC_TIMESTAMP(3)) / 1000), 3, '0'), 'Z'),
           'data', JSON_OBJECT(
               'locationId', NEW.location_id,
               'productId', NEW.product_id,
               'sellableOnline', u.now_units,
               'lowStockThreshold', u.threshold))
FROM (
    SELECT GREATEST(OLD.available - COALESCE(OLD.safety_stock, l.safety_stock), 0) AS was_units,
           GREATEST(NEW.available - COALESCE(NEW.safety_stock, l.safety_stock), 0) AS now_units,
           l.low_stock_threshold AS threshold
    FROM locations l WHERE l.id = NEW.location_id
) u
JOIN (
    SELECT 1 AS rank, 'stock.low' AS type
    UNION ALL SELECT 2, 'stock.out'
    UNION ALL SELECT 3, 'stock.back'
) c ON (c.type = 'stock.low' AND u.threshold > 0 AND u.was_units > u.threshold
            AND u.now_units <= u.threshold)
    OR (c.type = 'stock.out' AND u.was_units > 0 AND u.now_units = 0)
    OR (c.type = 'stock.back' AND u.was_units = 0 AND u.now_units > 0)
ORDER BY c.rank;
