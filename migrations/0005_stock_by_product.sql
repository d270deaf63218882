-- The stock table's key starts with the product: a product page reads one product at every
-- location, and its rows now sit together (one index range instead of a lookup per location).
-- (location, product) stays unique on its own key, which the per-location walks read
-- (reconciliation, the start-up load of Redis). Writers are unaffected: each names its rows by
-- the whole key, through one unique key or the other, so a locking read still locks exactly the
-- rows it names, and every writer still asks for them in (location, product) order.
ALTER TABLE stock
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (product_id, location_id),
    ADD UNIQUE KEY uq_stock_location_product (location_id, product_id),
    DROP KEY ix_stock_product;
