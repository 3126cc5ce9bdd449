-- Key replacements (bitloot/fulfillment/replace.py, migration 0017).

-- name: lock_order_for_replacement
SELECT status, fulfillment_status FROM orders WHERE id = %(order_id)s FOR UPDATE;

-- name: key_to_replace
-- The key and what to buy again: the order line of its product (a key Kinguin delivered
-- without a productId belongs to the only line of a one-product order).
SELECT k.key_id, k.revoked_at, k.revoked_reason, i.product_id, i.max_cost, p.text_only
  FROM key_delivery_logs k
  LEFT JOIN order_items i
         ON i.order_id = k.order_id
        AND (i.product_id = k.product_id
             OR (k.product_id IS NULL
                 AND (SELECT count(*) FROM order_items o WHERE o.order_id = k.order_id) = 1))
  LEFT JOIN products p ON p.product_id = i.product_id
 WHERE k.order_id = %(order_id)s AND k.key_id = %(key_id)s
   FOR UPDATE OF k;

-- name: replacement_of_key
SELECT id, order_id, key_id, number, status, external_id, kinguin_order_id, new_key_id,
       error, admin_id, reason, created_at, updated_at
  FROM key_replacements
 WHERE order_id = %(order_id)s AND key_id = %(key_id)s;

-- name: insert_replacement
-- The caller holds the order's row lock, so the next number is this transaction's.
INSERT INTO key_replacements (order_id, key_id, number, admin_id, reason, product_id,
                              external_id)
SELECT %(order_id)s, %(key_id)s, n.number, %(admin_id)s, %(reason)s, %(product_id)s,
       %(order_id)s::text || '-r' || n.number::text
  FROM (SELECT coalesce(max(number), 0) + 1 AS number
          FROM key_replacements WHERE order_id = %(order_id)s) n
ON CONFLICT (order_id, key_id) DO NOTHING
RETURNING id, order_id, key_id, number, status, external_id, kinguin_order_id, new_key_id,
          error, admin_id, reason, created_at, updated_at;

-- name: order_exists
SELECT 1 FROM orders WHERE id = %(order_id)s;

-- name: replacements_of_order
SELECT id, order_id, key_id, number, status, external_id, kinguin_order_id, new_key_id,
       error, admin_id, reason, created_at, updated_at
  FROM key_replacements
 WHERE order_id = %(order_id)s
 ORDER BY number;

-- name: order_of_replacement
SELECT order_id FROM key_replacements WHERE id = %(id)s;

-- name: lock_replacement_job
-- Everything one pass of the job needs, the replacement row locked (the caller locked
-- the order first: the same order as the POST, so the two never deadlock).
SELECT r.id, r.order_id, r.key_id, r.number, r.status, r.external_id,
       r.placement_started_at, r.kinguin_order_id, r.product_id,
       o.status AS order_status, k.revoked_at IS NOT NULL AS key_revoked,
       i.max_cost, p.text_only, p.name
  FROM key_replacements r
  JOIN orders o ON o.id = r.order_id
  JOIN key_delivery_logs k ON k.order_id = r.order_id AND k.key_id = r.key_id
  JOIN order_items i ON i.order_id = r.order_id AND i.product_id = r.product_id
  JOIN products p ON p.product_id = r.product_id
 WHERE r.id = %(id)s
   FOR UPDATE OF r;

-- name: mark_replacement_placement_started
UPDATE key_replacements
   SET placement_started_at = coalesce(placement_started_at, now())
 WHERE id = %(id)s;

-- name: record_replacement_order
-- The first record wins (jobs of one replacement are serialised by their lock anyway).
UPDATE key_replacements
   SET kinguin_order_id = %(kinguin_order_id)s, kinguin_status = %(kinguin_status)s,
       status = 'placed'
 WHERE id = %(id)s AND status = 'requested' AND kinguin_order_id IS NULL;

-- name: update_replacement_kinguin_status
UPDATE key_replacements SET kinguin_status = %(kinguin_status)s
 WHERE id = %(id)s AND status = 'placed';

-- name: bump_replacement_polls
UPDATE key_replacements SET polls = polls + 1 WHERE id = %(id)s AND status = 'placed'
RETURNING polls;

-- name: fail_replacement
UPDATE key_replacements SET status = 'failed', error = %(error)s
 WHERE id = %(id)s AND status IN ('requested', 'placed')
RETURNING id;

-- name: insert_replacement_key
INSERT INTO key_delivery_logs (order_id, key_id, product_id, object_key, content_type,
                               wrapped_data_key, master_key_id, expires_at, replaces_key_id)
VALUES (%(order_id)s, %(key_id)s, %(product_id)s, %(object_key)s, %(content_type)s,
        %(wrapped_data_key)s, %(master_key_id)s,
        now() + make_interval(days => %(retention_days)s), %(replaces_key_id)s)
ON CONFLICT (order_id, key_id) DO NOTHING
RETURNING id;

-- name: revoke_replaced_key
UPDATE key_delivery_logs SET revoked_at = now(), revoked_reason = 'replaced'
 WHERE order_id = %(order_id)s AND key_id = %(key_id)s AND revoked_at IS NULL
RETURNING id;

-- name: mark_replacement_delivered
UPDATE key_replacements
   SET status = 'delivered', new_key_id = %(new_key_id)s, kinguin_status = 'completed'
 WHERE id = %(id)s AND status = 'placed'
RETURNING id;

-- name: replacement_for_event
-- The replacement a Kinguin event is about: by the Kinguin order recorded for it, else by
-- its orderExternalId (the webhook can beat the job's own record of a fresh order).
SELECT r.id, r.order_id, r.status, r.kinguin_order_id
  FROM key_replacements r
 WHERE r.kinguin_order_id = %(kinguin_order_id)s
    OR r.external_id = %(external_id)s
 ORDER BY (r.kinguin_order_id = %(kinguin_order_id)s) DESC NULLS LAST
 LIMIT 1;
