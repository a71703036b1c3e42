-- The outbox's payload is the Kafka record value: JSON text that is written
-- once and read back once, never queried. As `jsonb` it was parsed into a
-- tree on every insert and printed back to text on every claim (2-3 µs of
-- PostgreSQL's CPU per row for the claim alone: docs/benchmarks.md, twelfth
-- pass). As `json` PostgreSQL checks the text on insert and hands it back
-- as it was written. It rewrites the table once; the outbox is normally
-- near empty.
ALTER TABLE outbox ALTER COLUMN payload TYPE json;
