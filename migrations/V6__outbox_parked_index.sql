-- A claim skips the rows of an order that waits behind one of its parked
-- rows (`NOT EXISTS (... p.parked_at IS NOT NULL AND p.id < o.id)`). Without
-- an index of the parked rows that check walked every older row of the
-- outbox for each row claimed: 11 s to claim 16,000 rows of a 100,000-row
-- backlog (EXPLAIN ANALYZE, docs/benchmarks.md). Parked rows are few, so
-- this index is small and the check is one probe.
CREATE INDEX outbox_parked_aggregate_idx ON outbox (aggregate_id, id) WHERE parked_at IS NOT NULL;
