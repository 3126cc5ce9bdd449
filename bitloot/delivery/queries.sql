-- Queries of the email outbox (bitloot/delivery/outbox.py). One row per email to send,
-- unique on (order_id, kind, generation); see the comment on table email_outbox.

-- name: insert_delivery_email
-- Generation 1 of an order's delivery email; nothing when it already exists.
INSERT INTO email_outbox (order_id, kind, generation, to_address)
VALUES (%(order_id)s, 'delivery', 1, %(to_address)s)
ON CONFLICT (order_id, kind, generation) DO NOTHING
RETURNING id;

-- name: find_delivery_email
SELECT id
  FROM email_outbox
 WHERE order_id = %(order_id)s AND kind = 'delivery' AND generation = %(generation)s;

-- name: insert_next_delivery_generation
-- An admin resend: the next generation. When a concurrent resend takes the same number,
-- ON CONFLICT waits for it and inserts nothing; the caller runs this again.
INSERT INTO email_outbox (order_id, kind, generation, to_address)
SELECT %(order_id)s, 'delivery', coalesce(max(generation), 0) + 1, %(to_address)s
  FROM email_outbox
 WHERE order_id = %(order_id)s AND kind = 'delivery'
ON CONFLICT (order_id, kind, generation) DO NOTHING
RETURNING id;

-- name: claim_email
-- Locks the row for the sending transaction: a second job for the same row waits here and
-- then sees status 'sent'.
SELECT id, order_id, kind, generation, to_address, status, attempts, details,
       recovery_request_id
  FROM email_outbox
 WHERE id = %(id)s
   FOR UPDATE;

-- name: mark_email_sent
UPDATE email_outbox
   SET status = 'sent',
       message_id = %(message_id)s,
       sent_at = clock_timestamp(),
       attempts = attempts + 1,
       last_error = NULL
 WHERE id = %(id)s AND status <> 'sent'
RETURNING id;

-- name: mark_email_attempt_failed
UPDATE email_outbox
   SET attempts = attempts + 1,
       last_error = %(error)s,
       status = CASE WHEN %(final)s THEN 'failed' ELSE 'pending' END
 WHERE id = %(id)s AND status <> 'sent'
RETURNING attempts;

-- name: order_lines
-- What the emails name per product: the order line's snapshot, as the customer was shown
-- it when ordering (never today's products row).
SELECT product_id, name, qty, platform, regional_limitations, excluded_countries,
       image_url, is_preorder, release_date
  FROM order_items
 WHERE order_id = %(order_id)s
 ORDER BY name, product_id;

-- name: order_email
SELECT email FROM orders WHERE id = %(order_id)s;

-- name: outbox_generation
SELECT generation FROM email_outbox WHERE id = %(outbox_id)s;

-- name: insert_notice
-- A customer notice: one per (order, kind, generation); nothing when it already exists.
INSERT INTO email_outbox (order_id, kind, generation, to_address, details)
VALUES (%(order_id)s, %(kind)s, %(generation)s, %(to_address)s, %(details)s)
ON CONFLICT (order_id, kind, generation) DO NOTHING
RETURNING id;

-- name: insert_recovery_email
-- The one recovery email answering a recovery request (no order: it lists several).
INSERT INTO email_outbox (order_id, kind, generation, to_address, recovery_request_id)
VALUES (NULL, 'recovery', 1, %(to_address)s, %(request_id)s)
RETURNING id;

-- name: recovery_orders
-- The orders a recovery email lists, newest first.
SELECT o.id
  FROM recovery_request_orders ro
  JOIN orders o ON o.id = ro.order_id
 WHERE ro.request_id = %(request_id)s
 ORDER BY o.created_at DESC, o.id;

-- name: order_facts
-- What an email names about its order: the total, currency, language and date.
SELECT trim_scale(total_amount) AS total, currency, locale, created_at
  FROM orders
 WHERE id = %(order_id)s;
