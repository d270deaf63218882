-- The events sequencer reads the events without a place in the feed, oldest first:
-- `WHERE seq IS NULL ORDER BY id`. The unique key on `seq` holds them, but not in id order for the
-- optimizer, so each pass sorted every unplaced event: after a burst of 5,000 orders/s (10,000
-- events/s) a pass took seconds and ran past its deadline, and MariaDB kept a core busy. With
-- this key the oldest unplaced events are the first entries of its NULL range.
ALTER TABLE events ADD KEY ix_events_seq_id (seq, id);
