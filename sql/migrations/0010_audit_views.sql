-- A view for each everyday question (issue 14): who opened which key, which paid orders
-- are stuck and why, which jobs failed and for which order, what each day sold, and what a
-- human must look at. Each answers in one query; each of its columns is commented
-- (`\d+ stuck_orders` in psql shows them). They read through the owner's rights, so the
-- auditor role reads them without reading the tables' secret columns.

-- ---------------------------------------------------------------------------------------
-- key_access_log: every download link issued, by whom, from where
-- ---------------------------------------------------------------------------------------

CREATE VIEW key_access_log AS
SELECT a.id AS access_id,
       a.order_id,
       a.key_id,
       a.at,
       a.actor_kind,
       a.actor_id,
       a.client_ip,
       a.user_agent,
       a.actor_kind = 'admin' AS admin_override
  FROM key_access_events a;
COMMENT ON VIEW key_access_log IS
    'Every issue of a download link for a key (key_access_events): which order and key, '
    'when, who asked and from where, and whether it was an admin override. '
    'SELECT * FROM key_access_log WHERE order_id = ... ORDER BY at;';
COMMENT ON COLUMN key_access_log.access_id IS 'key_access_events.id: the order in which links were issued.';
COMMENT ON COLUMN key_access_log.order_id IS 'The order whose key was opened.';
COMMENT ON COLUMN key_access_log.key_id IS 'The Kinguin key id (key_delivery_logs.key_id) a link was issued for.';
COMMENT ON COLUMN key_access_log.at IS 'When the link was issued.';
COMMENT ON COLUMN key_access_log.actor_kind IS
    'Who asked: user (a customer JWT), order_token (an order access token, e.g. the emailed '
    'link) or admin (an admin JWT).';
COMMENT ON COLUMN key_access_log.actor_id IS
    'The JWT sub of the user or admin; for an order token, the order it opens.';
COMMENT ON COLUMN key_access_log.client_ip IS
    'The client address (the socket peer, or X-Forwarded-For within BITLOOT_TRUSTED_PROXY_HOPS).';
COMMENT ON COLUMN key_access_log.user_agent IS 'The User-Agent header as sent (may be absent).';
COMMENT ON COLUMN key_access_log.admin_override IS
    'True when an admin opened a customer''s key (actor_kind = admin).';

-- ---------------------------------------------------------------------------------------
-- stuck_orders: paid more than five minutes ago and not fulfilled, with why and what next
-- ---------------------------------------------------------------------------------------

CREATE VIEW stuck_orders AS
SELECT o.id AS order_id,
       o.paid_at,
       now() - o.paid_at AS paid_for,
       o.fulfillment_status,
       CASE
           WHEN o.fulfillment_status = 'failed'
               THEN 'fulfillment failed: ' || coalesce(o.fulfillment_error, 'no reason recorded')
           WHEN k.status IN ('canceled', 'refunded')
               THEN 'Kinguin ' || k.status || ' order ' || k.kinguin_order_id
           WHEN j.id IS NULL
               THEN 'no fulfillment job queued (the reconciler queues one)'
           WHEN j.status = 'doing'
               THEN 'a worker is running its fulfillment job'
           WHEN k.status = 'completed'
               THEN 'Kinguin completed order ' || k.kinguin_order_id || ': keys not stored yet'
           WHEN k.status = 'processing'
               THEN 'waiting for Kinguin''s keys (' || k.polls || ' polls so far)'
           WHEN o.kinguin_placement_started_at IS NOT NULL
               THEN 'Kinguin purchase started, not recorded yet: the next pass looks it up'
           ELSE 'waiting for a worker to buy the keys'
       END AS reason,
       o.fulfillment_error,
       k.kinguin_order_id,
       k.status AS kinguin_status,
       k.polls AS kinguin_polls,
       j.id AS next_job_id,
       j.status::text AS next_job_status,
       j.scheduled_at AS next_job_at,
       j.attempts AS next_job_attempts
  FROM orders o
  LEFT JOIN kinguin_orders k ON k.order_id = o.id
  LEFT JOIN LATERAL (
        SELECT pj.id, pj.status, pj.scheduled_at, pj.attempts
          FROM procrastinate_jobs pj
         WHERE pj.lock = 'order:' || o.id::text AND pj.status IN ('todo', 'doing')
         ORDER BY pj.status = 'doing' DESC, pj.scheduled_at NULLS FIRST, pj.id
         LIMIT 1) j ON true
 WHERE o.status = 'paid'
   AND o.fulfillment_status <> 'fulfilled'
   AND o.paid_at < now() - interval '5 minutes';
COMMENT ON VIEW stuck_orders IS
    'Orders paid more than 5 minutes ago and not fulfilled (failed ones included), with the '
    'reason and the next queued job of the order. For a longer threshold filter on paid_for: '
    'SELECT * FROM stuck_orders WHERE paid_for > interval ''1 hour'' ORDER BY paid_at;';
COMMENT ON COLUMN stuck_orders.order_id IS 'The order (status paid).';
COMMENT ON COLUMN stuck_orders.paid_at IS 'When the order became paid.';
COMMENT ON COLUMN stuck_orders.paid_for IS
    'How long ago it was paid (always more than 5 minutes here): filter on it for another threshold.';
COMMENT ON COLUMN stuck_orders.fulfillment_status IS 'pending, processing or failed.';
COMMENT ON COLUMN stuck_orders.reason IS
    'Why it is not fulfilled, in words: the fulfillment error, the Kinguin order''s state, '
    'or what its job is doing; from the columns that follow.';
COMMENT ON COLUMN stuck_orders.fulfillment_error IS 'orders.fulfillment_error: the last failure, if any.';
COMMENT ON COLUMN stuck_orders.kinguin_order_id IS 'The Kinguin order bought for it; NULL: none bought yet.';
COMMENT ON COLUMN stuck_orders.kinguin_status IS
    'The Kinguin order''s status: processing, completed, canceled or refunded.';
COMMENT ON COLUMN stuck_orders.kinguin_polls IS 'How many times this fulfillment has polled Kinguin for keys.';
COMMENT ON COLUMN stuck_orders.next_job_id IS
    'procrastinate_jobs.id of the order''s running or next job (lock order:<id>); NULL: none queued.';
COMMENT ON COLUMN stuck_orders.next_job_status IS 'doing (a worker runs it) or todo (waiting).';
COMMENT ON COLUMN stuck_orders.next_job_at IS
    'When the waiting job is due (scheduled_at; NULL: as soon as a worker is free).';
COMMENT ON COLUMN stuck_orders.next_job_attempts IS 'How many times that job has already run.';

-- ---------------------------------------------------------------------------------------
-- failed_jobs: jobs that failed for good, with their order and the error
-- ---------------------------------------------------------------------------------------

CREATE VIEW failed_jobs AS
SELECT j.id AS job_id,
       j.task_name,
       j.queue_name,
       j.attempts,
       (SELECT max(ev.at) FROM procrastinate_events ev
         WHERE ev.job_id = j.id AND ev.type = 'failed') AS failed_at,
       coalesce(a.order_id, e.order_id) AS order_id,
       e.id AS outbox_id,
       o.status AS order_status,
       o.fulfillment_status,
       CASE j.task_name
           WHEN 'fulfill_order' THEN o.fulfillment_error
           WHEN 'send_delivery_email' THEN e.last_error
       END AS error,
       j.args
  FROM procrastinate_jobs j
 CROSS JOIN LATERAL (
        SELECT CASE WHEN j.args ->> 'order_id'
                         ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    THEN (j.args ->> 'order_id')::uuid END AS order_id,
               CASE WHEN j.args ->> 'outbox_id' ~ '^[0-9]{1,18}$'
                    THEN (j.args ->> 'outbox_id')::bigint END AS outbox_id) a
  LEFT JOIN email_outbox e ON e.id = a.outbox_id
  LEFT JOIN orders o ON o.id = coalesce(a.order_id, e.order_id)
 WHERE j.status = 'failed';
COMMENT ON VIEW failed_jobs IS
    'procrastinate jobs that failed for good (no retry left), joined to their order: '
    'SELECT * FROM failed_jobs ORDER BY failed_at DESC; (failed jobs are pruned after 30 days).';
COMMENT ON COLUMN failed_jobs.job_id IS 'procrastinate_jobs.id (the job_id of the worker''s log lines).';
COMMENT ON COLUMN failed_jobs.task_name IS
    'fulfill_order, send_delivery_email, or a maintenance task (reconcile, expire_keys, ...).';
COMMENT ON COLUMN failed_jobs.queue_name IS 'fulfillment, email or maintenance.';
COMMENT ON COLUMN failed_jobs.attempts IS 'How many times it ran before giving up.';
COMMENT ON COLUMN failed_jobs.failed_at IS 'When it failed for the last time (procrastinate_events).';
COMMENT ON COLUMN failed_jobs.order_id IS
    'The order it worked for: args.order_id (fulfill_order), or the order of its outbox row '
    '(send_delivery_email); NULL for maintenance jobs.';
COMMENT ON COLUMN failed_jobs.outbox_id IS 'email_outbox.id of a send_delivery_email job.';
COMMENT ON COLUMN failed_jobs.order_status IS 'The order''s status now.';
COMMENT ON COLUMN failed_jobs.fulfillment_status IS 'The order''s fulfillment status now.';
COMMENT ON COLUMN failed_jobs.error IS
    'The error BitLoot recorded: orders.fulfillment_error for fulfill_order, '
    'email_outbox.last_error for send_delivery_email. procrastinate 3.10 keeps no error text '
    'of its own: when this is NULL the traceback is in the worker''s log, under job_id.';
COMMENT ON COLUMN failed_jobs.args IS 'The job''s arguments as deferred.';

-- ---------------------------------------------------------------------------------------
-- daily_sales: what each day sold, cost and refunded, per currency
-- ---------------------------------------------------------------------------------------

CREATE VIEW daily_sales AS
WITH sold AS (
    SELECT (o.paid_at AT TIME ZONE 'UTC')::date AS day,
           o.currency,
           count(*) AS orders_paid,
           coalesce(sum(o.total_amount) FILTER (WHERE o.status IN ('paid', 'fulfilled')), 0)
               AS revenue,
           coalesce(sum(k.payment_price) FILTER (WHERE k.status NOT IN ('canceled', 'refunded')),
                    0) AS kinguin_cost_eur
      FROM orders o
      LEFT JOIN kinguin_orders k ON k.order_id = o.id
     WHERE o.paid_at IS NOT NULL
     GROUP BY 1, 2
), refunded AS (
    SELECT (e.at AT TIME ZONE 'UTC')::date AS day,
           o.currency,
           count(*) AS refunds,
           sum(o.total_amount) AS refunded_amount
      FROM order_events e
      JOIN orders o ON o.id = e.order_id
     WHERE e.machine = 'order' AND e.to_status = 'refunded'
     GROUP BY 1, 2
)
SELECT day,
       currency,
       coalesce(s.orders_paid, 0) AS orders_paid,
       coalesce(s.revenue, 0) AS revenue,
       coalesce(s.kinguin_cost_eur, 0) AS kinguin_cost_eur,
       CASE WHEN currency = 'eur'
            THEN coalesce(s.revenue, 0) - coalesce(s.kinguin_cost_eur, 0) END AS margin_eur,
       coalesce(r.refunds, 0) AS refunds,
       coalesce(r.refunded_amount, 0) AS refunded_amount
  FROM sold s
  FULL JOIN refunded r USING (day, currency);
COMMENT ON VIEW daily_sales IS
    'Per UTC day and order currency: orders paid, revenue, what Kinguin charged, the margin '
    '(EUR orders only) and refunds. SELECT * FROM daily_sales ORDER BY day DESC, currency;';
COMMENT ON COLUMN daily_sales.day IS
    'The UTC date: of paid_at for the sales columns, of the move to refunded for the refund columns.';
COMMENT ON COLUMN daily_sales.currency IS 'The orders'' currency (orders.currency, lower case).';
COMMENT ON COLUMN daily_sales.orders_paid IS
    'Orders that became paid that day, whatever their status now (refunded ones too).';
COMMENT ON COLUMN daily_sales.revenue IS
    'Sum of total_amount, in currency, of the orders paid that day that are paid or fulfilled '
    'now: an order refunded since is left out here (and counted under refunds on its refund day).';
COMMENT ON COLUMN daily_sales.kinguin_cost_eur IS
    'What Kinguin charged, in EUR (kinguin_orders.payment_price: the balance charged; the '
    'Kinguin balance is in EUR), for the orders paid that day, whether refunded since or not; '
    'Kinguin orders that Kinguin canceled or refunded are left out (the balance came back).';
COMMENT ON COLUMN daily_sales.margin_eur IS
    'revenue - kinguin_cost_eur, only where currency = eur; NULL for other currencies, whose '
    'revenue this view does not convert.';
COMMENT ON COLUMN daily_sales.refunds IS 'Orders moved to refunded that day.';
COMMENT ON COLUMN daily_sales.refunded_amount IS
    'Sum of their total_amount, in currency (the order total; a partial refund is not recorded '
    'separately).';

-- ---------------------------------------------------------------------------------------
-- needs_attention: every payment, order, webhook and email a human must look at
-- ---------------------------------------------------------------------------------------

CREATE VIEW needs_attention AS
SELECT 'webhook' AS kind,
       w.order_id,
       w.id::text AS reference,
       w.provider || ' ' || w.event_type AS status,
       w.received_at AS at,
       coalesce(w.outcome || ': ' || wo.meaning, 'not processed yet') AS why
  FROM webhook_events w
  LEFT JOIN webhook_outcomes wo ON wo.outcome = w.outcome
 WHERE w.needs_attention
UNION ALL
SELECT 'order', o.id, o.id::text, o.status || '/' || o.fulfillment_status, o.updated_at,
       'underpaid: ' || coalesce(o.status_reason, 'less than the total arrived')
           || ' (accept the payment or refund it)'
  FROM orders o
 WHERE o.status = 'underpaid'
UNION ALL
SELECT 'order', o.id, o.id::text, o.status || '/' || o.fulfillment_status, o.updated_at,
       'fulfillment failed: ' || coalesce(o.fulfillment_error, 'no reason recorded')
           || ' (retry it or refund the order)'
  FROM orders o
 WHERE o.status = 'paid' AND o.fulfillment_status = 'failed'
UNION ALL
SELECT 'order', s.order_id, s.order_id::text, 'paid/' || s.fulfillment_status, s.paid_at,
       'paid ' || date_trunc('minute', s.paid_for) || ' ago and not fulfilled: ' || s.reason
  FROM stuck_orders s
 WHERE s.fulfillment_status <> 'failed' AND s.paid_for > interval '1 hour'
UNION ALL
SELECT 'payment', p.order_id, p.payment_id, p.status, p.updated_at,
       're-deposit to payment ' || p.parent_payment_id || ' ('
           || coalesce(trim_scale(p.actually_paid)::text, '?')
           || ' ' || coalesce(p.pay_currency, '') || '): never applied to the order, settle by hand'
  FROM payments p
 WHERE p.parent_payment_id IS NOT NULL
UNION ALL
SELECT 'email', e.order_id, e.id::text, e.status, e.updated_at,
       'delivery email #' || e.generation || ' to ' || e.to_address || ' failed: '
           || coalesce(e.last_error, 'no reason recorded') || ' (resend it)'
  FROM email_outbox e
 WHERE e.status = 'failed';
COMMENT ON VIEW needs_attention IS
    'Everything a human must look at, one row each, with why: flagged webhooks (see '
    'webhook_outcomes), underpaid orders, failed fulfillments, orders paid over an hour ago '
    'and not fulfilled, re-deposits, failed delivery emails. A row leaves when its cause does; '
    'flagged webhooks stay (BitLoot never clears needs_attention), so filter on at. '
    'SELECT * FROM needs_attention ORDER BY at DESC;';
COMMENT ON COLUMN needs_attention.kind IS 'What to look at: webhook, order, payment or email.';
COMMENT ON COLUMN needs_attention.order_id IS 'The order concerned; NULL for a webhook that names no order of ours.';
COMMENT ON COLUMN needs_attention.reference IS
    'The row to open: webhook_events.id (webhook), orders.id (order), payments.payment_id '
    '(payment), email_outbox.id (email).';
COMMENT ON COLUMN needs_attention.status IS
    'webhook: provider and event type; order: status/fulfillment_status; payment: its '
    'NOWPayments status; email: the outbox status.';
COMMENT ON COLUMN needs_attention.at IS
    'When: the webhook''s arrival, the order''s last change (its payment for a stuck order), '
    'the payment''s or the email''s last update.';
COMMENT ON COLUMN needs_attention.why IS 'Why a human must look, and what they can do.';

-- The new views get their grants (bitloot_auditor reads every view).
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
