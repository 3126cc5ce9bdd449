-- The shop's own exceptions, last part (issue 15): the views people read show them, in
-- one definition each.
--
--   * fulfillment_timeline gains the recovery requests that listed the order (0014), its
--     revoked keys (0014), its refund and Kinguin key returns (0016), and its key
--     replacements (0017): requested, and their end (delivered or failed);
--   * needs_attention, with failed key replacements and Kinguin key returns that ended in
--     an error, is redefined once, with the webhook endpoints it also lists, in 0019.

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
