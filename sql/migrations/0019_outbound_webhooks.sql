-- Outbound webhooks to storefronts (issue 16), signed the Standard Webhooks way.
--
--   * webhook_endpoints: where an admin wants events (bitloot webhooks add, or
--     /admin/webhook-endpoints), with the event types it wants; its signing secrets are
--     wrapped by the master key (webhook_endpoint_secrets), never stored in clear;
--   * webhook_messages: the outbox. An AFTER UPDATE trigger on orders writes one message
--     per event (order.paid, order.fulfilled, ...) in the very transaction of the status
--     change, with one webhook_deliveries row per subscribed endpoint, and queues the
--     delivery job in that transaction too. A change that rolls back leaves nothing; a
--     change made from psql is announced like any other;
--   * webhook_attempts: every HTTP attempt, append-only (status code, latency, error).
--
-- Events for one order reach one endpoint in order: one job per (endpoint, order) drains
-- that pair's deliveries oldest first, and stops at the first one still to be retried.

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    event_types     text[] CHECK (event_types IS NULL OR cardinality(event_types) > 0),
    description     text CHECK (length(description) <= 500),
    enabled         boolean NOT NULL DEFAULT true,
    disabled_at     timestamptz,
    disabled_reason text CHECK (length(disabled_reason) <= 500),
    created_by      text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz,
    CONSTRAINT webhook_endpoints_disabled_has_reason CHECK
        (enabled OR (disabled_at IS NOT NULL AND disabled_reason IS NOT NULL))
);
COMMENT ON TABLE webhook_endpoints IS
    'Where storefronts want BitLoot''s events (Standard Webhooks). Registered by an admin; '
    'a removed endpoint keeps its row (removed_at) so its attempts stay explained.';
COMMENT ON COLUMN webhook_endpoints.id IS 'Endpoint id (shown by bitloot webhooks add).';
COMMENT ON COLUMN webhook_endpoints.url IS
    'Where events are POSTed: https, and never a private, loopback, link-local or metadata '
    'address (checked at registration and again at each delivery, against what the name '
    'resolves to), unless BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS is set.';
COMMENT ON COLUMN webhook_endpoints.event_types IS
    'The event types it receives (order.paid, ...); NULL: every type.';
COMMENT ON COLUMN webhook_endpoints.description IS 'What the admin called it.';
COMMENT ON COLUMN webhook_endpoints.enabled IS
    'false: no new deliveries are made to it (an admin disabled it, or it failed for days).';
COMMENT ON COLUMN webhook_endpoints.disabled_at IS 'When it was disabled.';
COMMENT ON COLUMN webhook_endpoints.disabled_reason IS
    'Why: an admin''s reason, or that its deliveries failed for days.';
COMMENT ON COLUMN webhook_endpoints.created_by IS 'Who registered it (admin sub or cli:<user>).';
COMMENT ON COLUMN webhook_endpoints.created_at IS 'When it was registered.';
COMMENT ON COLUMN webhook_endpoints.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN webhook_endpoints.removed_at IS
    'When it was removed (it receives nothing from then on); NULL while registered.';
CREATE TRIGGER webhook_endpoints_touch BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();
CREATE TRIGGER webhook_endpoints_no_delete BEFORE DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE webhook_endpoint_secrets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id   uuid NOT NULL REFERENCES webhook_endpoints (id),
    wrapped       bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz
);
COMMENT ON TABLE webhook_endpoint_secrets IS
    'An endpoint''s signing secrets (whsec_...), each wrapped (AES-GCM) by a master key, '
    'never in clear. Deliveries are signed with every secret not expired, so a rotation '
    'keeps deliveries verifiable by the old secret until it expires.';
COMMENT ON COLUMN webhook_endpoint_secrets.id IS 'Secret id (identity).';
COMMENT ON COLUMN webhook_endpoint_secrets.endpoint_id IS 'Whose secret.';
COMMENT ON COLUMN webhook_endpoint_secrets.wrapped IS
    'nonce || AES-GCM(master key, the 32 secret bytes), bound to the endpoint id.';
COMMENT ON COLUMN webhook_endpoint_secrets.master_key_id IS
    'The master key that wraps it (bitloot keys rotate re-wraps it under the newest).';
COMMENT ON COLUMN webhook_endpoint_secrets.created_at IS 'When it was made.';
COMMENT ON COLUMN webhook_endpoint_secrets.expires_at IS
    'NULL: the current secret. Set when the secret is rotated: it still signs until then.';
CREATE INDEX webhook_endpoint_secrets_endpoint_idx ON webhook_endpoint_secrets (endpoint_id, id);
CREATE INDEX webhook_endpoint_secrets_master_key_idx ON webhook_endpoint_secrets (master_key_id);
CREATE TRIGGER webhook_endpoint_secrets_no_delete BEFORE DELETE ON webhook_endpoint_secrets
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE webhook_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id     text NOT NULL UNIQUE CHECK (msg_id ~ '^msg_[0-9a-f]{32}$'),
    order_id   uuid NOT NULL REFERENCES orders (id),
    event_type text NOT NULL CHECK (event_type IN (
                   'order.paid', 'order.fulfilled', 'order.failed', 'order.underpaid',
                   'order.refunded', 'order.expired', 'order.key_replaced')),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE webhook_messages IS
    'Append-only outbox of events for storefronts, written by trigger in the transaction of '
    'the change that caused them (so a rolled-back change has no event).';
COMMENT ON COLUMN webhook_messages.id IS 'Order of events (identity): per order, the delivery order.';
COMMENT ON COLUMN webhook_messages.msg_id IS
    'The webhook-id header: the same on every attempt and every endpoint, so receivers dedupe.';
COMMENT ON COLUMN webhook_messages.order_id IS 'The order the event is about.';
COMMENT ON COLUMN webhook_messages.event_type IS
    'order.paid, order.fulfilled, order.failed (payment failed, or fulfillment failed), '
    'order.underpaid, order.refunded, order.expired, order.key_replaced.';
COMMENT ON COLUMN webhook_messages.data IS
    'The event''s data as of the change: orderId, status, fulfillmentStatus, total, '
    'currency, email (sent only when BITLOOT_WEBHOOK_INCLUDE_EMAIL is set), keyId for '
    'order.key_replaced. Never a key, a data key, a signed URL or a token.';
COMMENT ON COLUMN webhook_messages.created_at IS 'When it happened (the payload''s timestamp).';
CREATE INDEX webhook_messages_order_idx ON webhook_messages (order_id, id);
CREATE INDEX webhook_messages_created_idx ON webhook_messages (created_at);
CREATE TRIGGER webhook_messages_append_only BEFORE UPDATE OR DELETE ON webhook_messages
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER webhook_messages_no_truncate BEFORE TRUNCATE ON webhook_messages
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE webhook_deliveries (
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    message_id       bigint NOT NULL REFERENCES webhook_messages (id),
    order_id         uuid NOT NULL REFERENCES orders (id),
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text CHECK (length(last_error) <= 500),
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, message_id)
);
COMMENT ON TABLE webhook_deliveries IS
    'One row per event per endpoint: where its delivery stands. An admin redelivery puts a '
    'failed row back to pending.';
COMMENT ON COLUMN webhook_deliveries.endpoint_id IS 'The endpoint.';
COMMENT ON COLUMN webhook_deliveries.message_id IS 'The event (webhook_messages.id).';
COMMENT ON COLUMN webhook_deliveries.order_id IS
    'The event''s order (copied, so one job drains one endpoint''s events of one order).';
COMMENT ON COLUMN webhook_deliveries.status IS
    'pending (to send, at next_attempt_at), delivered (a 2xx), failed (a 4xx that is not '
    '408/409/425/429, or every retry used: about 3 days).';
COMMENT ON COLUMN webhook_deliveries.attempts IS 'HTTP attempts so far.';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS 'When a pending delivery is tried next.';
COMMENT ON COLUMN webhook_deliveries.last_status_code IS 'The last answer''s HTTP status, if any.';
COMMENT ON COLUMN webhook_deliveries.last_error IS 'Why the last attempt failed, in one line.';
COMMENT ON COLUMN webhook_deliveries.delivered_at IS 'When a 2xx came back.';
COMMENT ON COLUMN webhook_deliveries.created_at IS 'When it was queued.';
COMMENT ON COLUMN webhook_deliveries.updated_at IS 'When the row last changed.';
CREATE INDEX webhook_deliveries_pair_idx ON webhook_deliveries (endpoint_id, order_id, message_id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (created_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (updated_at)
    WHERE status = 'failed';
CREATE TRIGGER webhook_deliveries_touch BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();
CREATE TRIGGER webhook_deliveries_no_delete BEFORE DELETE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE webhook_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id),
    message_id  bigint NOT NULL REFERENCES webhook_messages (id),
    attempt     integer NOT NULL CHECK (attempt >= 1),
    outcome     text NOT NULL CHECK (outcome IN
                    ('delivered', 'retry', 'failed', 'refused_address')),
    status_code integer,
    latency_ms  numeric(10, 1),
    error       text CHECK (length(error) <= 500),
    at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_attempts IS
    'Append-only: every HTTP attempt to deliver an event to an endpoint.';
COMMENT ON COLUMN webhook_attempts.id IS 'Attempt id (identity).';
COMMENT ON COLUMN webhook_attempts.endpoint_id IS 'The endpoint.';
COMMENT ON COLUMN webhook_attempts.message_id IS 'The event.';
COMMENT ON COLUMN webhook_attempts.attempt IS 'Which attempt of this delivery (1 is the first).';
COMMENT ON COLUMN webhook_attempts.outcome IS
    'delivered (2xx), retry (5xx, 408, 409, 425, 429, timeout, connection error: tried '
    'again later), failed (another 4xx, or the last retry), refused_address (the name '
    'resolved to a private or metadata address: not sent).';
COMMENT ON COLUMN webhook_attempts.status_code IS 'The HTTP status, when an answer came.';
COMMENT ON COLUMN webhook_attempts.latency_ms IS 'From sending to the answer (or the error).';
COMMENT ON COLUMN webhook_attempts.error IS 'Why it failed, in one line (never the secret).';
COMMENT ON COLUMN webhook_attempts.at IS 'When it was made.';
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (endpoint_id, message_id, id);
CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER webhook_attempts_no_truncate BEFORE TRUNCATE ON webhook_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- The outbox is written by the database, in the transaction of the change
-- ---------------------------------------------------------------------------------------

-- Queue one event for every endpoint that wants it, and the job that delivers it. The
-- job is one per (endpoint, order): its procrastinate lock serialises the pair (events of
-- one order reach an endpoint in order), and its queueing lock keeps one waiting job per
-- pair (a job already waiting will find the new event too).
CREATE FUNCTION bitloot_queue_webhook_event(p_order_id uuid, p_type text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    message bigint;
    endpoint uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                    WHERE e.enabled AND e.removed_at IS NULL
                      AND (e.event_types IS NULL OR p_type = ANY (e.event_types))) THEN
        RETURN;  -- nobody listens: no message either
    END IF;
    INSERT INTO webhook_messages (msg_id, order_id, event_type, data)
    VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), p_order_id, p_type, p_data)
    RETURNING id INTO message;
    FOR endpoint IN
        SELECT e.id FROM webhook_endpoints e
         WHERE e.enabled AND e.removed_at IS NULL
           AND (e.event_types IS NULL OR p_type = ANY (e.event_types))
    LOOP
        INSERT INTO webhook_deliveries (endpoint_id, message_id, order_id)
        VALUES (endpoint, message, p_order_id);
        PERFORM bitloot_defer_webhook_job(endpoint, p_order_id);
    END LOOP;
END;
$$;
COMMENT ON FUNCTION bitloot_queue_webhook_event(uuid, text, jsonb) IS
    'Writes one webhook_messages row (when any enabled endpoint wants p_type), one '
    'webhook_deliveries row per such endpoint, and queues their delivery jobs.';

CREATE FUNCTION bitloot_defer_webhook_job(p_endpoint_id uuid, p_order_id uuid)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args)
    VALUES ('webhooks', 'deliver_webhooks',
            'webhook:' || p_endpoint_id || ':' || p_order_id,
            'webhook:' || p_endpoint_id || ':' || p_order_id,
            jsonb_build_object('endpoint_id', p_endpoint_id::text,
                               'order_id', p_order_id::text))
    ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
$$;
COMMENT ON FUNCTION bitloot_defer_webhook_job(uuid, uuid) IS
    'Queues deliver_webhooks for one endpoint and order (procrastinate job, queue webhooks) '
    'unless one is already waiting; in the caller''s transaction.';

CREATE FUNCTION bitloot_order_webhook_data(o orders) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'orderId', o.id,
        'status', o.status,
        'fulfillmentStatus', o.fulfillment_status,
        'total', trim_scale(o.total_amount)::text,
        'currency', o.currency,
        'email', o.email)
$$;
COMMENT ON FUNCTION bitloot_order_webhook_data(orders) IS
    'The data of an order event: the order as of the change (email removed at sending '
    'unless BITLOOT_WEBHOOK_INCLUDE_EMAIL).';

CREATE FUNCTION bitloot_orders_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> OLD.status
       AND NEW.status IN ('paid', 'fulfilled', 'failed', 'underpaid', 'refunded', 'expired') THEN
        PERFORM bitloot_queue_webhook_event(
            NEW.id, 'order.' || NEW.status, bitloot_order_webhook_data(NEW));
    END IF;
    IF NEW.fulfillment_status <> OLD.fulfillment_status AND NEW.fulfillment_status = 'failed'
       AND NEW.status = OLD.status THEN
        PERFORM bitloot_queue_webhook_event(
            NEW.id, 'order.failed', bitloot_order_webhook_data(NEW));
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION bitloot_orders_webhook_events() IS
    'After a committed-to-be status change of an order: queues its webhook event '
    '(order.<status>; order.failed also when the fulfillment fails).';
CREATE TRIGGER orders_webhook_events AFTER UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_orders_webhook_events();

CREATE FUNCTION bitloot_key_replacements_webhook_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'delivered' AND OLD.status <> 'delivered' THEN
        PERFORM bitloot_queue_webhook_event(
            NEW.order_id, 'order.key_replaced',
            (SELECT bitloot_order_webhook_data(o) FROM orders o WHERE o.id = NEW.order_id)
                || jsonb_build_object('keyId', NEW.key_id, 'replacementNumber', NEW.number));
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION bitloot_key_replacements_webhook_events() IS
    'A delivered key replacement queues order.key_replaced (with the replaced keyId).';
CREATE TRIGGER key_replacements_webhook_events AFTER UPDATE ON key_replacements
    FOR EACH ROW EXECUTE FUNCTION bitloot_key_replacements_webhook_events();

-- ---------------------------------------------------------------------------------------
-- For DBAs
-- ---------------------------------------------------------------------------------------

CREATE VIEW webhook_delivery_audit AS
SELECT d.endpoint_id,
       e.url,
       m.msg_id,
       m.event_type,
       m.order_id,
       m.created_at AS event_at,
       d.status,
       d.attempts,
       d.last_status_code,
       d.last_error,
       d.next_attempt_at,
       d.delivered_at
  FROM webhook_deliveries d
  JOIN webhook_messages m ON m.id = d.message_id
  JOIN webhook_endpoints e ON e.id = d.endpoint_id;
COMMENT ON VIEW webhook_delivery_audit IS
    'Every event for every endpoint and where its delivery stands; the attempts are in '
    'webhook_attempts. SELECT * FROM webhook_delivery_audit WHERE status <> ''delivered'';';
COMMENT ON COLUMN webhook_delivery_audit.endpoint_id IS 'The endpoint.';
COMMENT ON COLUMN webhook_delivery_audit.url IS 'Its URL.';
COMMENT ON COLUMN webhook_delivery_audit.msg_id IS 'The webhook-id the receiver sees.';
COMMENT ON COLUMN webhook_delivery_audit.event_type IS 'order.paid, ...';
COMMENT ON COLUMN webhook_delivery_audit.order_id IS 'The order.';
COMMENT ON COLUMN webhook_delivery_audit.event_at IS 'When the event happened.';
COMMENT ON COLUMN webhook_delivery_audit.status IS 'pending, delivered or failed.';
COMMENT ON COLUMN webhook_delivery_audit.attempts IS 'HTTP attempts so far.';
COMMENT ON COLUMN webhook_delivery_audit.last_status_code IS 'The last answer''s status.';
COMMENT ON COLUMN webhook_delivery_audit.last_error IS 'Why the last attempt failed.';
COMMENT ON COLUMN webhook_delivery_audit.next_attempt_at IS 'When a pending one is tried next.';
COMMENT ON COLUMN webhook_delivery_audit.delivered_at IS 'When it was delivered.';

-- What a human must look at, now with the shop's exceptions (issue 15) and the webhook
-- endpoints: every failed email by its kind (not only delivery emails), failed key
-- replacements (the old key stays live: refund the order or tell the customer), Kinguin
-- key returns that ended in an error (check the balance in Kinguin's dashboard), and
-- endpoints BitLoot disabled because they kept failing.
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
 WHERE k.outcome = 'error'
UNION ALL
SELECT 'webhook endpoint', NULL, e.id::text, 'disabled', e.disabled_at,
       'webhook endpoint ' || e.url || ' disabled: ' || e.disabled_reason
           || ' (fix the receiver, then bitloot webhooks enable and redeliver)'
  FROM webhook_endpoints e
 WHERE NOT e.enabled AND e.removed_at IS NULL AND e.disabled_reason LIKE 'failing%';
COMMENT ON COLUMN needs_attention.kind IS
    'What to look at: webhook, order, payment, email, replacement, key return or webhook '
    'endpoint.';
COMMENT ON COLUMN needs_attention.reference IS
    'The row to open: webhook_events.id (webhook), orders.id (order), payments.payment_id '
    '(payment), email_outbox.id (email), key_replacements.id (replacement), '
    'kinguin_key_returns.id (key return), webhook_endpoints.id (webhook endpoint).';

-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
