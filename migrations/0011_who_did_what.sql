-- Who did what: sales channels with their keys, named operators with roles, the actor of every
-- ledger row, and the operators' audit trail.
--
-- Keys and tokens are kept only as SHA-256 hashes, like `store_keys`; revoking sets `revoked_at`.

-- A sales channel (the web shop, an app): orders and holds remember the channel that placed them.
CREATE TABLE channels (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(100) NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uq_channels_name (name)
) ENGINE = InnoDB;

CREATE TABLE channel_keys (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel_id  BIGINT UNSIGNED NOT NULL,
    key_hash    CHAR(64) NOT NULL,
    label       VARCHAR(100) NOT NULL DEFAULT '',
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at  DATETIME(3) NULL,
    UNIQUE KEY uq_channel_keys_hash (key_hash),
    KEY ix_channel_keys_channel (channel_id),
    CONSTRAINT fk_channel_keys_channel FOREIGN KEY (channel_id) REFERENCES channels (id)
) ENGINE = InnoDB;

-- Named operators. `ADMIN_TOKEN` acts as the operator named `bootstrap` (role admin), created at
-- start; every other operator is created by an administrator and has a token of its own.
CREATE TABLE operators (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(100) NOT NULL,
    role        ENUM('admin', 'stock', 'viewer') NOT NULL,
    -- NULL for `bootstrap`, whose token is the configured ADMIN_TOKEN.
    token_hash  CHAR(64) NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at  DATETIME(3) NULL,
    UNIQUE KEY uq_operators_name (name),
    UNIQUE KEY uq_operators_token (token_hash)
) ENGINE = InnoDB;

-- The channel an order or a hold was placed by (NULL: placed with SHOP_AUTH=off, or before
-- channels existed).
ALTER TABLE orders ADD COLUMN channel_id BIGINT UNSIGNED NULL;
ALTER TABLE holds ADD COLUMN channel_id BIGINT UNSIGNED NULL;

-- Every ledger row names its actor: `operator:<id>`, `store-key:<id>`, `channel:<id>` or
-- `system:<job>` (`channel:none` for a shop write made with SHOP_AUTH=off). Operators' changes
-- may carry a free-text note and a reference (a delivery note number), and the request id.
ALTER TABLE stock_movements
    ADD COLUMN actor      VARCHAR(40) NOT NULL DEFAULT 'system:before-actors',
    ADD COLUMN note       VARCHAR(500) NULL,
    ADD COLUMN reference  VARCHAR(100) NULL,
    ADD COLUMN request_id VARCHAR(64) NULL;

-- Operators' actions other than stock changes (those are in the ledger): keys and operators
-- issued or revoked, locations and products changed, retries, replays, job runs.
CREATE TABLE audit_log (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor       VARCHAR(40) NOT NULL,
    action      VARCHAR(40) NOT NULL,
    subject     VARCHAR(100) NOT NULL,
    detail      TEXT NULL,
    request_id  VARCHAR(64) NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB;
