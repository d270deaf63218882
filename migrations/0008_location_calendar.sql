-- Locations carry their calendar: time zone, weekly opening hours, closed dates, same-day
-- cut-off and pickup preparation time.
--
-- One JSON document per location, as `sf_routing::CalendarSpec` spells it in the API
-- (`{"timeZone": "Asia/Seoul", "openingHours": [{"day": "MON", "opens": "10:00", "closes":
-- "22:00"}], "closedDates": ["2026-12-25"], "sameDayCutoff": "18:00",
-- "pickupPreparationMinutes": 30}`), stored validated and with every default written out, so a
-- later change of a default does not change a stored calendar. NULL: no calendar of its own,
-- open around the clock in Asia/Seoul — what every location before this migration keeps, and
-- what a calendar equal to that default is stored as. Routing reads it with the locations; it is
-- never queried by its contents.
ALTER TABLE locations
    ADD COLUMN calendar JSON NULL AFTER safety_stock;
