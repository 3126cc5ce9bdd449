-- name: upsert_product
INSERT INTO products (product_id, name, price, currency, max_cost, text_only, active)
VALUES (%(product_id)s, %(name)s, %(price)s, %(currency)s, %(max_cost)s, %(text_only)s, %(active)s)
ON CONFLICT (product_id) DO UPDATE
   SET name = EXCLUDED.name, price = EXCLUDED.price, currency = EXCLUDED.currency,
       max_cost = EXCLUDED.max_cost, text_only = EXCLUDED.text_only, active = EXCLUDED.active
RETURNING product_id, name, price, currency, max_cost, text_only, active;

-- name: products_by_ids
SELECT product_id, name, price, currency, max_cost, text_only, active
  FROM products WHERE product_id = ANY(%(ids)s);

-- name: insert_order
INSERT INTO orders (id, user_id, email, currency, total_amount, locale)
VALUES (%(id)s, %(user_id)s, %(email)s, %(currency)s, %(total_amount)s, %(locale)s);

-- name: insert_order_items
-- The order's lines as priced, each with the snapshot the customer is shown from now on:
-- the product's name and facts as the catalog holds them at this moment (after the stock
-- check stored Kinguin's latest read), copied in the same statement.
INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name, platform,
                         regional_limitations, excluded_countries, image_url, is_preorder,
                         release_date)
SELECT %(order_id)s, p.product_id, l.qty, l.unit_price, l.max_cost, p.name, p.platform,
       p.regional_limitations, p.excluded_countries, p.image_url, p.is_preorder,
       p.release_date
  FROM unnest(%(product_ids)s::text[], %(qtys)s::int[], %(unit_prices)s::numeric[],
              %(max_costs)s::numeric[]) AS l(product_id, qty, unit_price, max_cost)
  JOIN products p ON p.product_id = l.product_id;

-- name: claim_idempotency_key
-- A row only when the caller's key is new, or older than 24 hours (then it is taken over
-- for the new order); otherwise the existing row stays as it is, locked until we commit.
INSERT INTO order_idempotency_keys AS k (scope, key, request_fingerprint, order_id)
VALUES (%(scope)s, %(key)s, %(fingerprint)s, %(order_id)s)
ON CONFLICT (scope, key) DO UPDATE
   SET request_fingerprint = EXCLUDED.request_fingerprint,
       order_id = EXCLUDED.order_id,
       created_at = now()
 WHERE k.created_at < now() - interval '24 hours'
RETURNING order_id;

-- name: idempotency_key_in_use
-- The same 24 hours as claim_idempotency_key: an older key makes a new order.
SELECT 1 FROM order_idempotency_keys
 WHERE scope = %(scope)s AND key = %(key)s AND created_at >= now() - interval '24 hours';

-- name: idempotency_key_order
SELECT order_id, request_fingerprint
  FROM order_idempotency_keys
 WHERE scope = %(scope)s AND key = %(key)s;

-- name: record_invoice
UPDATE orders
   SET status = 'waiting', invoice_id = %(invoice_id)s, invoice_url = %(invoice_url)s,
       invoice_error = NULL
 WHERE id = %(order_id)s AND status = 'created'
RETURNING id;

-- name: record_invoice_error
UPDATE orders SET invoice_error = %(error)s WHERE id = %(order_id)s AND status = 'created';

-- name: get_order
SELECT o.id, o.user_id, o.email, o.locale, o.currency, o.total_amount, o.status,
       o.fulfillment_status, o.status_reason, o.fulfillment_error, o.invoice_url,
       o.invoice_error, o.paid_at,
       o.fulfilled_at, o.created_at, o.updated_at,
       bitloot_order_items_json(o.id) AS items
  FROM orders o
 WHERE o.id = %(order_id)s
   AND bitloot_order_visible(o.id, o.user_id, %(is_admin)s, %(user_id)s, %(token_order_id)s);

-- name: expire_abandoned_orders
-- Orders whose invoice was never created (a day) or never paid (NOWPayments' 7 days + 1).
UPDATE orders o
   SET status = 'expired', status_reason = 'no payment arrived in time'
 WHERE (o.status = 'created' AND o.created_at < now() - interval '1 day')
    OR (o.status = 'waiting' AND o.created_at < now() - interval '8 days'
        AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id))
RETURNING o.id;

-- name: move_order_status
UPDATE orders SET status = %(to_status)s, status_reason = %(reason)s
 WHERE id = %(order_id)s AND status = ANY(%(from_statuses)s)
RETURNING id;

-- name: list_user_orders
-- The caller's orders, newest first, strictly after the cursor (created_at, id), read from
-- orders_user_created_idx (user_id, created_at DESC, id DESC). The first page passes
-- ('infinity', the greatest uuid), so one query serves every page.
SELECT o.id, o.user_id, o.email, o.locale, o.currency, o.total_amount, o.status,
       o.fulfillment_status, o.status_reason, o.fulfillment_error, o.invoice_url, o.paid_at,
       o.fulfilled_at, o.created_at, o.updated_at,
       bitloot_order_items_json(o.id) AS items
  FROM orders o
 WHERE o.user_id = %(user_id)s
   AND (o.created_at, o.id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid)
 ORDER BY o.created_at DESC, o.id DESC
 LIMIT %(limit)s;
