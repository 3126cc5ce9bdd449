-- name: lock_order
SELECT id, status, fulfillment_status, kinguin_placement_started_at, paid_at
  FROM orders WHERE id = %(order_id)s FOR UPDATE;

-- name: start_processing
-- On a retry (failed -> pending) of an order already bought, polling starts over: else a
-- retry after "keys not delivered after N polls" fails at once while Kinguin is still slow.
WITH started AS (
    UPDATE orders SET fulfillment_status = 'processing', fulfillment_error = NULL
     WHERE id = %(order_id)s AND status = 'paid' AND fulfillment_status = 'pending'
    RETURNING id
)
UPDATE kinguin_orders SET polls = 0 WHERE order_id IN (SELECT id FROM started);

-- name: payment_evidence_unless_bought
-- What proves the order is paid ('payment <id>' or 'acceptance <id>'), NULL when nothing
-- does: the rule of the orders trigger (migration 0012), asked again before buying, so only
-- while no Kinguin order is recorded (once one is, the keys are collected whatever happens
-- to the payment: the refund path takes over); `bought` says which case this is.
SELECT k.order_id IS NOT NULL AS bought,
       CASE WHEN k.order_id IS NULL THEN bitloot_payment_evidence(%(order_id)s) END AS evidence
  FROM (SELECT 1) AS one
  LEFT JOIN kinguin_orders k ON k.order_id = %(order_id)s;

-- name: order_lines
SELECT i.product_id, i.qty, i.max_cost, p.text_only, p.name
  FROM order_items i JOIN products p USING (product_id)
 WHERE i.order_id = %(order_id)s ORDER BY i.product_id;

-- name: mark_placement_started
UPDATE orders SET kinguin_placement_started_at = coalesce(kinguin_placement_started_at, now())
 WHERE id = %(order_id)s;

-- name: kinguin_order_for
SELECT kinguin_order_id, status, polls FROM kinguin_orders WHERE order_id = %(order_id)s;

-- name: record_kinguin_order
INSERT INTO kinguin_orders (order_id, kinguin_order_id, status, payment_price)
VALUES (%(order_id)s, %(kinguin_order_id)s, %(status)s, %(payment_price)s)
ON CONFLICT (order_id) DO NOTHING;

-- name: update_kinguin_status
UPDATE kinguin_orders SET status = %(status)s WHERE order_id = %(order_id)s;

-- name: bump_polls
UPDATE kinguin_orders SET polls = polls + 1 WHERE order_id = %(order_id)s RETURNING polls;

-- name: mark_failed
UPDATE orders SET fulfillment_status = 'failed', fulfillment_error = %(reason)s
 WHERE id = %(order_id)s AND fulfillment_status IN ('pending', 'processing');

-- name: insert_key_row
INSERT INTO key_delivery_logs (order_id, key_id, product_id, object_key, content_type,
                               wrapped_data_key, master_key_id, expires_at)
VALUES (%(order_id)s, %(key_id)s, %(product_id)s, %(object_key)s, %(content_type)s,
        %(wrapped_data_key)s, %(master_key_id)s, now() + make_interval(days => %(retention_days)s))
ON CONFLICT (order_id, key_id) DO NOTHING;

-- name: insert_kinguin_call
INSERT INTO kinguin_calls (order_id, replacement_id, endpoint, attempt, outcome, http_status,
                           error_code, latency_ms)
VALUES (%(order_id)s, %(replacement_id)s, %(endpoint)s, %(attempt)s, %(outcome)s,
        %(http_status)s, %(error_code)s, %(latency_ms)s);

-- name: mark_fulfilled
UPDATE orders SET status = 'fulfilled', fulfillment_status = 'fulfilled'
 WHERE id = %(order_id)s AND status = 'paid' AND fulfillment_status = 'processing'
RETURNING extract(epoch FROM (fulfilled_at - paid_at))::float8 AS seconds_to_key;

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
-- A watermark dated past the horizon (now plus the allowed clock skew) was stored before
-- future dates were refused; it is replaced, never trusted.
UPDATE kinguin_orders
   SET status = %(status)s, status_updated_at = %(updated_at)s
 WHERE order_id = %(order_id)s
   AND (status_updated_at IS NULL OR status_updated_at < %(updated_at)s
        OR status_updated_at > %(horizon)s);

-- name: stuck_paid_orders
-- Paid orders not fulfilled after a while and with no job queued or running for them
-- (the job was lost, failed for good without marking the order, or never enqueued), with
-- what proves each is paid (NULL: nothing does any more) and whether Kinguin was asked.
SELECT o.id, bitloot_payment_evidence(o.id) AS evidence,
       o.kinguin_placement_started_at IS NOT NULL AS bought
  FROM orders o
 WHERE o.status = 'paid'
   AND o.fulfillment_status IN ('pending', 'processing')
   AND o.paid_at < now() - make_interval(mins => %(minutes)s)
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                    WHERE j.lock = 'order:' || o.id::text AND j.status IN ('todo', 'doing'))
 ORDER BY o.paid_at
 LIMIT %(limit)s;

-- name: expire_keys
UPDATE key_delivery_logs SET status = 'expired'
 WHERE status IN ('stored', 'accessed') AND expires_at < now()
RETURNING id;

-- name: expired_objects
SELECT id, object_key FROM key_delivery_logs WHERE status = 'expired' ORDER BY id LIMIT %(limit)s;

-- name: mark_deleted
UPDATE key_delivery_logs SET status = 'deleted' WHERE id = %(id)s AND status = 'expired';

-- name: requeue_failed_fulfillment
-- failed -> pending is the one backwards move the fulfillment state machine allows.
UPDATE orders SET fulfillment_status = 'pending', fulfillment_error = NULL
 WHERE id = %(order_id)s AND status = 'paid' AND fulfillment_status = 'failed'
RETURNING id;

-- name: reset_kinguin_polls
UPDATE kinguin_orders SET polls = 0 WHERE order_id = %(order_id)s
RETURNING kinguin_order_id;
