-- name: seed_product
-- The benchmark's own catalog row (the simulator gets a matching product with deep stock).
INSERT INTO products (product_id, name, price, currency, max_cost, text_only)
VALUES (%(product_id)s, 'Benchmark Game (Steam key)', %(price)s, 'eur', %(max_cost)s, true)
ON CONFLICT (product_id) DO UPDATE
   SET price = EXCLUDED.price, max_cost = EXCLUDED.max_cost, active = true;

-- name: insert_orders
-- N orders in one statement; they start `created` (the state machine insists).
INSERT INTO orders (email, currency, total_amount)
SELECT 'bench+' || g || '@example.com', 'eur', %(price)s
  FROM generate_series(1, %(n)s) AS g
RETURNING id;

-- name: insert_order_items
INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)
SELECT id, %(product_id)s, 1, %(price)s, %(max_cost)s, p.name
  FROM unnest(%(ids)s::uuid[]) AS id, products p
 WHERE p.product_id = %(product_id)s;

-- name: orders_waiting
UPDATE orders SET status = 'waiting' WHERE id = ANY(%(ids)s::uuid[]) AND status = 'created';

-- name: payments_covering
-- The evidence the orders trigger asks for before `paid` (migration 0012): one finished
-- payment per order covering its total, as the IPN path would have stored it.
INSERT INTO payments (payment_id, order_id, status, price_amount, price_currency, pay_amount,
                      pay_currency, actually_paid)
SELECT 'bench-' || id, id, 'finished', total_amount, currency, 1, 'btc', 1
  FROM orders WHERE id = ANY(%(ids)s::uuid[]) AND status = 'waiting'
ON CONFLICT (payment_id) DO NOTHING;

-- name: orders_paid
-- The moment of payment is the commit that follows: paid_at is set by hand to the
-- statement's clock, not left to the trigger's now() (the transaction's start).
UPDATE orders SET status = 'paid', paid_at = clock_timestamp(), status_reason = 'bench'
 WHERE id = ANY(%(ids)s::uuid[]) AND status = 'waiting';

-- name: count_paid
SELECT count(*) FROM orders WHERE id = ANY(%(ids)s::uuid[]) AND status = 'paid';

-- name: count_jobs_for
-- How many of these orders have a fulfill_order job (run or not: workers may be off).
SELECT count(DISTINCT args ->> 'order_id') FROM procrastinate_jobs
 WHERE task_name = 'fulfill_order' AND args ->> 'order_id' = ANY(%(ids)s::text[]);

-- name: count_done
SELECT count(*) FILTER (WHERE fulfillment_status = 'fulfilled'),
       count(*) FILTER (WHERE fulfillment_status = 'failed')
  FROM orders WHERE id = ANY(%(ids)s::uuid[]);

-- name: fulfillment_times
-- Payment final -> keys committed, per order, and the span of the whole batch.
SELECT extract(epoch FROM (fulfilled_at - paid_at))::float8,
       extract(epoch FROM (max(fulfilled_at) OVER () - min(paid_at) OVER ()))::float8
  FROM orders WHERE id = ANY(%(ids)s::uuid[]) AND fulfillment_status = 'fulfilled';

-- name: failures
SELECT fulfillment_error, count(*) FROM orders
 WHERE id = ANY(%(ids)s::uuid[]) AND fulfillment_status = 'failed'
 GROUP BY 1 ORDER BY 2 DESC LIMIT 5;

-- name: webhook_enqueued
-- Fulfillment jobs that Kinguin `order.status` webhooks added for these orders.
SELECT count(*) FROM webhook_events
 WHERE provider = 'kinguin' AND order_id = ANY(%(ids)s::uuid[])
   AND outcome LIKE 'fulfillment_enqueued_%%';

-- name: emails_sent
SELECT count(*) FROM email_outbox WHERE order_id = ANY(%(ids)s::uuid[]) AND status = 'sent';

-- name: jobs_pending
SELECT count(*) FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND queue_name = ANY(%(queues)s::text[]);

-- name: server_version
SELECT current_setting('server_version');

-- name: create_baseline_table
CREATE TABLE IF NOT EXISTS bench_baseline (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- name: baseline_insert
INSERT INTO bench_baseline (body) VALUES (%(body)s);

-- name: preload_statement_stats
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';

-- name: track_nested_statements
ALTER SYSTEM SET pg_stat_statements.track = 'all';

-- name: create_statement_stats
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: reset_statement_stats
SELECT pg_stat_statements_reset();

-- name: top_statements
-- Where PostgreSQL spent its time (nested statements of functions and triggers included).
SELECT calls, round(total_exec_time::numeric, 1)::float8 AS total_ms,
       round(mean_exec_time::numeric, 3)::float8 AS mean_ms, rows,
       left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC
 LIMIT %(limit)s;

-- name: wal_position
-- Where the WAL is now: the difference of two readings is the WAL bytes written between.
SELECT pg_current_wal_lsn()::text;

-- name: wal_bytes_since
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s::pg_lsn)::bigint;

-- name: statement_totals
-- Top-level statements (one per client round trip) and PostgreSQL's execution time in all.
SELECT coalesce(sum(calls) FILTER (WHERE toplevel), 0)::bigint AS round_trips,
       coalesce(sum(total_exec_time) FILTER (WHERE toplevel), 0)::float8 AS exec_ms
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database());
