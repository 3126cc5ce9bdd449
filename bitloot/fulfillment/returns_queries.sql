-- Queries of a refunded order's keys: revocation and the Kinguin key return
-- (bitloot/fulfillment/returns.py, migration 0016).

-- name: revoke_keys
-- Every live key of the order; a revocation is final (the key_delivery_logs guard).
UPDATE key_delivery_logs
   SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE order_id = %(order_id)s AND revoked_at IS NULL
RETURNING key_id;

-- name: return_facts
-- What the key-return job decides on, under the order's row lock: the order, its Kinguin
-- order, whether a key was ever revealed (an access event, or a key no longer `stored`),
-- how long ago the keys were delivered (the first key row, else the Kinguin order), and
-- the outcomes already recorded, oldest first.
SELECT o.status AS order_status,
       k.kinguin_order_id, k.status AS kinguin_status,
       extract(epoch FROM now() - coalesce(
           (SELECT min(d.created_at) FROM key_delivery_logs d WHERE d.order_id = o.id),
           k.created_at))::float8 AS delivered_seconds_ago,
       EXISTS (SELECT 1 FROM key_access_events a WHERE a.order_id = o.id)
           OR EXISTS (SELECT 1 FROM key_delivery_logs d
                       WHERE d.order_id = o.id AND d.status <> 'stored') AS revealed,
       coalesce((SELECT array_agg(r.outcome ORDER BY r.id) FROM kinguin_key_returns r
                  WHERE r.order_id = o.id), ARRAY[]::text[]) AS outcomes
  FROM orders o
  LEFT JOIN kinguin_orders k ON k.order_id = o.id
 WHERE o.id = %(order_id)s
   FOR UPDATE OF o;

-- name: record_return
-- `requested` is unique per order (kinguin_key_returns_one_request): a second job's intent
-- inserts nothing, and the caller sends nothing.
INSERT INTO kinguin_key_returns (order_id, kinguin_order_id, outcome, detail, key_statuses)
VALUES (%(order_id)s, %(kinguin_order_id)s, %(outcome)s, %(detail)s, %(key_statuses)s)
ON CONFLICT DO NOTHING
RETURNING id;
