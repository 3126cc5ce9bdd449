-- name: stuck_paid_orders
-- Paid orders not fulfilled after a while and with no job queued or running for them
-- (the job was lost, failed for good without marking the order, or never enqueued).
SELECT o.id
  FROM orders o
 WHERE o.status = 'paid'
   AND o.fulfillment_status IN ('pending', 'processing')
   AND o.paid_at < now() - make_interval(mins => %(minutes)s)
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                    WHERE j.lock = 'order:' || o.id::text AND j.status IN ('todo', 'doing'))
 ORDER BY o.paid_at
 LIMIT %(limit)s;

-- name: stale_payments
SELECT payment_id
  FROM payments
 WHERE status IN ('waiting', 'confirming', 'confirmed', 'sending')
   AND updated_at < now() - make_interval(mins => %(minutes)s)
 ORDER BY updated_at
 LIMIT %(limit)s;

-- name: touch_payment
UPDATE payments SET updated_at = now() WHERE payment_id = %(payment_id)s;

-- name: expire_abandoned_orders
-- Orders whose invoice was never created (a day) or never paid (NOWPayments' 7 days + 1).
UPDATE orders o
   SET status = 'expired', status_reason = 'no payment arrived in time'
 WHERE (o.status = 'created' AND o.created_at < now() - interval '1 day')
    OR (o.status = 'waiting' AND o.created_at < now() - interval '8 days'
        AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id))
RETURNING o.id;

-- name: expire_keys
UPDATE key_delivery_logs SET status = 'expired'
 WHERE status IN ('stored', 'accessed') AND expires_at < now()
RETURNING id;

-- name: expired_objects
SELECT id, object_key FROM key_delivery_logs WHERE status = 'expired' ORDER BY id LIMIT %(limit)s;

-- name: mark_deleted
UPDATE key_delivery_logs SET status = 'deleted' WHERE id = %(id)s AND status = 'expired';
