-- Queries of the admin endpoints (bitloot/admin/). Reads never select key material:
-- key_delivery_logs.wrapped_data_key and object_key are left out on purpose.
--
-- Payment pages are keyset-paginated on (created_at, payment_id), newest first. The
-- caller always passes both bounds: the lower one is `from` (or the year 1), the upper one
-- is the smaller of the cursor and (`to`, '') (or the year 9999), so each query has a single
-- shape whose generic plan still walks payments_created_idx (or
-- payments_status_created_idx) from the upper bound down and stops after `limit` rows.
-- Money leaves as text with trailing zeros trimmed: exact, and never a float in JSON.

-- name: payments_page
SELECT p.payment_id, p.order_id, p.status,
       trim_scale(p.price_amount)::text AS price_amount, p.price_currency,
       trim_scale(p.pay_amount)::text AS pay_amount, p.pay_currency,
       trim_scale(p.actually_paid)::text AS actually_paid, p.created_at, p.updated_at
  FROM payments p
 WHERE p.created_at >= %(from_at)s
   AND (p.created_at, p.payment_id) < (%(before_at)s, %(before_id)s)
 ORDER BY p.created_at DESC, p.payment_id DESC
 LIMIT %(limit)s;

-- name: payments_page_by_status
SELECT p.payment_id, p.order_id, p.status,
       trim_scale(p.price_amount)::text AS price_amount, p.price_currency,
       trim_scale(p.pay_amount)::text AS pay_amount, p.pay_currency,
       trim_scale(p.actually_paid)::text AS actually_paid, p.created_at, p.updated_at
  FROM payments p
 WHERE p.status = %(status)s
   AND p.created_at >= %(from_at)s
   AND (p.created_at, p.payment_id) < (%(before_at)s, %(before_id)s)
 ORDER BY p.created_at DESC, p.payment_id DESC
 LIMIT %(limit)s;

-- name: payments_page_by_email
-- One customer has few payments: find the orders by orders_email_idx, their payments by
-- payments_order_idx, then sort that handful. The optional status is a plain filter here.
SELECT p.payment_id, p.order_id, p.status,
       trim_scale(p.price_amount)::text AS price_amount, p.price_currency,
       trim_scale(p.pay_amount)::text AS pay_amount, p.pay_currency,
       trim_scale(p.actually_paid)::text AS actually_paid, p.created_at, p.updated_at
  FROM orders o
  JOIN payments p ON p.order_id = o.id
 WHERE lower(o.email) = lower(%(email)s)
   AND (%(status)s::text IS NULL OR p.status = %(status)s::text)
   AND p.created_at >= %(from_at)s
   AND (p.created_at, p.payment_id) < (%(before_at)s, %(before_id)s)
 ORDER BY p.created_at DESC, p.payment_id DESC
 LIMIT %(limit)s;

-- name: payment_detail
SELECT p.payment_id, p.order_id, p.status,
       trim_scale(p.price_amount)::text AS price_amount, p.price_currency,
       trim_scale(p.pay_amount)::text AS pay_amount, p.pay_currency,
       trim_scale(p.actually_paid)::text AS actually_paid, p.created_at, p.updated_at,
       p.invoice_id, p.parent_payment_id,
       trim_scale(p.actually_paid_at_fiat)::text AS actually_paid_at_fiat,
       trim_scale(p.outcome_amount)::text AS outcome_amount, p.outcome_currency,
       p.provider_updated_at, p.last_ipn_at,
       o.status AS order_status, o.email AS customer_email
  FROM payments p
  JOIN orders o ON o.id = p.order_id
 WHERE p.payment_id = %(payment_id)s;

-- name: payment_ipns
-- Oldest first; event_type is the payment_status the IPN reported.
SELECT id AS event_id, received_at, processed_at, event_type AS status, outcome,
       needs_attention, signature_variant, raw_body
  FROM webhook_events
 WHERE provider = 'nowpayments' AND external_id = %(payment_id)s
 ORDER BY id;

-- name: timeline_order
SELECT id, email, user_id, status, status_reason, fulfillment_status, fulfillment_error,
       trim_scale(total_amount)::text AS total_amount, currency, invoice_id,
       kinguin_placement_started_at, paid_at, fulfilled_at, created_at, updated_at
  FROM orders
 WHERE id = %(order_id)s;

-- name: timeline_payments
SELECT payment_id, order_id, status,
       trim_scale(price_amount)::text AS price_amount, price_currency,
       trim_scale(pay_amount)::text AS pay_amount, pay_currency,
       trim_scale(actually_paid)::text AS actually_paid, created_at, updated_at
  FROM payments
 WHERE order_id = %(order_id)s
 ORDER BY created_at, payment_id;

-- name: timeline_events
SELECT id, machine, from_status, to_status, actor, reason, at
  FROM order_events
 WHERE order_id = %(order_id)s
 ORDER BY id;

-- name: timeline_kinguin_order
SELECT kinguin_order_id, status, status_updated_at,
       trim_scale(payment_price)::text AS payment_price, polls, created_at, updated_at
  FROM kinguin_orders
 WHERE order_id = %(order_id)s;

-- name: timeline_keys
-- Deliberately not wrapped_data_key (the data key) nor object_key (where the ciphertext is).
SELECT key_id, product_id, status, content_type, master_key_id, expires_at,
       last_accessed_at, created_at
  FROM key_delivery_logs
 WHERE order_id = %(order_id)s
 ORDER BY created_at, key_id;

-- name: timeline_access_events
SELECT id, key_id, actor_kind, actor_id, host(client_ip) AS client_ip, user_agent, at
  FROM key_access_events
 WHERE order_id = %(order_id)s
 ORDER BY id;

-- name: timeline_emails
SELECT id, kind, generation, to_address, status, attempts, last_error, sent_at, created_at
  FROM email_outbox
 WHERE order_id = %(order_id)s
 ORDER BY kind, generation;

-- name: timeline_webhook_events
SELECT id, provider, event_type, external_id, received_at, processed_at, outcome,
       needs_attention
  FROM webhook_events
 WHERE order_id = %(order_id)s
 ORDER BY id;

-- name: timeline_kinguin_calls
SELECT id, endpoint, attempt, outcome, http_status, error_code,
       trim_scale(latency_ms)::text AS latency_ms, at
  FROM kinguin_calls
 WHERE order_id = %(order_id)s
 ORDER BY id;

-- name: timeline_admin_actions
SELECT id, admin_id, action, reason, details, at
  FROM admin_audit_log
 WHERE order_id = %(order_id)s
 ORDER BY id;

-- name: lock_order_for_repair
SELECT status, fulfillment_status, fulfillment_error
  FROM orders
 WHERE id = %(order_id)s
   FOR UPDATE;

-- name: insert_admin_audit
INSERT INTO admin_audit_log (admin_id, action, order_id, reason, details)
VALUES (%(admin_id)s, %(action)s, %(order_id)s, %(reason)s, %(details)s)
RETURNING id;

-- name: snapshot_read
-- First statement of a read-only transaction whose reads must all see one moment.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
