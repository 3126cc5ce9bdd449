-- name: fulfillment_status
-- Ownership is decided here (bitloot_order_visible): anyone else gets no row, exactly like
-- a missing order. Only live keys are listed (a replaced or refunded key is revoked). The
-- items are the order's snapshot (order_items), never today's products, and never a price.
SELECT o.id, o.status, o.fulfillment_status, o.locale,
       greatest(o.updated_at, max(k.updated_at)) AS updated_at,
       coalesce(json_agg(json_build_object('keyId', k.key_id, 'status', k.status,
                                           'productId', k.product_id)
                         ORDER BY k.created_at, k.key_id)
                FILTER (WHERE k.key_id IS NOT NULL), '[]'::json) AS keys,
       (SELECT coalesce(json_agg(json_build_object(
                   'product_id', i.product_id, 'name', i.name, 'qty', i.qty,
                   'platform', i.platform, 'regional_limitations', i.regional_limitations,
                   'excluded_countries', i.excluded_countries, 'is_preorder', i.is_preorder,
                   'release_date', i.release_date)
                 ORDER BY i.name, i.product_id), '[]'::json)
          FROM order_items i WHERE i.order_id = o.id) AS items
  FROM orders o
  LEFT JOIN key_delivery_logs k ON k.order_id = o.id AND k.revoked_at IS NULL
 WHERE o.id = %(order_id)s
   AND bitloot_order_visible(o.id, o.user_id, %(is_admin)s, %(user_id)s, %(token_order_id)s)
 GROUP BY o.id;

-- name: order_for_download
-- The same ownership rule; the row lock keeps a refund from landing while links are issued.
SELECT o.status, o.fulfillment_status
  FROM orders o
 WHERE o.id = %(order_id)s
   AND bitloot_order_visible(o.id, o.user_id, %(is_admin)s, %(user_id)s, %(token_order_id)s)
   FOR SHARE;

-- name: keys_for_download
-- Locked so the expiry job cannot expire or delete a key between this read and the
-- access record; a key past expires_at counts as expired even before that job has run.
-- Revoked keys too (the caller serves only live ones), with the key that replaced each.
SELECT k.key_id, k.product_id, k.object_key, k.content_type, k.wrapped_data_key, k.master_key_id,
       CASE WHEN k.status IN ('stored', 'accessed') AND k.expires_at <= now() THEN 'expired'
            ELSE k.status END AS status,
       k.revoked_reason,
       (SELECT n.key_id FROM key_delivery_logs n
         WHERE n.order_id = k.order_id AND n.replaces_key_id = k.key_id
         ORDER BY n.created_at LIMIT 1) AS replaced_by
  FROM key_delivery_logs k
 WHERE k.order_id = %(order_id)s
 ORDER BY k.created_at, k.key_id
   FOR UPDATE OF k;

-- name: record_key_access
-- One statement: mark the keys accessed and append one access event per key.
WITH touched AS (
    UPDATE key_delivery_logs
       SET status = 'accessed', last_accessed_at = now()
     WHERE order_id = %(order_id)s AND key_id = ANY(%(key_ids)s)
       AND status IN ('stored', 'accessed')
    RETURNING order_id, key_id
)
INSERT INTO key_access_events (order_id, key_id, actor_kind, actor_id, client_ip, user_agent)
SELECT order_id, key_id, %(actor_kind)s, %(actor_id)s, %(client_ip)s::inet, %(user_agent)s
  FROM touched;
