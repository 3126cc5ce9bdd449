-- A comment on every column of every table and view of ours (issue 14), so `\d+ table` in
-- psql answers what a column holds without reading the code. Only the columns that had
-- none; tests/db/test_comments.py keeps it so for every table and view added later.

-- products
COMMENT ON COLUMN products.product_id IS 'The Kinguin productId, also what POST /orders names as productId.';
COMMENT ON COLUMN products.name IS 'The name shown to customers and in the delivery email.';
COMMENT ON COLUMN products.price IS 'Our retail price per unit, in currency.';
COMMENT ON COLUMN products.currency IS 'The currency of price (lower case ISO 4217, e.g. eur).';
COMMENT ON COLUMN products.max_cost IS 'The most we pay Kinguin per unit, in EUR (the Kinguin balance currency).';
COMMENT ON COLUMN products.active IS 'Whether new orders may name it (false: kept for old orders only).';
COMMENT ON COLUMN products.created_at IS 'When it was added (bitloot products add).';
COMMENT ON COLUMN products.updated_at IS 'When it was last changed.';

-- the state machines' legal moves
COMMENT ON COLUMN order_status_transitions.from_status IS 'An orders.status an order may leave.';
COMMENT ON COLUMN order_status_transitions.to_status IS 'The orders.status it may move to from from_status.';
COMMENT ON COLUMN fulfillment_status_transitions.from_status IS 'An orders.fulfillment_status an order may leave.';
COMMENT ON COLUMN fulfillment_status_transitions.to_status IS
    'The orders.fulfillment_status it may move to from from_status.';

-- orders
COMMENT ON COLUMN orders.id IS 'The order id: in URLs, emails, and Kinguin''s orderExternalId.';
COMMENT ON COLUMN orders.email IS 'Where the delivery email goes (as the customer typed it).';
COMMENT ON COLUMN orders.currency IS 'The currency of total_amount and of the invoice (lower case, e.g. eur).';
COMMENT ON COLUMN orders.total_amount IS 'What the customer owes: the sum of qty * unit_price of its items.';
COMMENT ON COLUMN orders.status IS
    'Payment side: created, waiting, confirming, paid, fulfilled, underpaid, failed, expired, '
    'refunded; legal moves in order_status_transitions.';
COMMENT ON COLUMN orders.fulfillment_status IS
    'Delivery side: pending, processing, fulfilled, failed; legal moves in '
    'fulfillment_status_transitions.';
COMMENT ON COLUMN orders.invoice_id IS 'The NOWPayments invoice id; NULL until the invoice is created.';
COMMENT ON COLUMN orders.invoice_url IS 'The NOWPayments hosted payment page the customer pays on.';
COMMENT ON COLUMN orders.paid_at IS 'When it became paid (set by the status trigger).';
COMMENT ON COLUMN orders.fulfilled_at IS 'When its keys were all stored (set by the status trigger).';
COMMENT ON COLUMN orders.created_at IS 'When it was created (POST /orders).';
COMMENT ON COLUMN orders.updated_at IS 'When the row last changed.';

-- order_items
COMMENT ON COLUMN order_items.order_id IS 'The order.';
COMMENT ON COLUMN order_items.product_id IS 'The product (products.product_id, the Kinguin productId).';
COMMENT ON COLUMN order_items.qty IS 'How many keys of it (1 to 9).';
COMMENT ON COLUMN order_items.unit_price IS 'The price charged per unit, in orders.currency, copied from products.';
COMMENT ON COLUMN order_items.max_cost IS 'The most (EUR) we pay Kinguin per unit, copied from products.';

-- order_events
COMMENT ON COLUMN order_events.id IS 'Order of events (identity).';
COMMENT ON COLUMN order_events.order_id IS 'The order that moved.';
COMMENT ON COLUMN order_events.machine IS 'Which state machine moved: order (status) or fulfillment (fulfillment_status).';
COMMENT ON COLUMN order_events.from_status IS 'The status before; NULL for the order''s creation.';
COMMENT ON COLUMN order_events.to_status IS 'The status after.';
COMMENT ON COLUMN order_events.actor IS
    'Who moved it: api, worker, nowpayments, kinguin, reconciler, admin:<sub> (bitloot.actor), '
    'or sql:<role> for a change made by hand.';
COMMENT ON COLUMN order_events.reason IS 'Why, as the actor said (bitloot.reason); NULL if it said nothing.';
COMMENT ON COLUMN order_events.at IS 'When (clock time of the change).';

-- payments
COMMENT ON COLUMN payments.payment_id IS 'The NOWPayments payment id.';
COMMENT ON COLUMN payments.order_id IS 'Our order it pays (the invoice''s order_id).';
COMMENT ON COLUMN payments.invoice_id IS 'The NOWPayments invoice it was made from.';
COMMENT ON COLUMN payments.parent_payment_id IS
    'Set on a re-deposit: the payment it was a further deposit to. Never applied to the order '
    '(flagged for a human).';
COMMENT ON COLUMN payments.status IS
    'The NOWPayments payment_status; only ever moves forward (bitloot_payment_status_rank).';
COMMENT ON COLUMN payments.price_amount IS 'The price asked, in price_currency (fiat).';
COMMENT ON COLUMN payments.price_currency IS 'The fiat currency of price_amount (should equal orders.currency).';
COMMENT ON COLUMN payments.pay_amount IS 'The crypto amount the customer was asked to send, in pay_currency.';
COMMENT ON COLUMN payments.pay_currency IS 'The cryptocurrency paid with (e.g. btc).';
COMMENT ON COLUMN payments.actually_paid IS 'The crypto amount received so far, in pay_currency.';
COMMENT ON COLUMN payments.actually_paid_at_fiat IS
    'What NOWPayments says actually_paid is worth in price_currency.';
COMMENT ON COLUMN payments.outcome_amount IS 'What our payout wallet receives, in outcome_currency.';
COMMENT ON COLUMN payments.outcome_currency IS 'The currency of outcome_amount (the payout currency).';
COMMENT ON COLUMN payments.provider_updated_at IS 'NOWPayments'' own updated_at of the report applied last.';
COMMENT ON COLUMN payments.last_ipn_at IS 'When a report (IPN or status API) last moved this payment.';
COMMENT ON COLUMN payments.created_at IS 'When we first heard of the payment.';
COMMENT ON COLUMN payments.updated_at IS
    'When the row last changed, or the reconciler last asked NOWPayments about it.';

-- webhook_events
COMMENT ON COLUMN webhook_events.id IS 'Arrival order (identity).';
COMMENT ON COLUMN webhook_events.provider IS 'Who sent it: nowpayments (IPN, or the status API via the reconciler) or kinguin.';
COMMENT ON COLUMN webhook_events.dedup_key IS
    'What makes two deliveries the same event: order, payment, status and amounts for an IPN; '
    'Kinguin order, status and updatedAt for Kinguin.';
COMMENT ON COLUMN webhook_events.event_type IS
    'The IPN''s payment_status, or the Kinguin X-Event-Name.';
COMMENT ON COLUMN webhook_events.external_id IS
    'The provider''s id: the NOWPayments payment id, or the Kinguin order id.';
COMMENT ON COLUMN webhook_events.raw_body IS
    'The body exactly as received (secret: a Kinguin body may carry key serials; not '
    'readable by bitloot_auditor).';
COMMENT ON COLUMN webhook_events.signature_variant IS
    'Which serialisation the IPN signature matched (utf8-lists, ascii-lists, utf8-objects, '
    'ascii-objects), api for a report read from the status API; NULL for Kinguin.';
COMMENT ON COLUMN webhook_events.received_at IS 'When it arrived.';
COMMENT ON COLUMN webhook_events.processed_at IS 'When it was applied (with outcome); NULL: not yet.';

-- kinguin_orders
COMMENT ON COLUMN kinguin_orders.order_id IS 'Our order (its orderExternalId at Kinguin).';
COMMENT ON COLUMN kinguin_orders.kinguin_order_id IS 'Kinguin''s orderId.';
COMMENT ON COLUMN kinguin_orders.status IS 'Kinguin''s order status: processing, completed, canceled or refunded.';
COMMENT ON COLUMN kinguin_orders.status_updated_at IS
    'Kinguin''s updatedAt of the last webhook applied: older events are ignored.';
COMMENT ON COLUMN kinguin_orders.payment_price IS
    'What Kinguin charged our balance for it (paymentPrice), in EUR, the Kinguin balance currency.';
COMMENT ON COLUMN kinguin_orders.polls IS 'How many times the current fulfillment has polled it for keys.';
COMMENT ON COLUMN kinguin_orders.created_at IS 'When it was bought.';
COMMENT ON COLUMN kinguin_orders.updated_at IS 'When the row last changed.';

-- key_delivery_logs
COMMENT ON COLUMN key_delivery_logs.id IS 'Row id.';
COMMENT ON COLUMN key_delivery_logs.order_id IS 'The order the key was bought for.';
COMMENT ON COLUMN key_delivery_logs.key_id IS 'Kinguin''s key id.';
COMMENT ON COLUMN key_delivery_logs.product_id IS 'The product it is a key of.';
COMMENT ON COLUMN key_delivery_logs.object_key IS
    'Where its ciphertext is in object storage (AES-256-GCM; useless without the data key).';
COMMENT ON COLUMN key_delivery_logs.content_type IS 'text/plain for a text key, or the image type of an image key.';
COMMENT ON COLUMN key_delivery_logs.wrapped_data_key IS
    'The key''s data key, encrypted by master key master_key_id (secret: not readable by '
    'bitloot_auditor).';
COMMENT ON COLUMN key_delivery_logs.master_key_id IS 'The id of the master key that wraps the data key.';
COMMENT ON COLUMN key_delivery_logs.status IS
    'stored, accessed (a link was issued), expired (past expires_at), deleted (ciphertext removed).';
COMMENT ON COLUMN key_delivery_logs.expires_at IS 'When it stops being downloadable (BITLOOT_KEY_RETENTION_DAYS).';
COMMENT ON COLUMN key_delivery_logs.last_accessed_at IS 'When a download link was last issued for it.';
COMMENT ON COLUMN key_delivery_logs.created_at IS 'When it was stored (delivered).';
COMMENT ON COLUMN key_delivery_logs.updated_at IS 'When the row last changed (e.g. re-wrapped by keys rotate).';

-- key_access_events
COMMENT ON COLUMN key_access_events.id IS 'Order of issue (identity).';
COMMENT ON COLUMN key_access_events.order_id IS 'The order whose key was opened.';
COMMENT ON COLUMN key_access_events.key_id IS 'The key a link was issued for.';
COMMENT ON COLUMN key_access_events.actor_kind IS 'user (customer JWT), order_token or admin (an admin override).';
COMMENT ON COLUMN key_access_events.actor_id IS 'The JWT sub of the user or admin; for an order token, the order.';
COMMENT ON COLUMN key_access_events.client_ip IS 'The client address that asked.';
COMMENT ON COLUMN key_access_events.user_agent IS 'Its User-Agent header.';
COMMENT ON COLUMN key_access_events.at IS 'When the link was issued.';

-- vault_canaries
COMMENT ON COLUMN vault_canaries.master_key_id IS 'The master key''s id.';
COMMENT ON COLUMN vault_canaries.wrapped IS
    'A known value wrapped by that key (secret: not readable by bitloot_auditor).';
COMMENT ON COLUMN vault_canaries.created_at IS 'When the key was first used.';

-- email_outbox
COMMENT ON COLUMN email_outbox.id IS 'Row id (the outbox_id argument of send_delivery_email).';
COMMENT ON COLUMN email_outbox.order_id IS 'The order the email is about.';
COMMENT ON COLUMN email_outbox.kind IS 'Which email: delivery (the key-page link).';
COMMENT ON COLUMN email_outbox.generation IS '1 for the first; each admin resend adds the next.';
COMMENT ON COLUMN email_outbox.to_address IS 'Where it goes.';
COMMENT ON COLUMN email_outbox.status IS 'pending, sent, or failed (gave up; see last_error).';
COMMENT ON COLUMN email_outbox.attempts IS 'How many times sending was tried.';
COMMENT ON COLUMN email_outbox.last_error IS 'Why the last attempt failed; NULL once sent.';
COMMENT ON COLUMN email_outbox.message_id IS 'The Message-ID it was sent with (fixed per row, so a resent copy dedupes).';
COMMENT ON COLUMN email_outbox.sent_at IS 'When the mail server accepted it.';
COMMENT ON COLUMN email_outbox.created_at IS 'When it was queued.';
COMMENT ON COLUMN email_outbox.updated_at IS 'When the row last changed.';

-- admin_audit_log
COMMENT ON COLUMN admin_audit_log.id IS 'Order of actions (identity).';
COMMENT ON COLUMN admin_audit_log.admin_id IS 'The admin''s JWT sub.';
COMMENT ON COLUMN admin_audit_log.action IS 'What was done, e.g. fulfillment.retry, delivery_email.resend.';
COMMENT ON COLUMN admin_audit_log.order_id IS 'The order acted on, if any.';
COMMENT ON COLUMN admin_audit_log.reason IS 'Why, as the admin wrote it.';
COMMENT ON COLUMN admin_audit_log.details IS 'What else the action recorded (JSON), e.g. the previous error.';
COMMENT ON COLUMN admin_audit_log.at IS 'When.';

-- rate_limit_buckets
COMMENT ON COLUMN rate_limit_buckets.bucket IS
    'rule:subject, e.g. download:address:<ip> (subjects are client addresses and token '
    'subjects; not readable by bitloot_auditor).';
COMMENT ON COLUMN rate_limit_buckets.tat IS 'The theoretical arrival time of the next request the bucket allows.';

-- The audit views of 0002
COMMENT ON COLUMN delivery_audit_trail.order_id IS 'The order the key was delivered for.';
COMMENT ON COLUMN delivery_audit_trail.key_id IS 'Kinguin''s key id.';
COMMENT ON COLUMN delivery_audit_trail.customer_email IS 'The order''s email.';
COMMENT ON COLUMN delivery_audit_trail.product_id IS 'The product it is a key of.';
COMMENT ON COLUMN delivery_audit_trail.status IS 'stored, accessed, expired or deleted (key_delivery_logs.status).';
COMMENT ON COLUMN delivery_audit_trail.content_type IS 'text/plain, or the image type of an image key.';
COMMENT ON COLUMN delivery_audit_trail.master_key_id IS 'The master key that wraps its data key.';
COMMENT ON COLUMN delivery_audit_trail.delivered_at IS 'When it was stored.';
COMMENT ON COLUMN delivery_audit_trail.expires_at IS 'When it stops being downloadable.';
COMMENT ON COLUMN delivery_audit_trail.last_accessed_at IS 'When a link was last issued for it.';
COMMENT ON COLUMN delivery_audit_trail.access_count IS 'How many links were issued for it (key_access_events).';
COMMENT ON COLUMN delivery_audit_trail.admin_access_count IS 'How many of them were admin overrides.';

COMMENT ON COLUMN payment_audit.payment_id IS 'The NOWPayments payment id.';
COMMENT ON COLUMN payment_audit.order_id IS 'Our order it pays.';
COMMENT ON COLUMN payment_audit.current_status IS 'The payment''s status now.';
COMMENT ON COLUMN payment_audit.price_amount IS 'The price asked, in price_currency.';
COMMENT ON COLUMN payment_audit.price_currency IS 'The fiat currency of price_amount.';
COMMENT ON COLUMN payment_audit.actually_paid IS 'The crypto amount received so far.';
COMMENT ON COLUMN payment_audit.pay_currency IS 'The cryptocurrency paid with.';
COMMENT ON COLUMN payment_audit.event_id IS 'webhook_events.id of one report about it; NULL if none is stored.';
COMMENT ON COLUMN payment_audit.received_at IS 'When that report arrived.';
COMMENT ON COLUMN payment_audit.ipn_status IS 'The payment_status that report gave.';
COMMENT ON COLUMN payment_audit.signature_variant IS 'Which serialisation its signature matched (api: the status API).';
COMMENT ON COLUMN payment_audit.outcome IS 'What applying it did (webhook_outcomes).';
COMMENT ON COLUMN payment_audit.needs_attention IS 'Whether it was flagged for a human.';

COMMENT ON COLUMN fulfillment_timeline.order_id IS 'The order.';
COMMENT ON COLUMN fulfillment_timeline.at IS 'When it happened.';
COMMENT ON COLUMN fulfillment_timeline.source IS
    'Where it comes from: status, <provider> webhook, kinguin order, key stored, key access, '
    'email or admin.';
COMMENT ON COLUMN fulfillment_timeline.what IS 'What happened, in a few words.';
COMMENT ON COLUMN fulfillment_timeline.actor IS 'Who did it.';
COMMENT ON COLUMN fulfillment_timeline.reason IS 'Why, when known (an email''s last error, an admin''s reason).';
