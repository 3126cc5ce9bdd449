-- `bitloot bench scale`: the bulk loader of fulfilled orders, and the probes it reads back.
--
-- This is a benchmark data loader, not product code. It runs with
-- `session_replication_role = replica`, which skips every trigger of its own session: the
-- order state machine and its event log, the updated_at touches, and the foreign-key checks
-- (they are triggers too). Rows are written directly in their final, consistent state
-- (fulfilled, with payment, item and key), the way a long-lived shop would hold them, so a
-- million of them load in one statement per table and chunk instead of five per order.
-- Order g is created at t0 + 20 s * g: the newest orders have the largest g.
-- Ids come from md5(namespace, g), so every table can compute its order's id without a join.

-- name: bulk_session
SET session_replication_role = replica;

-- name: fast_commits
SET synchronous_commit = off;

-- name: insert_orders
INSERT INTO orders (id, email, currency, total_amount, status, fulfillment_status,
                    invoice_id, paid_at, fulfilled_at, created_at, updated_at)
SELECT md5(%(ns)s || ':order:' || g)::uuid, 'scale+' || g || '@example.com', 'eur',
       %(price)s, 'fulfilled', 'fulfilled', (5000000000 + g)::text,
       t + interval '60 seconds', t + interval '65 seconds', t, t + interval '65 seconds'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT %(t0)s::timestamptz + g * interval '20 seconds' AS t) AS at;

-- name: insert_order_items
INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)
SELECT md5(%(ns)s || ':order:' || g)::uuid, %(product_id)s, 1, %(price)s, %(max_cost)s, p.name
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       products p
 WHERE p.product_id = %(product_id)s;

-- name: insert_payments
INSERT INTO payments (payment_id, order_id, invoice_id, status, price_amount, price_currency,
                      pay_amount, pay_currency, actually_paid, actually_paid_at_fiat,
                      outcome_amount, outcome_currency, provider_updated_at, last_ipn_at,
                      created_at, updated_at)
SELECT (4000000000 + g)::text, md5(%(ns)s || ':order:' || g)::uuid, (5000000000 + g)::text,
       'finished', %(price)s, 'eur', 0.000016, 'btc', 0.000016, %(price)s, 0.0000158, 'btc',
       t + interval '58 seconds', t + interval '60 seconds', t + interval '30 seconds',
       t + interval '60 seconds'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT %(t0)s::timestamptz + g * interval '20 seconds' AS t) AS at;

-- name: insert_key_delivery_logs
-- The wrapped data key is well-formed (version byte 0x01, 12-byte nonce, 48 bytes of
-- ciphertext and tag) but random: it does not unwrap. Only the probe orders, which the
-- benchmark calls download-link on, get a real one afterwards (`set_real_key`).
INSERT INTO key_delivery_logs (id, order_id, key_id, product_id, object_key, content_type,
                               wrapped_data_key, master_key_id, status, expires_at,
                               created_at, updated_at)
SELECT md5(%(ns)s || ':kdl:' || g)::uuid, oid, kid, %(product_id)s,
       'orders/' || oid::text || '/' || kid || '.bin', 'text/plain',
       '\x01'::bytea || substring(sha512(convert_to(%(ns)s || ':dk:' || g, 'UTF8')) FROM 1 FOR 60),
       %(master_key_id)s, 'stored', now() + interval '365 days',
       t + interval '65 seconds', t + interval '65 seconds'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT md5(%(ns)s || ':order:' || g)::uuid AS oid,
                       left(md5(%(ns)s || ':key:' || g), 24) AS kid,
                       %(t0)s::timestamptz + g * interval '20 seconds' AS t) AS at;

-- name: insert_webhook_events
-- One stored IPN per `every` orders: the admin and audit reads see a realistic table, the
-- hot paths measured here do not read it.
INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id, raw_body,
                            signature_variant, received_at, processed_at, outcome)
SELECT 'nowpayments', 'scale:' || g || ':finished', 'finished', (4000000000 + g)::text,
       md5(%(ns)s || ':order:' || g)::uuid,
       '{"payment_id":' || (4000000000 + g) || ',"payment_status":"finished"}', 'sorted',
       t + interval '60 seconds', t + interval '60 seconds', 'order_paid'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT %(t0)s::timestamptz + g * interval '20 seconds' AS t) AS at
 WHERE g %% %(every)s = 0;

-- name: insert_canary
-- The master key's canary, written before any key row: the servers' start-up check then
-- verifies it instead of trying to unwrap a (fake) stored data key.
INSERT INTO vault_canaries (master_key_id, wrapped) VALUES (%(master_key_id)s, %(wrapped)s)
ON CONFLICT (master_key_id) DO NOTHING;

-- name: probe_key
-- The order and key of position g (for the probes, which get real keys).
SELECT k.order_id, k.key_id, k.object_key
  FROM key_delivery_logs k
 WHERE k.order_id = md5(%(ns)s || ':order:' || %(g)s::bigint)::uuid;

-- name: set_real_key
UPDATE key_delivery_logs
   SET wrapped_data_key = %(wrapped)s, master_key_id = %(master_key_id)s
 WHERE order_id = %(order_id)s AND key_id = %(key_id)s;

-- name: payment_position
-- The keyset position (created_at, payment_id) of the payment of order g.
SELECT created_at, payment_id FROM payments WHERE payment_id = (4000000000 + %(g)s::bigint)::text;

-- name: table_sizes
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
  FROM pg_class c
 WHERE c.relname = ANY(%(tables)s::text[]) AND c.relkind = 'r'
 ORDER BY c.relname;
