-- The database guards the money (issue 14, item 1). Until now the triggers checked only
-- which status may follow which; from here on:
--
--   * an order becomes `paid` only with evidence: a final payment of its own that covers
--     its total in its currency under the configured policy, or an admin's acceptance row
--     (SQLSTATE BL003 otherwise, naming the order). The rule is written once, in
--     bitloot_payment_evidence(); the worker and the reconciler ask the same function
--     before they buy (bitloot/fulfillment/service.py);
--   * the policy the rule reads (BITLOOT_PAID_ON, BITLOOT_PAYMENT_TOLERANCE) is a row of
--     payment_policy, which every `serve` and `worker` writes from its settings when it
--     starts (bitloot/resources.py, open_resources): the database cannot read the
--     environment of the processes, and a table is visible to psql and to the auditor;
--   * an order's money and identity (total_amount, currency, email, user_id) never change
--     by a plain UPDATE (BL004); the only correction is bitloot_correct_order_email(),
--     which writes its admin_audit_log row first;
--   * payments, the delivery log, webhook events, the email outbox and Kinguin orders are
--     never deleted (BL002, like the append-only tables), and their columns move only as
--     their meaning says (BL005): a payment's status only up its rank, its amounts fixed
--     once final; a key's object and status only forward, its data key only re-wrapped
--     under another master key (`bitloot keys rotate`); a webhook's body never.
--
-- SQLSTATEs: BL001 illegal state-machine move (0002), BL002 append-only (0002),
-- BL003 `paid` without evidence, BL004 order money/identity changed outside the audited
-- function, BL005 a forward-only column moved backwards or an immutable one changed.

-- ---------------------------------------------------------------------------------------
-- The payment policy, where the database can read it
-- ---------------------------------------------------------------------------------------

CREATE TABLE payment_policy (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    paid_on    text NOT NULL CHECK (paid_on IN ('finished', 'confirmed')),
    tolerance  numeric NOT NULL CHECK (tolerance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payment_policy IS
    'One row: when a payment pays an order (BITLOOT_PAID_ON, BITLOOT_PAYMENT_TOLERANCE), as '
    'the last `serve` or `worker` to start wrote it from its settings (open_resources). '
    'bitloot_payment_evidence() reads it; run every process with the same settings.';
COMMENT ON COLUMN payment_policy.singleton IS 'Always true: the table has exactly one row.';
COMMENT ON COLUMN payment_policy.paid_on IS
    'finished: only a finished payment pays an order; confirmed: confirmed and sending do too.';
COMMENT ON COLUMN payment_policy.tolerance IS
    'How much less than the order total (in the order''s currency) a payment may cover and '
    'still pay it.';
COMMENT ON COLUMN payment_policy.updated_at IS 'When a process last wrote it (at its start).';
INSERT INTO payment_policy (paid_on, tolerance) VALUES ('finished', 0);
CREATE TRIGGER payment_policy_touch BEFORE UPDATE ON payment_policy
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();
CREATE TRIGGER payment_policy_no_delete BEFORE DELETE ON payment_policy
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER payment_policy_no_truncate BEFORE TRUNCATE ON payment_policy
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Admin acceptances: the other evidence for `paid`
-- ---------------------------------------------------------------------------------------

CREATE TABLE payment_acceptances (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    admin_id    text NOT NULL CHECK (length(admin_id) > 0),
    reason      text NOT NULL CHECK (length(btrim(reason)) > 0),
    accepted_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payment_acceptances IS
    'Append-only: an admin''s decision that an order counts as paid without a covering '
    'payment (e.g. a top-up settled by hand). It is evidence for `paid` to the orders '
    'trigger; POST /admin/orders/{id}/accept-payment (the business-exceptions issue) writes it.';
COMMENT ON COLUMN payment_acceptances.id IS 'Order of acceptances (identity).';
COMMENT ON COLUMN payment_acceptances.order_id IS 'The order accepted as paid.';
COMMENT ON COLUMN payment_acceptances.admin_id IS 'The JWT sub of the admin who accepted it.';
COMMENT ON COLUMN payment_acceptances.reason IS 'Why, as the admin wrote it (required).';
COMMENT ON COLUMN payment_acceptances.accepted_at IS 'When it was accepted.';
CREATE INDEX payment_acceptances_order_idx ON payment_acceptances (order_id, id);
CREATE TRIGGER payment_acceptances_append_only BEFORE UPDATE OR DELETE ON payment_acceptances
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER payment_acceptances_no_truncate BEFORE TRUNCATE ON payment_acceptances
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- The rule, once
-- ---------------------------------------------------------------------------------------

-- The Python side (bitloot/payments/service.py, _decide and covers) decides the same way
-- which status an IPN leads to; this is the guard nothing passes. The comparison is
-- multiplied out (price * min(pay, sent) + tolerance * pay >= total * pay, pay > 0), so it
-- is exact, with no rounded division.
CREATE FUNCTION bitloot_payment_evidence(p_order_id uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT 'payment ' || p.payment_id
           FROM payments p
           JOIN orders o ON o.id = p.order_id
          CROSS JOIN payment_policy pol
          WHERE p.order_id = p_order_id
            AND p.parent_payment_id IS NULL
            AND (p.status = 'finished'
                 OR (pol.paid_on = 'confirmed' AND p.status IN ('confirmed', 'sending')))
            AND p.price_currency = o.currency
            AND p.price_amount IS NOT NULL
            AND p.actually_paid IS NOT NULL
            AND p.pay_amount > 0
            AND p.price_amount * least(p.pay_amount, p.actually_paid)
                + pol.tolerance * p.pay_amount >= o.total_amount * p.pay_amount
          ORDER BY p.created_at, p.payment_id
          LIMIT 1),
        (SELECT 'acceptance ' || a.id
           FROM payment_acceptances a
          WHERE a.order_id = p_order_id
          ORDER BY a.id
          LIMIT 1))
$$;
COMMENT ON FUNCTION bitloot_payment_evidence(uuid) IS
    'What proves the order is paid: ''payment <id>'' (the first final payment of its own, '
    'not a re-deposit, in its currency, with price_amount, actually_paid and a positive '
    'pay_amount, whose price_amount * least(1, actually_paid / pay_amount) + tolerance '
    'covers total_amount; final is finished, or also confirmed/sending under paid_on = '
    'confirmed, per payment_policy), else ''acceptance <id>'' (payment_acceptances), else '
    'NULL. The orders trigger, the worker and the reconciler all ask it.';

-- ---------------------------------------------------------------------------------------
-- Orders: `paid` needs evidence; money and identity change only through the function
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_orders_money_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text[] := ARRAY[]::text[];
BEGIN
    IF NEW.status = 'paid' AND OLD.status <> 'paid'
       AND bitloot_payment_evidence(NEW.id) IS NULL THEN
        RAISE EXCEPTION 'order % cannot become paid: no final payment covers its total % % '
            'under payment_policy, and no admin accepted it (payment_acceptances)',
            NEW.id, OLD.total_amount, OLD.currency USING ERRCODE = 'BL003';
    END IF;
    IF NEW.total_amount IS DISTINCT FROM OLD.total_amount THEN
        changed := changed || 'total_amount'::text;
    END IF;
    IF NEW.currency IS DISTINCT FROM OLD.currency THEN
        changed := changed || 'currency'::text;
    END IF;
    IF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
        changed := changed || 'user_id'::text;
    END IF;
    IF NEW.email IS DISTINCT FROM OLD.email AND NOT EXISTS (
        -- bitloot_correct_order_email() writes this row, in this transaction, first.
        SELECT 1 FROM admin_audit_log l
         WHERE l.order_id = NEW.id AND l.action = 'correct_order_email'
           AND l.details ->> 'xid' = txid_current()::text
           AND l.details ->> 'new_email' = NEW.email) THEN
        changed := changed || 'email'::text;
    END IF;
    IF cardinality(changed) > 0 THEN
        RAISE EXCEPTION 'orders.% of order % cannot be changed by UPDATE: the email is '
            'corrected with bitloot_correct_order_email(order_id, new_email, admin_id, '
            'reason); the total, currency and user never change',
            array_to_string(changed, ', '), OLD.id USING ERRCODE = 'BL004';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_orders_money_guard() IS
    'An order becomes paid only with bitloot_payment_evidence() (else BL003); its '
    'total_amount, currency and user_id never change, its email only through '
    'bitloot_correct_order_email() (else BL004).';
-- Named to fire after orders_status_guard (triggers fire in name order): an illegal move
-- is reported as such (BL001) before the evidence is asked for.
CREATE TRIGGER orders_status_guard_money BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_orders_money_guard();

CREATE FUNCTION bitloot_correct_order_email(
    p_order_id uuid, p_new_email text, p_admin_id text, p_reason text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old_email text;
BEGIN
    IF coalesce(btrim(p_admin_id), '') = '' OR coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'an email correction needs the admin and the reason (order %)',
            p_order_id USING ERRCODE = 'BL004';
    END IF;
    SELECT email INTO old_email FROM orders WHERE id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', p_order_id USING ERRCODE = 'BL004';
    END IF;
    IF old_email = p_new_email THEN
        RETURN;
    END IF;
    INSERT INTO admin_audit_log (admin_id, action, order_id, reason, details)
    VALUES (p_admin_id, 'correct_order_email', p_order_id, p_reason,
            jsonb_build_object('old_email', old_email, 'new_email', p_new_email,
                               'xid', txid_current()::text));
    UPDATE orders SET email = p_new_email WHERE id = p_order_id;
END;
$$;
COMMENT ON FUNCTION bitloot_correct_order_email(uuid, text, text, text) IS
    'The one correction of an order: its email, by an admin with a reason. Writes an '
    'admin_audit_log row (action correct_order_email, details old_email, new_email, xid) '
    'and then the email; the orders trigger accepts an email change only with that row.';

-- ---------------------------------------------------------------------------------------
-- Payments: forward only, fixed once final, never deleted
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_payments_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_id <> OLD.payment_id OR NEW.order_id <> OLD.order_id THEN
        RAISE EXCEPTION 'payment %: payment_id and order_id never change', OLD.payment_id
            USING ERRCODE = 'BL005';
    END IF;
    IF NEW.status <> OLD.status
       AND bitloot_payment_status_rank(NEW.status) <= bitloot_payment_status_rank(OLD.status)
    THEN
        RAISE EXCEPTION 'payment % (order %) only moves forward: % -> % is not allowed',
            OLD.payment_id, OLD.order_id, OLD.status, NEW.status USING ERRCODE = 'BL005';
    END IF;
    IF bitloot_payment_status_rank(OLD.status) >= 5
       AND (NEW.price_amount, NEW.price_currency, NEW.pay_amount, NEW.pay_currency,
            NEW.actually_paid, NEW.parent_payment_id)
           IS DISTINCT FROM
           (OLD.price_amount, OLD.price_currency, OLD.pay_amount, OLD.pay_currency,
            OLD.actually_paid, OLD.parent_payment_id) THEN
        RAISE EXCEPTION 'payment % (order %) is final (%): its amounts and currencies '
            'never change', OLD.payment_id, OLD.order_id, OLD.status USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_payments_guard() IS
    'payments: the status only rises in bitloot_payment_status_rank; payment_id and order_id '
    'never change; once final (finished, failed, expired, refunded) price_amount, '
    'price_currency, pay_amount, pay_currency, actually_paid and parent_payment_id are fixed '
    '(BL005).';
CREATE TRIGGER payments_guard BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION bitloot_payments_guard();
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- The delivery log: a key's place never changes, its data key only by a re-wrap
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_key_delivery_logs_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.order_id, NEW.key_id, NEW.product_id, NEW.object_key, NEW.content_type,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.order_id, OLD.key_id, OLD.product_id, OLD.object_key, OLD.content_type,
        OLD.created_at) THEN
        RAISE EXCEPTION 'key % of order %: which key it is and where its ciphertext is never '
            'change', OLD.key_id, OLD.order_id USING ERRCODE = 'BL005';
    END IF;
    IF NEW.wrapped_data_key IS DISTINCT FROM OLD.wrapped_data_key
       AND NEW.master_key_id IS NOT DISTINCT FROM OLD.master_key_id THEN
        RAISE EXCEPTION 'key % of order %: the data key changes only when it is re-wrapped '
            'under another master key (bitloot keys rotate)', OLD.key_id, OLD.order_id
            USING ERRCODE = 'BL005';
    END IF;
    IF array_position(ARRAY['stored', 'accessed', 'expired', 'deleted'], NEW.status)
       < array_position(ARRAY['stored', 'accessed', 'expired', 'deleted'], OLD.status) THEN
        RAISE EXCEPTION 'key % of order %: status only moves forward (stored, accessed, '
            'expired, deleted): % -> % is not allowed', OLD.key_id, OLD.order_id,
            OLD.status, NEW.status USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_key_delivery_logs_guard() IS
    'key_delivery_logs: id, order_id, key_id, product_id, object_key, content_type and '
    'created_at never change; wrapped_data_key only together with master_key_id (a re-wrap, '
    'bitloot/vault/rotate.py); status only forward: stored, accessed, expired, deleted (BL005).';
CREATE TRIGGER key_delivery_logs_guard BEFORE UPDATE ON key_delivery_logs
    FOR EACH ROW EXECUTE FUNCTION bitloot_key_delivery_logs_guard();
CREATE TRIGGER key_delivery_logs_no_delete BEFORE DELETE ON key_delivery_logs
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER key_delivery_logs_no_truncate BEFORE TRUNCATE ON key_delivery_logs
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Webhook events: what was received never changes
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_webhook_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.provider, NEW.dedup_key, NEW.event_type, NEW.external_id, NEW.raw_body,
        NEW.signature_variant, NEW.received_at)
       IS DISTINCT FROM
       (OLD.id, OLD.provider, OLD.dedup_key, OLD.event_type, OLD.external_id, OLD.raw_body,
        OLD.signature_variant, OLD.received_at)
       OR (OLD.order_id IS NOT NULL AND NEW.order_id IS DISTINCT FROM OLD.order_id) THEN
        RAISE EXCEPTION 'webhook event %: what was received never changes (only its '
            'processing, outcome and flag, and an order id once)', OLD.id
            USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_webhook_events_guard() IS
    'webhook_events: provider, dedup_key, event_type, external_id, raw_body, '
    'signature_variant and received_at never change; order_id may be set once (BL005). '
    'processed_at, outcome and needs_attention record what applying it did.';
CREATE TRIGGER webhook_events_guard BEFORE UPDATE ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION bitloot_webhook_events_guard();
CREATE TRIGGER webhook_events_no_delete BEFORE DELETE ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER webhook_events_no_truncate BEFORE TRUNCATE ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Email outbox: an email's address is fixed, and a sent email stays sent
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_email_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.order_id, NEW.kind, NEW.generation, NEW.to_address, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.order_id, OLD.kind, OLD.generation, OLD.to_address, OLD.created_at) THEN
        RAISE EXCEPTION 'email % of order %: its order, kind, generation and address never '
            'change', OLD.id, OLD.order_id USING ERRCODE = 'BL005';
    END IF;
    IF OLD.status = 'sent' AND (NEW.status, NEW.message_id, NEW.sent_at)
       IS DISTINCT FROM (OLD.status, OLD.message_id, OLD.sent_at) THEN
        RAISE EXCEPTION 'email % of order % was sent: that never changes', OLD.id,
            OLD.order_id USING ERRCODE = 'BL005';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'email % of order %: attempts only grow', OLD.id, OLD.order_id
            USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_email_outbox_guard() IS
    'email_outbox: order_id, kind, generation, to_address and created_at never change; a '
    'sent email stays sent (status, message_id, sent_at); attempts only grow (BL005).';
CREATE TRIGGER email_outbox_guard BEFORE UPDATE ON email_outbox
    FOR EACH ROW EXECUTE FUNCTION bitloot_email_outbox_guard();
CREATE TRIGGER email_outbox_no_delete BEFORE DELETE ON email_outbox
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER email_outbox_no_truncate BEFORE TRUNCATE ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Kinguin orders: what we bought never changes; canceled and refunded are final
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_kinguin_orders_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.order_id, NEW.kinguin_order_id, NEW.created_at)
       IS DISTINCT FROM (OLD.order_id, OLD.kinguin_order_id, OLD.created_at)
       OR (OLD.payment_price IS NOT NULL
           AND NEW.payment_price IS DISTINCT FROM OLD.payment_price) THEN
        RAISE EXCEPTION 'Kinguin order % (order %): which order it is and what it cost never '
            'change', OLD.kinguin_order_id, OLD.order_id USING ERRCODE = 'BL005';
    END IF;
    IF NEW.status <> OLD.status AND (OLD.status = 'refunded'
                                     OR (OLD.status = 'canceled' AND NEW.status <> 'refunded'))
    THEN
        RAISE EXCEPTION 'Kinguin order % (order %) is %: % is not allowed',
            OLD.kinguin_order_id, OLD.order_id, OLD.status, NEW.status USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION bitloot_kinguin_orders_guard() IS
    'kinguin_orders: order_id, kinguin_order_id and created_at never change, payment_price '
    'once known never changes; a canceled order may only become refunded, a refunded one '
    'nothing else (BL005). polls is a counter that a retry resets.';
CREATE TRIGGER kinguin_orders_guard BEFORE UPDATE ON kinguin_orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_kinguin_orders_guard();
CREATE TRIGGER kinguin_orders_no_delete BEFORE DELETE ON kinguin_orders
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER kinguin_orders_no_truncate BEFORE TRUNCATE ON kinguin_orders
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Grants: payment_acceptances joins the append-only logs (INSERT, never UPDATE/DELETE)
-- ---------------------------------------------------------------------------------------

-- bitloot_grant_roles() (0009) finds the append-only logs by their UPDATE guard, so
-- applying it again covers payment_acceptances.
-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
