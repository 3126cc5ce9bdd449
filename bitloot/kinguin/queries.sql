-- name: order_for_event
-- The order an event is about: by the Kinguin order we recorded, else by orderExternalId
-- (the webhook can beat the worker's own record of a freshly placed order). Two branches,
-- each on a unique index, rather than one OR across an outer join.
SELECT order_id FROM (
    SELECT k.order_id, 0 AS preference
      FROM kinguin_orders k WHERE k.kinguin_order_id = %(kinguin_order_id)s
    UNION ALL
    SELECT o.id, 1 FROM orders o WHERE o.id = %(external_id)s
) candidates
ORDER BY preference
LIMIT 1;

-- name: lock_event_order
SELECT o.id, o.status, o.fulfillment_status, k.kinguin_order_id, k.status_updated_at,
       k.status AS kinguin_status
  FROM orders o
  LEFT JOIN kinguin_orders k ON k.order_id = o.id
 WHERE o.id = %(order_id)s
   FOR UPDATE OF o;

-- name: advance_watermark
UPDATE kinguin_orders
   SET status = %(status)s, status_updated_at = %(updated_at)s
 WHERE order_id = %(order_id)s
   AND (status_updated_at IS NULL OR status_updated_at < %(updated_at)s);

-- name: link_event_order
UPDATE webhook_events SET order_id = %(order_id)s
 WHERE id = %(id)s AND order_id IS DISTINCT FROM %(order_id)s;
