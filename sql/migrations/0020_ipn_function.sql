-- A NOWPayments payment report (an IPN, or the reconciler's read of GET /payment), applied
-- in one statement (issue 17): bitloot_apply_ipn() stores the event once, locks the order,
-- moves the payment forward, decides what the report means, moves the order, queues the
-- fulfillment job and the customer's notice, records the outcome and returns it, all in
-- the caller's transaction. Python keeps parsing, the signature check and the HTTP answer
-- (bitloot/payments/service.py apply_ipn); the rules live here and only here.
--
-- The rules, in the order they are applied:
--   * a copy of a stored report (UNIQUE (provider, dedup_key)) changes nothing: duplicate;
--   * a report naming no order of ours is kept and flagged: unknown_order;
--   * reports for one order apply one at a time (the order row is locked first);
--   * a payment id already recorded for another order: flagged, nothing applied;
--   * the payment only moves forward (bitloot_payment_status_rank; payments_guard fixes
--     its amounts once final): a report that moves nothing is stale;
--   * a re-deposit (parent_payment_id) never moves an order: redeposit_<status>, flagged;
--   * what the report leads to is bitloot_ipn_decision() (below): failed/expired/refunded
--     end the order so; partially_paid is underpaid; a final status (finished, or also
--     confirmed/sending under payment_policy.paid_on = confirmed) pays only with the
--     evidence bitloot_payment_evidence() asks for (same currency, amounts present, covered
--     within payment_policy.tolerance), else failed (other currency) or underpaid;
--     confirming/confirmed/sending is confirming; waiting leads nowhere;
--   * a final report for an order already underpaid never moves it (underpaid never
--     becomes paid by itself): underpaid_now_covered or still_underpaid, flagged;
--   * an order no longer open is not moved (except refunded from paid, fulfilled or
--     underpaid): order_already_<status>;
--   * the move itself goes through the orders state machine; the specific cause is set as
--     bitloot.reason so order_events keeps it (the actor's reason otherwise);
--   * paid queues fulfill_order, and paid/underpaid queue the customer's notice (once per
--     order and kind), each exactly as the Python deferrers would.

-- ---------------------------------------------------------------------------------------
-- Money shown to people
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_paid_in_fiat(p_price_amount numeric, p_actually_paid numeric,
                                     p_pay_amount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    -- The price times the share of the crypto amount that arrived, never more than the
    -- price; NULL when the report does not say. actually_paid_at_fiat and outcome_amount
    -- are not evidence (docs/external-apis.md 2.5, 2.7).
    SELECT CASE WHEN p_price_amount IS NULL OR p_actually_paid IS NULL
                     OR p_pay_amount IS NULL OR p_pay_amount <= 0 THEN NULL
                ELSE p_price_amount * least(1, p_actually_paid / p_pay_amount) END
$$;
COMMENT ON FUNCTION bitloot_paid_in_fiat(numeric, numeric, numeric) IS
    'How much of the price a payment really sent, in the price currency: price_amount * '
    'least(1, actually_paid / pay_amount); NULL when an amount is missing or pay_amount <= 0. '
    'Shown to people (reasons, notices); the decision to pay compares exactly instead '
    '(bitloot_ipn_decision, bitloot_payment_evidence).';

CREATE FUNCTION bitloot_round_cents(p_amount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT AS $$
    -- Half to even (banker's rounding), as the reasons written before this migration were;
    -- round() would take halves away from zero.
    SELECT round(CASE WHEN f > 0.5 THEN t + 1 WHEN f < 0.5 THEN t ELSE t + t % 2 END / 100, 2)
      FROM (SELECT trunc(p_amount * 100) AS t, abs(p_amount * 100 - trunc(p_amount * 100)) AS f) x
$$;
COMMENT ON FUNCTION bitloot_round_cents(numeric) IS
    'An amount rounded to cents, halves to even (for non-negative amounts, as money here is).';

-- ---------------------------------------------------------------------------------------
-- The decision: which order status a payment report leads to
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_ipn_decision(
    p_payment_id text, p_payment_status text, p_price_currency text, p_price_amount numeric,
    p_actually_paid numeric, p_pay_amount numeric, p_currency text, p_total numeric,
    p_paid_on text, p_tolerance numeric,
    OUT target text, OUT reason text, OUT needs_attention boolean)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    paid numeric := bitloot_paid_in_fiat(p_price_amount, p_actually_paid, p_pay_amount);
    shortfall text := 'paid ' || coalesce(bitloot_round_cents(paid)::text, 'unknown')
                      || ' of ' || p_total::text || ' ' || p_currency;
    missing text;
BEGIN
    needs_attention := false;
    IF p_payment_status IN ('failed', 'expired', 'refunded') THEN
        target := p_payment_status;
        reason := 'payment ' || p_payment_id || ' ' || p_payment_status;
        needs_attention := p_payment_status = 'refunded';
    ELSIF p_payment_status = 'partially_paid' THEN
        target := 'underpaid'; reason := shortfall; needs_attention := true;
    ELSIF p_payment_status = 'finished'
          OR (p_paid_on = 'confirmed' AND p_payment_status IN ('confirmed', 'sending')) THEN
        -- A final status alone proves nothing (a re-deposit or a wrong-asset deposit may be
        -- finished too, docs/external-apis.md 2.7): the amounts must prove the total.
        needs_attention := true;
        missing := array_to_string(ARRAY[
            CASE WHEN p_price_currency IS NULL THEN 'no price_currency' END,
            CASE WHEN p_price_amount IS NULL THEN 'no price_amount' END,
            CASE WHEN p_actually_paid IS NULL THEN 'no actually_paid' END,
            CASE WHEN p_pay_amount IS NULL THEN 'no pay_amount' END,
            CASE WHEN p_pay_amount <= 0 THEN 'pay_amount 0' END], ', ');
        IF p_price_currency IS NOT NULL AND p_price_currency <> p_currency THEN
            target := 'failed';
            reason := 'paid in ' || p_price_currency || ', order is in ' || p_currency;
        ELSIF missing <> '' THEN
            target := 'underpaid';
            reason := 'payment ' || p_payment_id || ' ' || p_payment_status
                      || ' proves no amount (' || missing || ')';
        -- Multiplied out, so exact (no rounded division), as bitloot_payment_evidence is.
        ELSIF p_price_amount * least(p_pay_amount, p_actually_paid)
              + p_tolerance * p_pay_amount < p_total * p_pay_amount THEN
            target := 'underpaid'; reason := shortfall;
        ELSE
            target := 'paid';
            reason := 'payment ' || p_payment_id || ' ' || p_payment_status;
            needs_attention := false;
        END IF;
    ELSIF p_payment_status IN ('confirming', 'confirmed', 'sending') THEN
        target := 'confirming';
    END IF;  -- waiting: nothing to do yet (target NULL)
END;
$$;
COMMENT ON FUNCTION bitloot_ipn_decision(text, text, text, numeric, numeric, numeric, text,
                                         numeric, text, numeric) IS
    'The order status a payment report leads to (NULL: none yet), the cause order_events '
    'keeps, and whether a human must look: failed/expired/refunded as reported (refunded '
    'flagged); partially_paid underpaid; a final status (finished, or confirmed/sending '
    'under paid_on = confirmed) paid only when in the order''s currency (else failed) with '
    'price_amount, actually_paid and pay_amount > 0 (else underpaid) covering the total '
    'within the tolerance (else underpaid); confirming/confirmed/sending confirming.';

CREATE FUNCTION bitloot_ipn_notice_details(
    p_kind text, p_total numeric, p_price_amount numeric, p_actually_paid numeric,
    p_pay_amount numeric, p_pay_currency text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    -- Amounts in the order's currency, cents rounded down; the received and missing amounts
    -- add up to the total. What was sent in crypto, as reported.
    SELECT CASE p_kind
             WHEN 'payment_received' THEN jsonb_build_object('amount', trunc(p_total, 2)::text)
             ELSE coalesce((SELECT jsonb_build_object(
                                'received', trunc(r, 2)::text,
                                'missing', CASE WHEN p_total - trunc(r, 2) > 0
                                                THEN (p_total - trunc(r, 2))::text ELSE '0' END)
                              FROM bitloot_paid_in_fiat(p_price_amount, p_actually_paid,
                                                        p_pay_amount) r
                             WHERE r IS NOT NULL), '{}')
           END
           || CASE WHEN p_actually_paid IS NULL OR coalesce(p_pay_currency, '') = '' THEN '{}'
                   ELSE jsonb_build_object('paid', trim_scale(p_actually_paid)::text || ' '
                                                   || upper(p_pay_currency)) END
$$;
COMMENT ON FUNCTION bitloot_ipn_notice_details(text, numeric, numeric, numeric, numeric, text) IS
    'The details fixed into a payment notice (email_outbox.details): payment_received '
    '{amount, paid}, underpaid {received, missing, paid}; never a key, token or link.';

-- ---------------------------------------------------------------------------------------
-- The report, applied
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_apply_ipn(
    p_dedup_key text, p_raw_body text, p_signature_variant text,
    p_payment_id text, p_payment_status text, p_order_id uuid,
    p_invoice_id text, p_parent_payment_id text,
    p_price_amount numeric, p_price_currency text, p_pay_amount numeric, p_pay_currency text,
    p_actually_paid numeric, p_actually_paid_at_fiat numeric,
    p_outcome_amount numeric, p_outcome_currency text, p_provider_updated_at timestamptz,
    p_actor text DEFAULT NULL, p_actor_reason text DEFAULT NULL,
    OUT outcome text, OUT needs_attention boolean, OUT duplicate boolean,
    OUT enqueued boolean, OUT order_id uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_event_id bigint;
    o record;
    known uuid;
    moved text;
    pol record;
    d record;
    is_final boolean;
    v_kind text;
    v_outbox_id bigint;
BEGIN
    duplicate := false;
    enqueued := false;
    needs_attention := false;
    IF p_actor IS NOT NULL THEN
        PERFORM set_config('bitloot.actor', p_actor, true),
                set_config('bitloot.reason', coalesce(p_actor_reason, ''), true);
    END IF;

    -- Stored once: the insert is the deduplication.
    INSERT INTO webhook_events AS e (provider, dedup_key, event_type, external_id, order_id,
                                     raw_body, signature_variant)
    VALUES ('nowpayments', p_dedup_key, p_payment_status, p_payment_id, p_order_id,
            p_raw_body, p_signature_variant)
    ON CONFLICT (provider, dedup_key) DO NOTHING
    RETURNING e.id INTO v_event_id;
    IF v_event_id IS NULL THEN
        outcome := 'duplicate';
        duplicate := true;
        bitloot_apply_ipn.order_id := p_order_id;
        RETURN;
    END IF;

    <<apply>>
    BEGIN
        -- Reports for one order apply one at a time.
        SELECT ord.currency, ord.total_amount, ord.status INTO o
          FROM orders ord WHERE ord.id = p_order_id FOR UPDATE;
        IF NOT FOUND THEN
            outcome := 'unknown_order';
            needs_attention := true;
            EXIT apply;
        END IF;

        SELECT pay.order_id INTO known FROM payments pay WHERE pay.payment_id = p_payment_id;
        IF known IS NOT NULL AND known <> p_order_id THEN
            outcome := 'payment_belongs_to_another_order';
            needs_attention := true;
            EXIT apply;
        END IF;
        bitloot_apply_ipn.order_id := p_order_id;

        -- Forward only; once final (rank 5) the amounts stay as they were (payments_guard).
        INSERT INTO payments AS p (payment_id, order_id, invoice_id, parent_payment_id, status,
                                   price_amount, price_currency, pay_amount, pay_currency,
                                   actually_paid, actually_paid_at_fiat, outcome_amount,
                                   outcome_currency, provider_updated_at)
        VALUES (p_payment_id, p_order_id, p_invoice_id, p_parent_payment_id, p_payment_status,
                p_price_amount, p_price_currency, p_pay_amount, p_pay_currency,
                p_actually_paid, p_actually_paid_at_fiat, p_outcome_amount, p_outcome_currency,
                p_provider_updated_at)
        ON CONFLICT (payment_id) DO UPDATE
           SET status = EXCLUDED.status,
               invoice_id = coalesce(EXCLUDED.invoice_id, p.invoice_id),
               parent_payment_id = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                        THEN p.parent_payment_id
                                        ELSE coalesce(EXCLUDED.parent_payment_id,
                                                      p.parent_payment_id) END,
               price_amount = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                   THEN p.price_amount
                                   ELSE coalesce(EXCLUDED.price_amount, p.price_amount) END,
               price_currency = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                     THEN p.price_currency
                                     ELSE coalesce(EXCLUDED.price_currency, p.price_currency) END,
               pay_amount = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                 THEN p.pay_amount
                                 ELSE coalesce(EXCLUDED.pay_amount, p.pay_amount) END,
               pay_currency = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                   THEN p.pay_currency
                                   ELSE coalesce(EXCLUDED.pay_currency, p.pay_currency) END,
               actually_paid = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                    THEN p.actually_paid
                                    ELSE coalesce(EXCLUDED.actually_paid, p.actually_paid) END,
               actually_paid_at_fiat = coalesce(EXCLUDED.actually_paid_at_fiat,
                                                p.actually_paid_at_fiat),
               outcome_amount = coalesce(EXCLUDED.outcome_amount, p.outcome_amount),
               outcome_currency = coalesce(EXCLUDED.outcome_currency, p.outcome_currency),
               provider_updated_at = coalesce(EXCLUDED.provider_updated_at,
                                              p.provider_updated_at),
               last_ipn_at = now()
         WHERE p.order_id = EXCLUDED.order_id
           AND bitloot_payment_status_rank(EXCLUDED.status) > bitloot_payment_status_rank(p.status)
        RETURNING p.payment_id INTO moved;
        IF moved IS NULL THEN
            outcome := 'stale';
            EXIT apply;
        END IF;

        IF p_parent_payment_id IS NOT NULL THEN
            -- A re-deposit: a top-up of (or a change to) an earlier payment, never a payment
            -- of the order on its own. Orders are paid by one payment; a human settles the rest.
            outcome := 'redeposit_' || p_payment_status;
            needs_attention := true;
            EXIT apply;
        END IF;

        SELECT paid_on, tolerance INTO pol FROM payment_policy;
        d := bitloot_ipn_decision(p_payment_id, p_payment_status, p_price_currency,
                                  p_price_amount, p_actually_paid, p_pay_amount, o.currency,
                                  o.total_amount, pol.paid_on, pol.tolerance);
        IF d.target IS NULL THEN
            outcome := 'payment_waiting';
            EXIT apply;
        END IF;
        is_final := p_payment_status = 'finished'
                    OR (pol.paid_on = 'confirmed' AND p_payment_status IN ('confirmed', 'sending'));
        IF o.status = 'underpaid' AND d.target IN ('paid', 'underpaid') AND is_final THEN
            -- Underpaid never becomes paid by itself, and a human must see either way: the
            -- customer topped up in full and waits, or the payment ended short for good.
            outcome := CASE d.target WHEN 'paid' THEN 'underpaid_now_covered'
                                     ELSE 'still_underpaid' END;
            needs_attention := true;
            EXIT apply;
        END IF;
        IF o.status NOT IN ('created', 'waiting', 'confirming')
           AND NOT (d.target = 'refunded' AND o.status IN ('paid', 'fulfilled', 'underpaid')) THEN
            -- e.g. a second payment failing after the order was already paid.
            outcome := 'order_already_' || o.status;
            needs_attention := d.needs_attention;
            EXIT apply;
        END IF;
        IF d.target = 'confirming' AND o.status = 'confirming' THEN
            outcome := 'payment_in_progress';
            EXIT apply;
        END IF;

        IF d.reason IS NOT NULL THEN
            -- order_events keeps the cause (the shortfall, the currency mismatch), not only
            -- which report arrived.
            PERFORM set_config('bitloot.reason', d.reason, true);
        END IF;
        IF o.status = 'created' AND d.target <> 'waiting' THEN
            -- Its invoice answer was lost: waiting is the only way out of created.
            UPDATE orders SET status = 'waiting', status_reason = NULL
             WHERE id = p_order_id AND status = 'created';
        END IF;
        UPDATE orders SET status = d.target, status_reason = d.reason
         WHERE id = p_order_id
           AND status IN ('created', 'waiting', 'confirming', 'paid', 'fulfilled', 'underpaid');
        IF NOT FOUND THEN
            -- Not expected under the row lock.
            outcome := 'order_already_' || o.status;
            needs_attention := true;
            EXIT apply;
        END IF;

        IF d.target = 'paid' THEN
            -- fulfill_order as defer_fulfillment() queues it: one job at a time per order.
            INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,
                                            args, scheduled_at)
            VALUES ('fulfillment', 'fulfill_order', 0, 'order:' || p_order_id, NULL,
                    jsonb_build_object('order_id', p_order_id::text), NULL);
            enqueued := true;
        END IF;
        IF d.target IN ('paid', 'underpaid') THEN
            -- The customer's notice, once per order and kind, as delivery.queue_notice()
            -- writes it, with its send_delivery_email job.
            v_kind := CASE d.target WHEN 'paid' THEN 'payment_received' ELSE 'underpaid' END;
            INSERT INTO email_outbox AS m (order_id, kind, generation, to_address, details)
            SELECT ord.id, v_kind, 1, ord.email,
                   bitloot_ipn_notice_details(v_kind, ord.total_amount, p_price_amount,
                                              p_actually_paid, p_pay_amount, p_pay_currency)
              FROM orders ord WHERE ord.id = p_order_id
            ON CONFLICT (order_id, kind, generation) DO NOTHING
            RETURNING m.id INTO v_outbox_id;
            IF v_outbox_id IS NOT NULL THEN
                INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock,
                                                queueing_lock, args, scheduled_at)
                VALUES ('email', 'send_delivery_email', 0, NULL, NULL,
                        jsonb_build_object('outbox_id', v_outbox_id), NULL);
            END IF;
        END IF;
        outcome := 'order_' || d.target;
        needs_attention := d.needs_attention;
    END apply;

    UPDATE webhook_events e
       SET processed_at = now(), outcome = bitloot_apply_ipn.outcome,
           needs_attention = bitloot_apply_ipn.needs_attention,
           order_id = coalesce(bitloot_apply_ipn.order_id, e.order_id)
     WHERE e.id = v_event_id;
END;
$$;
COMMENT ON FUNCTION bitloot_apply_ipn(text, text, text, text, text, uuid, text, text, numeric,
                                      text, numeric, text, numeric, numeric, numeric, text,
                                      timestamptz, text, text) IS
    'Applies one verified NOWPayments payment report in the caller''s transaction: stores '
    'it once (duplicate), locks the order, moves the payment forward, decides '
    '(bitloot_ipn_decision), moves the order, queues fulfill_order and the customer notice, '
    'records the outcome on webhook_events and returns it (outcome, needs_attention, '
    'duplicate, enqueued, the order matched). p_actor/p_actor_reason, when given, name who '
    'acts for order_events. The rules are commented in migration 0020.';

DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
