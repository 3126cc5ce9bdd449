-- The shop's own exceptions, last part (issue 15): the views people read show them, in
-- one definition each.
--
--   * fulfillment_timeline gains the recovery requests that listed the order (0014), its
--     revoked keys (0014), its refund and Kinguin key returns (0016), and its key
--     replacements (0017): requested, and their end (delivered or failed);
--   * needs_attention names every failed email by its kind (not only delivery emails),
--     and lists failed key replacements (the old key stays live: refund the order or tell
--     the customer) and Kinguin key returns that ended in an error (the balance may not
--     have come back: check in Kinguin's dashboard).

CREATE OR REPLACE VIEW fulfillment_timeline AS
SELECT order_id, at, 'status' AS source,
       machine || ': ' || coalesce(from_status, '-') || ' -> ' || to_status AS what,
       actor, reason
  FROM order_events
UNION ALL
SELECT order_id, received_at, provider || ' webhook',
       event_type || coalesce(' ' || outcome, ''), provider, NULL
  FROM webhook_events WHERE order_id IS NOT NULL
UNION ALL
SELECT order_id, created_at, 'kinguin order',
       kinguin_order_id || ' ' || status, 'worker', NULL
  FROM kinguin_orders
UNION ALL
SELECT order_id, created_at, 'key stored', key_id || ' (' || content_type || ')', 'worker', NULL
  FROM key_delivery_logs
UNION ALL
SELECT order_id, at, 'key access', key_id, actor_kind || coalesce(':' || actor_id, ''), NULL
  FROM key_access_events
UNION ALL
SELECT order_id, coalesce(sent_at, created_at), 'email',
       kind || ' #' || generation || ' ' || status, 'worker', last_error
  FROM email_outbox WHERE order_id IS NOT NULL
UNION ALL
SELECT order_id, at, 'admin', action, admin_id, reason
  FROM admin_audit_log WHERE order_id IS NOT NULL
UNION ALL
SELECT ro.order_id, r.requested_at, 'recovery',
       'recovery request ' || r.id || ': fresh link sent', 'customer', NULL
  FROM recovery_request_orders ro
  JOIN recovery_requests r ON r.id = ro.request_id
UNION ALL
SELECT order_id, revoked_at, 'key revoked', key_id || ' (' || revoked_reason || ')',
       'bitloot', NULL
  FROM key_delivery_logs WHERE revoked_at IS NOT NULL
UNION ALL
SELECT order_id, created_at, 'refund',
       trim_scale(amount)::text || ' ' || currency || ' (payout ' || reference || ')',
       'admin:' || admin_id, reason
  FROM refunds
UNION ALL
SELECT order_id, at, 'kinguin key return',
       outcome || coalesce(' ' || kinguin_order_id, ''), 'worker', nullif(detail, '')
  FROM kinguin_key_returns
UNION ALL
SELECT order_id, created_at, 'key replacement',
       'replacement ' || number || ' of key ' || key_id || ' requested', 'admin:' || admin_id,
       reason
  FROM key_replacements
UNION ALL
SELECT order_id, updated_at, 'key replacement',
       'replacement ' || number || ' ' || status || coalesce(' (new key ' || new_key_id || ')', ''),
       'worker', error
  FROM key_replacements WHERE status IN ('delivered', 'failed');

CREATE OR REPLACE VIEW needs_attention AS
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
       e.kind || ' email #' || e.generation || ' to ' || e.to_address || ' failed: '
           || coalesce(e.last_error, 'no reason recorded')
           || CASE WHEN e.kind = 'delivery' THEN ' (resend it)' ELSE '' END
  FROM email_outbox e
 WHERE e.status = 'failed'
UNION ALL
SELECT 'replacement', r.order_id, r.id::text, r.status, r.updated_at,
       'replacement ' || r.number || ' of key ' || r.key_id || ' failed: '
           || coalesce(r.error, 'no reason recorded')
           || ' (the old key is still live: refund the order or tell the customer)'
  FROM key_replacements r
 WHERE r.status = 'failed'
UNION ALL
SELECT 'key return', k.order_id, k.id::text, k.outcome, k.at,
       'Kinguin key return ' || coalesce(k.kinguin_order_id, '') || ' ended in an error: '
           || coalesce(nullif(k.detail, ''), 'no detail')
           || ' (check the balance in Kinguin''s dashboard)'
  FROM kinguin_key_returns k
 WHERE k.outcome = 'error';
COMMENT ON COLUMN needs_attention.kind IS
    'What to look at: webhook, order, payment, email, replacement or key return.';
COMMENT ON COLUMN needs_attention.reference IS
    'The row to open: webhook_events.id (webhook), orders.id (order), payments.payment_id '
    '(payment), email_outbox.id (email), key_replacements.id (replacement), '
    'kinguin_key_returns.id (key return).';
