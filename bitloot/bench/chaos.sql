-- `bitloot bench chaos`: what the campaign reads back from the database.

-- name: invoices
SELECT id, invoice_id FROM orders WHERE id = ANY(%(ids)s::uuid[]);

-- name: progress
-- Orders in a final fulfillment state, and delivery emails in a final state.
SELECT (SELECT count(*) FROM orders
         WHERE id = ANY(%(ids)s::uuid[]) AND fulfillment_status IN ('fulfilled', 'failed')),
       (SELECT count(*) FROM orders
         WHERE id = ANY(%(ids)s::uuid[]) AND fulfillment_status = 'fulfilled'),
       (SELECT count(*) FROM email_outbox
         WHERE order_id = ANY(%(ids)s::uuid[]) AND status IN ('sent', 'failed'));

-- name: order_states
SELECT id, status, fulfillment_status, fulfillment_error
  FROM orders WHERE id = ANY(%(ids)s::uuid[]);

-- name: outbox_states
SELECT status, count(*) FROM email_outbox WHERE order_id = ANY(%(ids)s::uuid[]) GROUP BY 1;

-- name: webhook_counts
SELECT provider, count(*) FROM webhook_events WHERE order_id = ANY(%(ids)s::uuid[]) GROUP BY 1;
