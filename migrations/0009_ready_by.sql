-- When a pickup will be ready, as the order promised it: the instant and the store's offset at
-- that instant, as RFC 3339 text (`2026-12-07T18:30:00+09:00`). The promise stands as given even
-- if the store's calendar or time zone changes later. NULL for every other delivery type, and for
-- pickups placed before store calendars existed.
ALTER TABLE orders
    ADD COLUMN ready_by VARCHAR(40) NULL AFTER pickup_code;
