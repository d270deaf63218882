-- Stock Flow schema: catalogue, locations, stock, orders, ledger, idempotency, POS credentials.

CREATE TABLE products (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku         VARCHAR(64)  NOT NULL,
    name        VARCHAR(200) NOT NULL,
    -- The only price there is: order lines copy it, clients never send one.
    price       BIGINT       NOT NULL CHECK (price >= 0),
    active      BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_products_sku (sku)
) ENGINE = InnoDB;

CREATE TABLE locations (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind           ENUM('WAREHOUSE', 'STORE') NOT NULL,
    name           VARCHAR(200) NOT NULL,
    latitude       DOUBLE       NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude      DOUBLE       NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    active         BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at     DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    KEY ix_locations_kind (kind, active)
) ENGINE = InnoDB;

-- On-hand stock per (location, product). The key starts with the location so that one order's rows
-- sit together and are always locked in the same (location, product) order.
CREATE TABLE stock (
    location_id       BIGINT UNSIGNED NOT NULL,
    product_id        BIGINT UNSIGNED NOT NULL,
    on_hand           BIGINT NOT NULL CHECK (on_hand >= 0),
    -- The figure the row started with; on_hand = initial_quantity + SUM(stock_movements.delta).
    initial_quantity  BIGINT NOT NULL,
    created_at        DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at        DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (location_id, product_id),
    KEY ix_stock_product (product_id),
    CONSTRAINT fk_stock_location FOREIGN KEY (location_id) REFERENCES locations (id),
    CONSTRAINT fk_stock_product FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;

-- Orders of every path. `ACCEPTED` exists only in Redis: a row here is at least `CONFIRMED`.
CREATE TABLE orders (
    id                  VARCHAR(64) NOT NULL PRIMARY KEY,
    path                ENUM('DB_LOCK', 'REDIS', 'POS') NOT NULL,
    delivery_type       ENUM('NORMAL', 'SAME_DAY', 'PICKUP', 'IN_STORE') NOT NULL,
    status              ENUM('CONFIRMED', 'CANCELLED') NOT NULL,
    location_id         BIGINT UNSIGNED NOT NULL,
    distance_km         DOUBLE NULL,
    delivery_latitude   DOUBLE NULL,
    delivery_longitude  DOUBLE NULL,
    total_amount        BIGINT NOT NULL,
    -- When the order was decided (for the Redis path: when the script accepted it).
    accepted_at         DATETIME(3) NOT NULL,
    cancelled_at        DATETIME(3) NULL,
    created_at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    KEY ix_orders_location (location_id, created_at),
    CONSTRAINT fk_orders_location FOREIGN KEY (location_id) REFERENCES locations (id)
) ENGINE = InnoDB;

CREATE TABLE order_lines (
    order_id    VARCHAR(64) NOT NULL,
    product_id  BIGINT UNSIGNED NOT NULL,
    quantity    INT NOT NULL CHECK (quantity > 0),
    unit_price  BIGINT NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id, product_id),
    CONSTRAINT fk_order_lines_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB;

-- Append-only ledger: every change of stock, signed, with why and what caused it.
CREATE TABLE stock_movements (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    location_id  BIGINT UNSIGNED NOT NULL,
    product_id   BIGINT UNSIGNED NOT NULL,
    delta        BIGINT NOT NULL,
    reason       ENUM('ORDER', 'CANCEL', 'POS_SALE', 'POS_RETURN', 'RESTOCK', 'ADJUST', 'RECONCILE') NOT NULL,
    ref_id       VARCHAR(64) NOT NULL,
    created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY ix_stock_movements_stock (location_id, product_id),
    KEY ix_stock_movements_ref (ref_id)
) ENGINE = InnoDB;

-- Idempotency keys of order creation, per scope (DB_LOCK, REDIS, POS:<store>).
CREATE TABLE idempotency_keys (
    scope        VARCHAR(32)  NOT NULL,
    idem_key     VARCHAR(128) NOT NULL,
    fingerprint  CHAR(64)     NOT NULL,
    order_id     VARCHAR(64)  NULL,
    response     LONGTEXT     NULL,
    created_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at   DATETIME(3)  NOT NULL,
    PRIMARY KEY (scope, idem_key),
    KEY ix_idempotency_keys_expires (expires_at)
) ENGINE = InnoDB;

-- POS credentials: only a SHA-256 of the key is kept; the key itself is shown once.
CREATE TABLE store_keys (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    store_id    BIGINT UNSIGNED NOT NULL,
    key_hash    CHAR(64) NOT NULL,
    label       VARCHAR(100) NOT NULL DEFAULT '',
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at  DATETIME(3) NULL,
    UNIQUE KEY uq_store_keys_hash (key_hash),
    KEY ix_store_keys_store (store_id),
    CONSTRAINT fk_store_keys_store FOREIGN KEY (store_id) REFERENCES locations (id)
) ENGINE = InnoDB;

-- Runs of the scheduled jobs, for the operators' view.
CREATE TABLE job_runs (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job             VARCHAR(32) NOT NULL,
    instance        VARCHAR(64) NOT NULL,
    started_at      DATETIME(3) NOT NULL,
    duration_ms     BIGINT NOT NULL,
    ok              BOOLEAN NOT NULL,
    keys_checked    BIGINT NOT NULL DEFAULT 0,
    keys_repaired   BIGINT NOT NULL DEFAULT 0,
    ledger_mismatches BIGINT NOT NULL DEFAULT 0,
    details         LONGTEXT NULL,
    created_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY ix_job_runs_job (job, started_at)
) ENGINE = InnoDB;
