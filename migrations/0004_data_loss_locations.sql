-- Redis keeps each location's data on one slot (one shard of a cluster), with the location's own
-- epoch marker, so a loss is detected per location: a shard that loses its data loses only its
-- locations. A loss now lists the locations it hit; two losses of the same loaded data set (two
-- shards, at different times) are two rows.
ALTER TABLE redis_data_losses
    ADD COLUMN locations TEXT NOT NULL DEFAULT '' AFTER since,
    -- SHA-256 of `locations`: with `since`, what makes a loss the same loss (two instances that
    -- notice it record it once).
    ADD COLUMN locations_sha BINARY(32) NOT NULL DEFAULT '' AFTER locations,
    DROP INDEX uq_redis_data_losses_since,
    ADD UNIQUE KEY uq_redis_data_losses_since_locations (since, locations_sha);
