-- Stock keys written on MySQL alone while Redis was unreachable: the Redis figure may differ from
-- MySQL's until the key is set from MySQL, which happens before Redis decides any order again.
-- A row is written in the same transaction as the write, so the mark survives a crash of the
-- instance that made it, and every instance sees it.
CREATE TABLE redis_stale_keys (
    location_id BIGINT UNSIGNED NOT NULL,
    product_id  BIGINT UNSIGNED NOT NULL,
    -- The latest write on MySQL alone.
    marked_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (location_id, product_id)
) ENGINE = InnoDB;
