-- Queries of the admin's settlements of an order's money (bitloot/payments/refunds.py,
-- acceptance.py; migration 0016). Money leaves as numeric (Decimal); the callers format it.

-- name: lock_order
SELECT id, status, fulfillment_status, total_amount, currency
  FROM orders
 WHERE id = %(order_id)s
   FOR UPDATE;

-- name: amount_paid
-- The one rule of what the customer paid, in the order's currency (migration 0016).
SELECT bitloot_amount_paid(%(order_id)s);

-- name: refund_for
SELECT id, order_id, amount, currency, reference, reason, admin_id, created_at
  FROM refunds
 WHERE order_id = %(order_id)s;

-- name: insert_refund
INSERT INTO refunds (order_id, amount, currency, reference, reason, admin_id)
VALUES (%(order_id)s, %(amount)s, %(currency)s, %(reference)s, %(reason)s, %(admin_id)s)
RETURNING id, order_id, amount, currency, reference, reason, admin_id, created_at;

-- name: acceptance_for
-- The first acceptance is the one bitloot_payment_evidence names.
SELECT id, order_id, admin_id, reason, accepted_at
  FROM payment_acceptances
 WHERE order_id = %(order_id)s
 ORDER BY id
 LIMIT 1;

-- name: insert_acceptance
INSERT INTO payment_acceptances (order_id, admin_id, reason)
VALUES (%(order_id)s, %(admin_id)s, %(reason)s)
RETURNING id, order_id, admin_id, reason, accepted_at;

-- name: refunds_due_page
-- Newest first, keyset on (since, order_id as text); the first page passes ('infinity', '').
-- The set is the exceptions only (paid and undeliverable, underpaid): small, read whole.
SELECT order_id, status, fulfillment_status, why, email, currency, total_amount,
       amount_due, actually_paid, pay_currency, since
  FROM refunds_due
 WHERE (since, order_id::text) < (%(before_at)s::timestamptz, %(before_id)s::text)
 ORDER BY since DESC, order_id::text DESC
 LIMIT %(limit)s;
