-- BitLoot core schema: catalog, orders and their state machines, payments, webhooks,
-- Kinguin orders, key delivery, email outbox, audit. Every table and view is commented.
--
-- Who changed a status is taken from the transaction-local settings `bitloot.actor` and
-- `bitloot.reason` (set with set_config(..., true)); a change made without them, e.g. a
-- hand-written UPDATE in psql, is recorded as `sql:<role>`.

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_touch_updated_at() IS 'Keeps updated_at current on every UPDATE.';

CREATE FUNCTION bitloot_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'BL002';
END;
$$;
COMMENT ON FUNCTION bitloot_reject_change() IS
    'Trigger body for append-only tables: rejects UPDATE, DELETE and TRUNCATE (SQLSTATE BL002).';

CREATE FUNCTION bitloot_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('bitloot.actor', true), ''), 'sql:' || session_user)
$$;
COMMENT ON FUNCTION bitloot_actor() IS
    'Who is acting in this transaction: bitloot.actor if the application set it, else sql:<role>.';

-- ---------------------------------------------------------------------------------------
-- Catalog
-- ---------------------------------------------------------------------------------------

CREATE TABLE products (
    product_id  text PRIMARY KEY CHECK (product_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price       numeric(12, 2) NOT NULL CHECK (price > 0),
    currency    text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    max_cost    numeric(12, 2) NOT NULL CHECK (max_cost > 0),
    text_only   boolean NOT NULL DEFAULT true,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE products IS
    'The catalog rows an order may name: a Kinguin productId, our retail price and currency, '
    'and max_cost, the most (EUR) we pay Kinguin per unit.';
COMMENT ON COLUMN products.text_only IS 'Ask Kinguin for keyType "text" (false: accept image keys too).';
CREATE TRIGGER products_touch BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

-- ---------------------------------------------------------------------------------------
-- Orders and their two state machines
-- ---------------------------------------------------------------------------------------

CREATE TABLE order_status_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
COMMENT ON TABLE order_status_transitions IS
    'The legal moves of orders.status; the orders trigger rejects any other move.';
INSERT INTO order_status_transitions (from_status, to_status) VALUES
    ('created', 'waiting'), ('created', 'expired'), ('created', 'failed'),
    ('waiting', 'confirming'), ('waiting', 'paid'), ('waiting', 'underpaid'),
    ('waiting', 'failed'), ('waiting', 'expired'), ('waiting', 'refunded'),
    ('confirming', 'paid'), ('confirming', 'underpaid'), ('confirming', 'failed'),
    ('confirming', 'expired'), ('confirming', 'refunded'),
    ('paid', 'fulfilled'), ('paid', 'refunded'),
    ('underpaid', 'refunded'),
    ('fulfilled', 'refunded');

CREATE TABLE fulfillment_status_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
COMMENT ON TABLE fulfillment_status_transitions IS
    'The legal moves of orders.fulfillment_status; failed -> pending is an (audited) retry.';
INSERT INTO fulfillment_status_transitions (from_status, to_status) VALUES
    ('pending', 'processing'), ('pending', 'failed'),
    ('processing', 'fulfilled'), ('processing', 'failed'),
    ('failed', 'pending');

CREATE TABLE orders (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            text,
    email              text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    currency           text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    total_amount       numeric(12, 2) NOT NULL CHECK (total_amount > 0),
    status             text NOT NULL DEFAULT 'created' CHECK (status IN
                           ('created', 'waiting', 'confirming', 'paid', 'fulfilled',
                            'underpaid', 'failed', 'expired', 'refunded')),
    fulfillment_status text NOT NULL DEFAULT 'pending' CHECK (fulfillment_status IN
                           ('pending', 'processing', 'fulfilled', 'failed')),
    status_reason      text,
    fulfillment_error  text,
    invoice_id         text UNIQUE,
    invoice_url        text,
    invoice_error      text,
    kinguin_placement_started_at timestamptz,
    idempotency_key    text UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    paid_at            timestamptz,
    fulfilled_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Keys are only ever bought for a paid order, and an order is fulfilled only with its keys.
    CONSTRAINT fulfillment_needs_payment CHECK
        (fulfillment_status = 'pending' OR status IN ('paid', 'fulfilled', 'refunded')),
    CONSTRAINT fulfilled_order_has_keys CHECK
        (status <> 'fulfilled' OR fulfillment_status = 'fulfilled')
);
COMMENT ON TABLE orders IS
    'One customer order. status is the payment-side state machine, fulfillment_status the '
    'delivery side; both are enforced by trigger orders_status_guard and logged to order_events.';
COMMENT ON COLUMN orders.user_id IS 'The JWT sub of a signed-in customer; NULL for guest checkout.';
COMMENT ON COLUMN orders.status_reason IS 'Why the order is in its current status (e.g. underpaid by 0.50).';
COMMENT ON COLUMN orders.fulfillment_error IS 'The last fulfillment failure, shown to admins.';
COMMENT ON COLUMN orders.invoice_error IS 'Why creating the NOWPayments invoice failed (order stays created).';
COMMENT ON COLUMN orders.kinguin_placement_started_at IS
    'Set (and committed) before the Kinguin order is placed: a retry that finds it set but no '
    'kinguin_orders row looks the order up by orderExternalId instead of buying again.';
COMMENT ON COLUMN orders.idempotency_key IS
    'The Idempotency-Key header of POST /orders: a retried request returns this order.';
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at DESC, id DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_paid_unfulfilled_idx ON orders (paid_at)
    WHERE status = 'paid' AND fulfillment_status <> 'fulfilled';
CREATE INDEX orders_email_idx ON orders (lower(email));

CREATE TABLE order_items (
    order_id   uuid NOT NULL REFERENCES orders (id),
    product_id text NOT NULL REFERENCES products (product_id),
    qty        integer NOT NULL CHECK (qty BETWEEN 1 AND 9),
    unit_price numeric(12, 2) NOT NULL CHECK (unit_price > 0),
    max_cost   numeric(12, 2) NOT NULL CHECK (max_cost > 0),
    PRIMARY KEY (order_id, product_id)
);
COMMENT ON TABLE order_items IS
    'The products of an order with the price charged and the most we pay Kinguin, both '
    'copied from products when the order was made.';

CREATE TABLE order_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    machine     text NOT NULL CHECK (machine IN ('order', 'fulfillment')),
    from_status text,
    to_status   text NOT NULL,
    actor       text NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE order_events IS
    'Append-only history of every status change of every order, written by trigger, so a '
    'change made from psql is recorded too. machine says which state machine moved.';
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

CREATE FUNCTION bitloot_orders_status_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'created' OR NEW.fulfillment_status <> 'pending' THEN
            RAISE EXCEPTION 'a new order starts as created/pending, not %/%',
                NEW.status, NEW.fulfillment_status USING ERRCODE = 'BL001';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'orders.id cannot change' USING ERRCODE = 'BL001';
    END IF;
    IF NEW.status <> OLD.status THEN
        IF NOT EXISTS (SELECT 1 FROM order_status_transitions
                       WHERE from_status = OLD.status AND to_status = NEW.status) THEN
            RAISE EXCEPTION 'illegal order status transition % -> % (order %)',
                OLD.status, NEW.status, OLD.id USING ERRCODE = 'BL001';
        END IF;
        IF NEW.status = 'paid' THEN
            NEW.paid_at := coalesce(NEW.paid_at, now());
        END IF;
    END IF;
    IF NEW.fulfillment_status <> OLD.fulfillment_status THEN
        IF NOT EXISTS (SELECT 1 FROM fulfillment_status_transitions
                       WHERE from_status = OLD.fulfillment_status
                         AND to_status = NEW.fulfillment_status) THEN
            RAISE EXCEPTION 'illegal fulfillment status transition % -> % (order %)',
                OLD.fulfillment_status, NEW.fulfillment_status, OLD.id USING ERRCODE = 'BL001';
        END IF;
        IF NEW.fulfillment_status = 'fulfilled' THEN
            NEW.fulfilled_at := coalesce(NEW.fulfilled_at, now());
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_orders_status_guard() IS
    'Enforces both order state machines: an illegal move raises SQLSTATE BL001.';

CREATE FUNCTION bitloot_orders_log_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    reason text := nullif(current_setting('bitloot.reason', true), '');
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_events (order_id, machine, from_status, to_status, actor, reason)
        VALUES (NEW.id, 'order', NULL, NEW.status, bitloot_actor(), reason);
        RETURN NULL;
    END IF;
    IF NEW.status <> OLD.status THEN
        INSERT INTO order_events (order_id, machine, from_status, to_status, actor, reason)
        VALUES (NEW.id, 'order', OLD.status, NEW.status, bitloot_actor(), reason);
    END IF;
    IF NEW.fulfillment_status <> OLD.fulfillment_status THEN
        INSERT INTO order_events (order_id, machine, from_status, to_status, actor, reason)
        VALUES (NEW.id, 'fulfillment', OLD.fulfillment_status, NEW.fulfillment_status,
                bitloot_actor(), reason);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION bitloot_orders_log_events() IS
    'Writes one order_events row per status change that was really committed to orders.';

CREATE TRIGGER orders_status_guard BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_orders_status_guard();
CREATE TRIGGER orders_log_events AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_orders_log_events();
CREATE TRIGGER orders_no_delete BEFORE DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Payments and webhooks
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_payment_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE status
        WHEN 'waiting' THEN 0 WHEN 'confirming' THEN 1 WHEN 'confirmed' THEN 2
        WHEN 'sending' THEN 3 WHEN 'partially_paid' THEN 4
        WHEN 'finished' THEN 5 WHEN 'failed' THEN 5 WHEN 'expired' THEN 5
        WHEN 'refunded' THEN 6 END
$$;
COMMENT ON FUNCTION bitloot_payment_status_rank(text) IS
    'Progress order of NOWPayments statuses: a payment only moves to a higher rank, so a late '
    'or replayed IPN never moves it back.';

CREATE TABLE payments (
    payment_id            text PRIMARY KEY,
    order_id              uuid NOT NULL REFERENCES orders (id),
    invoice_id            text,
    parent_payment_id     text,
    status                text NOT NULL CHECK (bitloot_payment_status_rank(status) IS NOT NULL),
    price_amount          numeric(30, 12),
    price_currency        text,
    pay_amount            numeric(40, 18),
    pay_currency          text,
    actually_paid         numeric(40, 18),
    actually_paid_at_fiat numeric(30, 12),
    outcome_amount        numeric(40, 18),
    outcome_currency      text,
    provider_updated_at   timestamptz,
    last_ipn_at           timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments IS
    'NOWPayments payments as last reported by a verified IPN or the status API; one order may '
    'have several (re-deposits carry parent_payment_id).';
CREATE INDEX payments_order_idx ON payments (order_id);
CREATE INDEX payments_created_idx ON payments (created_at DESC, payment_id DESC);
CREATE INDEX payments_status_created_idx ON payments (status, created_at DESC, payment_id DESC);
CREATE INDEX payments_not_final_idx ON payments (updated_at)
    WHERE status IN ('waiting', 'confirming', 'confirmed', 'sending');
CREATE TRIGGER payments_touch BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

CREATE TABLE webhook_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider          text NOT NULL CHECK (provider IN ('nowpayments', 'kinguin')),
    dedup_key         text NOT NULL,
    event_type        text NOT NULL,
    external_id       text,
    order_id          uuid,
    raw_body          text NOT NULL,
    signature_variant text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    outcome           text,
    needs_attention   boolean NOT NULL DEFAULT false,
    UNIQUE (provider, dedup_key)
);
COMMENT ON TABLE webhook_events IS
    'Every verified webhook exactly once (UNIQUE provider, dedup_key), raw as received, with '
    'what applying it did (outcome). Unverified requests are never stored.';
COMMENT ON COLUMN webhook_events.order_id IS
    'The order it names, if any; no foreign key, so events for unknown orders are kept too.';
COMMENT ON COLUMN webhook_events.needs_attention IS
    'Flagged for admins: unknown order, currency mismatch, underpayment and the like.';
CREATE INDEX webhook_events_order_idx ON webhook_events (order_id, id) WHERE order_id IS NOT NULL;
CREATE INDEX webhook_events_external_idx ON webhook_events (provider, external_id, id);
CREATE INDEX webhook_events_attention_idx ON webhook_events (received_at) WHERE needs_attention;

-- ---------------------------------------------------------------------------------------
-- Kinguin orders
-- ---------------------------------------------------------------------------------------

CREATE TABLE kinguin_orders (
    order_id          uuid PRIMARY KEY REFERENCES orders (id),
    kinguin_order_id  text NOT NULL UNIQUE,
    status            text NOT NULL CHECK (status IN ('processing', 'completed', 'canceled', 'refunded')),
    status_updated_at timestamptz,
    payment_price     numeric(14, 4),
    polls             integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kinguin_orders IS
    'The Kinguin order bought for one of our orders (orderExternalId = our order id). '
    'status_updated_at is the webhook updatedAt watermark: older events are ignored.';
CREATE TRIGGER kinguin_orders_touch BEFORE UPDATE ON kinguin_orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

-- ---------------------------------------------------------------------------------------
-- Keys: delivery log, access events, vault canaries
-- ---------------------------------------------------------------------------------------

CREATE TABLE key_delivery_logs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid NOT NULL REFERENCES orders (id),
    key_id           text NOT NULL,
    product_id       text,
    object_key       text NOT NULL UNIQUE,
    content_type     text NOT NULL,
    wrapped_data_key bytea NOT NULL,
    master_key_id    text NOT NULL,
    status           text NOT NULL DEFAULT 'stored'
                         CHECK (status IN ('stored', 'accessed', 'expired', 'deleted')),
    expires_at       timestamptz,
    last_accessed_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, key_id)
);
COMMENT ON TABLE key_delivery_logs IS
    'One row per delivered key: where its ciphertext is (object_key) and its data key wrapped '
    'by master key master_key_id. Never the key itself.';
CREATE INDEX key_delivery_logs_master_key_idx ON key_delivery_logs (master_key_id);
CREATE INDEX key_delivery_logs_expiry_idx ON key_delivery_logs (expires_at)
    WHERE status IN ('stored', 'accessed');
CREATE TRIGGER key_delivery_logs_touch BEFORE UPDATE ON key_delivery_logs
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

CREATE TABLE key_access_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id),
    key_id     text NOT NULL,
    actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'order_token', 'admin')),
    actor_id   text,
    client_ip  inet,
    user_agent text,
    at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE key_access_events IS
    'Append-only: every issue of a download link for a key, who asked (actor_kind says which '
    'kind of token; admin means an admin override) and from where.';
CREATE INDEX key_access_events_order_idx ON key_access_events (order_id, key_id, id);
CREATE TRIGGER key_access_events_append_only BEFORE UPDATE OR DELETE ON key_access_events
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER key_access_events_no_truncate BEFORE TRUNCATE ON key_access_events
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE vault_canaries (
    master_key_id text PRIMARY KEY,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vault_canaries IS
    'A known value wrapped by each master key, so a process started with a wrong master key '
    'refuses to run instead of writing data nobody can decrypt.';

-- ---------------------------------------------------------------------------------------
-- Email outbox, admin audit, rate limits
-- ---------------------------------------------------------------------------------------

CREATE TABLE email_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id),
    kind       text NOT NULL CHECK (kind IN ('delivery')),
    generation integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    to_address text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    message_id text,
    sent_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind, generation)
);
COMMENT ON TABLE email_outbox IS
    'One row per email to send, idempotent on (order, kind, generation): a retried job finds '
    'it sent and sends nothing; an admin resend adds the next generation.';
CREATE TRIGGER email_outbox_touch BEFORE UPDATE ON email_outbox
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

CREATE TABLE admin_audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id text NOT NULL,
    action   text NOT NULL,
    order_id uuid REFERENCES orders (id),
    reason   text,
    details  jsonb NOT NULL DEFAULT '{}'::jsonb,
    at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE admin_audit_log IS 'Append-only: every admin action, who did it and why.';
CREATE INDEX admin_audit_log_order_idx ON admin_audit_log (order_id, id);
CREATE TRIGGER admin_audit_log_append_only BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER admin_audit_log_no_truncate BEFORE TRUNCATE ON admin_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE rate_limit_buckets (
    bucket text PRIMARY KEY,
    tat    timestamptz NOT NULL
);
COMMENT ON TABLE rate_limit_buckets IS
    'GCRA rate limiting shared by every server process: tat is the theoretical arrival time '
    'of the next request allowed in the bucket.';

-- ---------------------------------------------------------------------------------------
-- Audit views for people who read SQL
-- ---------------------------------------------------------------------------------------

CREATE VIEW delivery_audit_trail AS
SELECT k.order_id,
       k.key_id,
       o.email AS customer_email,
       k.product_id,
       k.status,
       k.content_type,
       k.master_key_id,
       k.created_at AS delivered_at,
       k.expires_at,
       k.last_accessed_at,
       (SELECT count(*) FROM key_access_events a
         WHERE a.order_id = k.order_id AND a.key_id = k.key_id) AS access_count,
       (SELECT count(*) FROM key_access_events a
         WHERE a.order_id = k.order_id AND a.key_id = k.key_id
           AND a.actor_kind = 'admin') AS admin_access_count
  FROM key_delivery_logs k
  JOIN orders o ON o.id = k.order_id;
COMMENT ON VIEW delivery_audit_trail IS
    'Per delivered key: order, customer email, status, expiry, last access and a real access '
    'count from key_access_events. Holds no key material.';

CREATE VIEW payment_audit AS
SELECT p.payment_id,
       p.order_id,
       p.status AS current_status,
       p.price_amount,
       p.price_currency,
       p.actually_paid,
       p.pay_currency,
       w.id AS event_id,
       w.received_at,
       w.raw_body::jsonb ->> 'payment_status' AS ipn_status,
       w.signature_variant,
       w.outcome,
       w.needs_attention
  FROM payments p
  LEFT JOIN webhook_events w
    ON w.provider = 'nowpayments' AND w.external_id = p.payment_id;
COMMENT ON VIEW payment_audit IS
    'Per payment, one row per IPN received for it, oldest first by event_id: the status each '
    'IPN reported and what applying it did.';

CREATE VIEW fulfillment_timeline AS
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
  FROM email_outbox
UNION ALL
SELECT order_id, at, 'admin', action, admin_id, reason
  FROM admin_audit_log WHERE order_id IS NOT NULL;
COMMENT ON VIEW fulfillment_timeline IS
    'Everything that happened to an order, one row per event, from every table: '
    'SELECT * FROM fulfillment_timeline WHERE order_id = ... ORDER BY at.';
