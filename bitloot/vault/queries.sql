-- Queries of the key vault (bitloot.vault), loaded by name with bitloot.sqlfile.

-- name: count_to_rewrap
-- Data keys still wrapped by a master key other than the active one.
SELECT count(*) FROM key_delivery_logs WHERE master_key_id <> %(active_id)s;

-- name: lock_rewrap_batch
-- The next batch after a keyset cursor, locked for this transaction. SKIP LOCKED lets the
-- rotation pass rows a writer holds right now instead of waiting on them (a later pass
-- picks them up), and lets two rotations run at once without blocking each other.
SELECT id, order_id, key_id, master_key_id, wrapped_data_key
FROM key_delivery_logs
WHERE id > %(after)s AND master_key_id <> %(active_id)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: rewrap_batch
-- One statement per batch: the arrays are the rows of the batch, column by column
-- (unnest is VALUES with a fixed SQL text). The old id in the join is belt and braces:
-- the rows are locked, so nothing else can have changed them. updated_at is set by the
-- table's touch trigger.
UPDATE key_delivery_logs AS k
SET wrapped_data_key = v.wrapped_data_key,
    master_key_id = %(new_master_key_id)s
FROM unnest(%(ids)s::uuid[], %(old_master_key_ids)s::text[], %(wrapped)s::bytea[])
    AS v(id, old_master_key_id, wrapped_data_key)
WHERE k.id = v.id AND k.master_key_id = v.old_master_key_id;

-- name: master_key_ids_in_use
-- Distinct master key ids of the data keys, one index probe per distinct id (a "loose
-- index scan" over the master_key_id index) rather than a scan of the whole table at
-- every start; and of the webhook signing secrets (a few rows).
WITH RECURSIVE used(master_key_id) AS (
    (SELECT master_key_id FROM key_delivery_logs ORDER BY master_key_id LIMIT 1)
    UNION ALL
    SELECT (
        SELECT k.master_key_id FROM key_delivery_logs AS k
        WHERE k.master_key_id > used.master_key_id
        ORDER BY k.master_key_id LIMIT 1
    )
    FROM used
    WHERE used.master_key_id IS NOT NULL
)
SELECT master_key_id FROM used WHERE master_key_id IS NOT NULL
UNION
SELECT DISTINCT master_key_id FROM webhook_endpoint_secrets;

-- name: count_by_master_key
-- What each master key wraps: data keys and webhook signing secrets, counted together.
SELECT master_key_id, count(*) AS n
FROM (SELECT master_key_id FROM key_delivery_logs
      WHERE master_key_id = ANY(%(ids)s::text[])
      UNION ALL
      SELECT master_key_id FROM webhook_endpoint_secrets
      WHERE master_key_id = ANY(%(ids)s::text[])) AS wrapped
GROUP BY master_key_id
ORDER BY master_key_id;

-- name: sample_wrapped_key
-- Any one data key wrapped by a master key, to prove the configured key can unwrap it.
SELECT id, order_id, key_id, master_key_id, wrapped_data_key
FROM key_delivery_logs
WHERE master_key_id = %(master_key_id)s
LIMIT 1;

-- name: canaries
SELECT master_key_id, wrapped FROM vault_canaries WHERE master_key_id = ANY(%(ids)s::text[]);

-- name: insert_canary
-- DO NOTHING: when two processes start at once the first canary wins, and the caller
-- re-reads and verifies it, so two different keys under one id are still caught.
INSERT INTO vault_canaries (master_key_id, wrapped)
VALUES (%(master_key_id)s, %(wrapped)s)
ON CONFLICT (master_key_id) DO NOTHING;
