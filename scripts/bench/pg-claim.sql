\set s :client_id
WITH c AS (SELECT id FROM outbox WHERE shard = :s AND parked_at IS NULL ORDER BY id LIMIT 500), d AS (DELETE FROM outbox o USING c WHERE o.id = c.id RETURNING length(o.payload::text)) SELECT count(*) FROM d;
