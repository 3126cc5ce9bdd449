CREATE TYPE public.procrastinate_job_event_type AS ENUM (
    'deferred',
    'started',
    'deferred_for_retry',
    'failed',
    'succeeded',
    'cancelled',
    'abort_requested',
    'aborted',
    'scheduled',
    'retried'
);

CREATE TYPE public.procrastinate_job_status AS ENUM (
    'todo',
    'doing',
    'succeeded',
    'failed',
    'cancelled',
    'aborting',
    'aborted'
);

CREATE TYPE public.procrastinate_job_to_defer_v1 AS (
	queue_name character varying,
	task_name character varying,
	priority integer,
	lock text,
	queueing_lock text,
	args jsonb,
	scheduled_at timestamp with time zone
);

CREATE FUNCTION public.bitloot_actor() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(nullif(current_setting('bitloot.actor', true), ''), 'sql:' || session_user)
$$;

COMMENT ON FUNCTION public.bitloot_actor() IS 'Who is acting in this transaction: bitloot.actor if the application set it, else sql:<role>.';

CREATE FUNCTION public.bitloot_amount_paid(p_order_id uuid) RETURNS numeric
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN bitloot_payment_evidence(o.id) LIKE 'payment %' THEN o.total_amount
        ELSE least(o.total_amount, coalesce((
            SELECT floor(sum(p.price_amount * least(p.pay_amount, p.actually_paid)
                             / p.pay_amount) * 100) / 100
              FROM payments p
             WHERE p.order_id = o.id
               AND p.status IN ('confirming', 'confirmed', 'sending', 'partially_paid',
                                'finished')
               AND p.price_currency = o.currency
               AND p.price_amount IS NOT NULL
               AND p.actually_paid IS NOT NULL
               AND p.pay_amount > 0), 0))
    END
      FROM orders o
     WHERE o.id = p_order_id
$$;

COMMENT ON FUNCTION public.bitloot_amount_paid(p_order_id uuid) IS 'What the customer paid for the order, in its currency: the total when a payment covers it (bitloot_payment_evidence says payment, tolerance included); else the sum over the order''s payments that money reached (confirming, confirmed, sending, partially_paid, finished; re-deposits included) in the order currency of price_amount * least(1, actually_paid / pay_amount), rounded down to cents and capped at the total; 0 when nothing is known to have arrived. An admin''s acceptance is no money: an accepted order counts what arrived. NULL for an unknown order. The refund''s default amount and refunds_due.amount_due.';

CREATE FUNCTION public.bitloot_apply_ipn(p_dedup_key text, p_raw_body text, p_signature_variant text, p_payment_id text, p_payment_status text, p_order_id uuid, p_invoice_id text, p_parent_payment_id text, p_price_amount numeric, p_price_currency text, p_pay_amount numeric, p_pay_currency text, p_actually_paid numeric, p_actually_paid_at_fiat numeric, p_outcome_amount numeric, p_outcome_currency text, p_provider_updated_at timestamp with time zone, p_actor text DEFAULT NULL::text, p_actor_reason text DEFAULT NULL::text, OUT outcome text, OUT needs_attention boolean, OUT duplicate boolean, OUT enqueued boolean, OUT order_id uuid) RETURNS record
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_apply_ipn(p_dedup_key text, p_raw_body text, p_signature_variant text, p_payment_id text, p_payment_status text, p_order_id uuid, p_invoice_id text, p_parent_payment_id text, p_price_amount numeric, p_price_currency text, p_pay_amount numeric, p_pay_currency text, p_actually_paid numeric, p_actually_paid_at_fiat numeric, p_outcome_amount numeric, p_outcome_currency text, p_provider_updated_at timestamp with time zone, p_actor text, p_actor_reason text, OUT outcome text, OUT needs_attention boolean, OUT duplicate boolean, OUT enqueued boolean, OUT order_id uuid) IS 'Applies one verified NOWPayments payment report in the caller''s transaction: stores it once (duplicate), locks the order, moves the payment forward, decides (bitloot_ipn_decision), moves the order, queues fulfill_order and the customer notice, records the outcome on webhook_events and returns it (outcome, needs_attention, duplicate, enqueued, the order matched). p_actor/p_actor_reason, when given, name who acts for order_events. The rules are commented in migration 0020.';

CREATE FUNCTION public.bitloot_correct_order_email(p_order_id uuid, p_new_email text, p_admin_id text, p_reason text) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_correct_order_email(p_order_id uuid, p_new_email text, p_admin_id text, p_reason text) IS 'The one correction of an order: its email, by an admin with a reason. Writes an admin_audit_log row (action correct_order_email, details old_email, new_email, xid) and then the email; the orders trigger accepts an email change only with that row.';

CREATE FUNCTION public.bitloot_country_codes_valid(codes text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((array_to_string(codes, ','::text) ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'::text) AND (array_position(codes, NULL::text) IS NULL));

COMMENT ON FUNCTION public.bitloot_country_codes_valid(codes text[]) IS 'True when every element is a two-letter upper-case country code (ISO 3166-1 alpha-2).';

CREATE FUNCTION public.bitloot_defer_webhook_job(p_endpoint_id uuid, p_order_id uuid) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args)
    VALUES ('webhooks', 'deliver_webhooks',
            'webhook:' || p_endpoint_id || ':' || p_order_id,
            'webhook:' || p_endpoint_id || ':' || p_order_id,
            jsonb_build_object('endpoint_id', p_endpoint_id::text,
                               'order_id', p_order_id::text))
    ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
$$;

COMMENT ON FUNCTION public.bitloot_defer_webhook_job(p_endpoint_id uuid, p_order_id uuid) IS 'Queues deliver_webhooks for one endpoint and order (procrastinate job, queue webhooks) unless one is already waiting; in the caller''s transaction.';

CREATE FUNCTION public.bitloot_email_outbox_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF (NEW.id, NEW.order_id, NEW.kind, NEW.generation, NEW.to_address, NEW.created_at,
        NEW.recovery_request_id, NEW.details)
       IS DISTINCT FROM
       (OLD.id, OLD.order_id, OLD.kind, OLD.generation, OLD.to_address, OLD.created_at,
        OLD.recovery_request_id, OLD.details) THEN
        RAISE EXCEPTION 'email % of order %: its order, kind, generation, address and '
            'details never change', OLD.id, OLD.order_id USING ERRCODE = 'BL005';
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

COMMENT ON FUNCTION public.bitloot_email_outbox_guard() IS 'email_outbox: order_id, kind, generation, to_address, recovery_request_id, details and created_at never change; a sent email stays sent (status, message_id, sent_at); attempts only grow (BL005).';

CREATE FUNCTION public.bitloot_grant_roles() RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    schema_name text := current_schema();
    -- The application only reads these (the transition tables, the outcome list).
    app_read_only text[] := ARRAY[
        'order_status_transitions', 'fulfillment_status_transitions', 'webhook_outcomes'];
    -- Append-only logs: INSERT (the order_events trigger runs as the application), never
    -- UPDATE or DELETE; their triggers refuse those too (BL002).
    -- ...found by their guard rather than listed: every table of ours whose
    -- bitloot_reject_change trigger fires on UPDATE (tgtype bit 16). A later migration
    -- that adds such a log only calls this function again.
    app_append_only text[] := ARRAY(
        SELECT DISTINCT c.relname::text
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema()
           AND t.tgfoid = 'bitloot_reject_change'::regproc
           AND (t.tgtype & 16) <> 0);
    -- The only tables of ours the application deletes from (expired GCRA buckets).
    app_may_delete text[] := ARRAY['rate_limit_buckets'];
    -- Tables the auditor may not read at all.
    auditor_hidden_tables text[] := ARRAY['vault_canaries', 'rate_limit_buckets'];
    -- Columns the auditor may not read: key material, and what may carry it (a Kinguin
    -- webhook body can hold serials) or open an order (a token's hash is its lookup key).
    auditor_hidden_columns text[] := ARRAY[
        'key_delivery_logs.wrapped_data_key', 'webhook_events.raw_body',
        'order_access_tokens.token_hash'];
    -- And, so a column added later is hidden before anyone thinks of it, every column
    -- whose name says it is a secret.
    secret_name text := '(secret|password|private_key|wrapped|hash|raw_body)';
    rel record;
    fn regprocedure;
    readable text;
BEGIN
    IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('bitloot_app', 'bitloot_auditor')) < 2
    THEN
        RAISE NOTICE 'roles bitloot_app and bitloot_auditor do not both exist: no grants applied';
        RETURN false;
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO bitloot_app, bitloot_auditor', schema_name);
    -- PostgreSQL before 15 lets everyone create objects in the public schema; the
    -- application must not (no DDL), so take that away when the application has it.
    IF has_schema_privilege('bitloot_app', schema_name, 'CREATE') THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', schema_name);
        IF has_schema_privilege('bitloot_app', schema_name, 'CREATE') THEN
            RAISE WARNING 'bitloot_app may create objects in schema %: revoke that by hand',
                schema_name;
        END IF;
    END IF;

    FOR rel IN
        SELECT c.oid, c.relname, c.relkind
          FROM pg_class c
         WHERE c.relnamespace = schema_name::regnamespace
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.deptype = 'e')
         ORDER BY c.relname
    LOOP
        IF rel.relkind = 'S' THEN
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM bitloot_app, bitloot_auditor',
                           rel.oid::regclass);
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO bitloot_app', rel.oid::regclass);
            CONTINUE;
        END IF;
        -- From scratch: this also revokes the column grants of the table.
        EXECUTE format('REVOKE ALL ON %s FROM bitloot_app, bitloot_auditor', rel.oid::regclass);

        IF rel.relname LIKE '\_yoyo%' OR rel.relname = 'yoyo_lock' THEN
            -- The migration log: serve and worker check it at start and in /readyz.
            IF rel.relname = '_yoyo_migration' THEN
                EXECUTE format('GRANT SELECT ON %s TO bitloot_app', rel.oid::regclass);
            END IF;
            CONTINUE;
        END IF;

        IF rel.relkind IN ('v', 'm') THEN
            EXECUTE format('GRANT SELECT ON %s TO bitloot_app, bitloot_auditor',
                           rel.oid::regclass);
            CONTINUE;
        END IF;

        IF rel.relname = ANY (app_read_only) THEN
            EXECUTE format('GRANT SELECT ON %s TO bitloot_app', rel.oid::regclass);
        ELSIF rel.relname = ANY (app_append_only) THEN
            EXECUTE format('GRANT SELECT, INSERT ON %s TO bitloot_app', rel.oid::regclass);
        ELSIF rel.relname = ANY (app_may_delete) OR rel.relname LIKE 'procrastinate\_%' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO bitloot_app',
                           rel.oid::regclass);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %s TO bitloot_app',
                           rel.oid::regclass);
        END IF;

        CONTINUE WHEN rel.relname = ANY (auditor_hidden_tables);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO readable
          FROM pg_attribute a
         WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT (rel.relname || '.' || a.attname) = ANY (auditor_hidden_columns)
           AND a.attname !~ secret_name;
        IF readable IS NOT NULL THEN
            EXECUTE format('GRANT SELECT (%s) ON %s TO bitloot_auditor',
                           readable, rel.oid::regclass);
        END IF;
    END LOOP;

    -- Functions: the application calls procrastinate's and ours (PUBLIC may too, as
    -- PostgreSQL grants by default; every one of them runs with the caller's rights).
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = schema_name::regnamespace AND p.prokind IN ('f', 'w')
           AND p.proname <> 'bitloot_grant_roles'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                              AND d.deptype = 'e')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO bitloot_app', fn);
    END LOOP;
    RETURN true;
END;
$$;

COMMENT ON FUNCTION public.bitloot_grant_roles() IS 'Re-applies every grant of bitloot_app and bitloot_auditor to the objects that exist (README, "Database roles"); false, with nothing granted, while either role is missing. Run by the migrations and by every `bitloot migrate`, as the owner of the schema.';

CREATE FUNCTION public.bitloot_ipn_decision(p_payment_id text, p_payment_status text, p_price_currency text, p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric, p_currency text, p_total numeric, p_paid_on text, p_tolerance numeric, OUT target text, OUT reason text, OUT needs_attention boolean) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    AS $$
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

COMMENT ON FUNCTION public.bitloot_ipn_decision(p_payment_id text, p_payment_status text, p_price_currency text, p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric, p_currency text, p_total numeric, p_paid_on text, p_tolerance numeric, OUT target text, OUT reason text, OUT needs_attention boolean) IS 'The order status a payment report leads to (NULL: none yet), the cause order_events keeps, and whether a human must look: failed/expired/refunded as reported (refunded flagged); partially_paid underpaid; a final status (finished, or confirmed/sending under paid_on = confirmed) paid only when in the order''s currency (else failed) with price_amount, actually_paid and pay_amount > 0 (else underpaid) covering the total within the tolerance (else underpaid); confirming/confirmed/sending confirming.';

CREATE FUNCTION public.bitloot_ipn_notice_details(p_kind text, p_total numeric, p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric, p_pay_currency text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
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

COMMENT ON FUNCTION public.bitloot_ipn_notice_details(p_kind text, p_total numeric, p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric, p_pay_currency text) IS 'The details fixed into a payment notice (email_outbox.details): payment_received {amount, paid}, underpaid {received, missing, paid}; never a key, token or link.';

CREATE FUNCTION public.bitloot_key_delivery_logs_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF (NEW.id, NEW.order_id, NEW.key_id, NEW.product_id, NEW.object_key, NEW.content_type,
        NEW.created_at, NEW.replaces_key_id)
       IS DISTINCT FROM
       (OLD.id, OLD.order_id, OLD.key_id, OLD.product_id, OLD.object_key, OLD.content_type,
        OLD.created_at, OLD.replaces_key_id) THEN
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
    IF OLD.revoked_at IS NOT NULL
       AND (NEW.revoked_at, NEW.revoked_reason) IS DISTINCT FROM
           (OLD.revoked_at, OLD.revoked_reason) THEN
        RAISE EXCEPTION 'key % of order % was revoked (%): that never changes', OLD.key_id,
            OLD.order_id, OLD.revoked_reason USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.bitloot_key_delivery_logs_guard() IS 'key_delivery_logs: id, order_id, key_id, product_id, object_key, content_type, replaces_key_id and created_at never change; wrapped_data_key only together with master_key_id (a re-wrap, bitloot/vault/rotate.py); status only forward: stored, accessed, expired, deleted; a revocation is final (BL005).';

CREATE FUNCTION public.bitloot_key_replacements_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF (NEW.id, NEW.order_id, NEW.key_id, NEW.number, NEW.admin_id, NEW.reason,
        NEW.product_id, NEW.external_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.order_id, OLD.key_id, OLD.number, OLD.admin_id, OLD.reason,
        OLD.product_id, OLD.external_id, OLD.created_at) THEN
        RAISE EXCEPTION 'key replacement %: which key, who, why and its orderExternalId never '
            'change', OLD.id USING ERRCODE = 'BL005';
    END IF;
    IF (OLD.placement_started_at IS NOT NULL
        AND NEW.placement_started_at IS DISTINCT FROM OLD.placement_started_at)
       OR (OLD.kinguin_order_id IS NOT NULL
           AND NEW.kinguin_order_id IS DISTINCT FROM OLD.kinguin_order_id)
       OR (OLD.new_key_id IS NOT NULL AND NEW.new_key_id IS DISTINCT FROM OLD.new_key_id) THEN
        RAISE EXCEPTION 'key replacement %: the placement marker, the Kinguin order and the '
            'new key are set once', OLD.id USING ERRCODE = 'BL005';
    END IF;
    IF OLD.status IN ('delivered', 'failed') AND NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'key replacement % is % : that never changes', OLD.id, OLD.status
            USING ERRCODE = 'BL005';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'requested' AND NEW.status IN ('placed', 'failed'))
        OR (OLD.status = 'placed' AND NEW.status IN ('delivered', 'failed'))) THEN
        RAISE EXCEPTION 'key replacement %: % -> % is not allowed (requested, placed, then '
            'delivered or failed)', OLD.id, OLD.status, NEW.status USING ERRCODE = 'BL005';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.bitloot_key_replacements_guard() IS 'key_replacements: order, key, number, admin, reason, product, external_id and created_at never change; placement_started_at, kinguin_order_id and new_key_id are set once; status only forward (requested -> placed -> delivered, requested|placed -> failed), delivered and failed are final (BL005).';

CREATE FUNCTION public.bitloot_key_replacements_webhook_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_key_replacements_webhook_events() IS 'A delivered key replacement queues order.key_replaced (with the replaced keyId).';

CREATE FUNCTION public.bitloot_kinguin_orders_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_kinguin_orders_guard() IS 'kinguin_orders: order_id, kinguin_order_id and created_at never change, payment_price once known never changes; a canceled order may only become refunded, a refunded one nothing else (BL005). polls is a counter that a retry resets.';

CREATE TABLE public.order_items (
    order_id uuid NOT NULL,
    product_id text NOT NULL,
    qty integer NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    max_cost numeric(12,2) NOT NULL,
    name text NOT NULL,
    platform text,
    regional_limitations text,
    excluded_countries text[] DEFAULT '{}'::text[] NOT NULL,
    image_url text,
    is_preorder boolean DEFAULT false NOT NULL,
    release_date date,
    CONSTRAINT order_items_excluded_countries_check CHECK (public.bitloot_country_codes_valid(excluded_countries)),
    CONSTRAINT order_items_image_url_check CHECK (((image_url ~ '^https://[^\s"<>]+$'::text) AND (length(image_url) <= 2000))),
    CONSTRAINT order_items_max_cost_check CHECK ((max_cost > (0)::numeric)),
    CONSTRAINT order_items_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT order_items_platform_check CHECK (((length(platform) >= 1) AND (length(platform) <= 100))),
    CONSTRAINT order_items_qty_check CHECK (((qty >= 1) AND (qty <= 9))),
    CONSTRAINT order_items_regional_limitations_check CHECK (((length(regional_limitations) >= 1) AND (length(regional_limitations) <= 200))),
    CONSTRAINT order_items_unit_price_check CHECK ((unit_price > (0)::numeric))
);

COMMENT ON TABLE public.order_items IS 'The products of an order with the price charged and the most we pay Kinguin, both copied from products when the order was made.';

COMMENT ON COLUMN public.order_items.order_id IS 'The order.';

COMMENT ON COLUMN public.order_items.product_id IS 'The product (products.product_id, the Kinguin productId).';

COMMENT ON COLUMN public.order_items.qty IS 'How many keys of it (1 to 9).';

COMMENT ON COLUMN public.order_items.unit_price IS 'The price charged per unit, in orders.currency, copied from products.';

COMMENT ON COLUMN public.order_items.max_cost IS 'The most (EUR) we pay Kinguin per unit, copied from products.';

COMMENT ON COLUMN public.order_items.name IS 'The product name shown to the customer when the order was made (copied from products).';

COMMENT ON COLUMN public.order_items.platform IS 'products.platform when the order was made: the activation steps shown to the customer.';

COMMENT ON COLUMN public.order_items.regional_limitations IS 'products.regional_limitations when the order was made: where the customer was told the key works.';

COMMENT ON COLUMN public.order_items.excluded_countries IS 'products.excluded_countries when the order was made: where the customer was told the key will not activate.';

COMMENT ON COLUMN public.order_items.image_url IS 'products.image_url when the order was made.';

COMMENT ON COLUMN public.order_items.is_preorder IS 'products.is_preorder when the order was made: the customer was told the key comes on release.';

COMMENT ON COLUMN public.order_items.release_date IS 'products.release_date when the order was made.';

CREATE FUNCTION public.bitloot_order_items_json(p_order_id uuid) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE((SELECT json_agg(json_build_object('productId', i.product_id, 'name', i.name, 'qty', i.qty, 'unitPrice', (i.unit_price)::text, 'platform', i.platform, 'regionalLimitations', i.regional_limitations, 'excludedCountries', i.excluded_countries, 'imageUrl', i.image_url, 'isPreorder', i.is_preorder, 'releaseDate', i.release_date) ORDER BY i.product_id) AS json_agg FROM public.order_items i WHERE (i.order_id = bitloot_order_items_json.p_order_id)), '[]'::json);

COMMENT ON FUNCTION public.bitloot_order_items_json(p_order_id uuid) IS 'The order''s lines as the orders API returns them (OrderItemOut: the snapshot copied at POST /orders, with the price charged), ordered by product id; [] when none.';

CREATE FUNCTION public.bitloot_order_visible(order_id uuid, order_user_id text, is_admin boolean, user_id text, token_order_id uuid) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT coalesce(is_admin, false)
        OR coalesce(order_user_id = user_id, false)
        OR coalesce(order_id = token_order_id, false)
$$;

COMMENT ON FUNCTION public.bitloot_order_visible(order_id uuid, order_user_id text, is_admin boolean, user_id text, token_order_id uuid) IS 'The one ownership rule of customer queries: true for an admin, the order''s signed-in owner (user_id), or an order token for this very order (token_order_id).';

CREATE TABLE public.orders (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id text,
    email text NOT NULL,
    currency text NOT NULL,
    total_amount numeric(12,2) NOT NULL,
    status text DEFAULT 'created'::text NOT NULL,
    fulfillment_status text DEFAULT 'pending'::text NOT NULL,
    status_reason text,
    fulfillment_error text,
    invoice_id text,
    invoice_url text,
    invoice_error text,
    kinguin_placement_started_at timestamp with time zone,
    idempotency_key text,
    paid_at timestamp with time zone,
    fulfilled_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    locale text DEFAULT 'en'::text NOT NULL,
    CONSTRAINT fulfilled_order_has_keys CHECK (((status <> 'fulfilled'::text) OR (fulfillment_status = 'fulfilled'::text))),
    CONSTRAINT fulfillment_needs_payment CHECK (((fulfillment_status = 'pending'::text) OR (status = ANY (ARRAY['paid'::text, 'fulfilled'::text, 'refunded'::text])))),
    CONSTRAINT orders_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT orders_email_check CHECK ((email ~ '^[^@\s]+@[^@\s]+$'::text)),
    CONSTRAINT orders_fulfillment_status_check CHECK ((fulfillment_status = ANY (ARRAY['pending'::text, 'processing'::text, 'fulfilled'::text, 'failed'::text]))),
    CONSTRAINT orders_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 200))),
    CONSTRAINT orders_locale_check CHECK ((locale ~ '^[a-z]{2}$'::text)),
    CONSTRAINT orders_status_check CHECK ((status = ANY (ARRAY['created'::text, 'waiting'::text, 'confirming'::text, 'paid'::text, 'fulfilled'::text, 'underpaid'::text, 'failed'::text, 'expired'::text, 'refunded'::text]))),
    CONSTRAINT orders_total_amount_check CHECK ((total_amount > (0)::numeric))
);

COMMENT ON TABLE public.orders IS 'One customer order. status is the payment-side state machine, fulfillment_status the delivery side; both are enforced by trigger orders_status_guard and logged to order_events.';

COMMENT ON COLUMN public.orders.id IS 'The order id: in URLs, emails, and Kinguin''s orderExternalId.';

COMMENT ON COLUMN public.orders.user_id IS 'The JWT sub of a signed-in customer; NULL for guest checkout.';

COMMENT ON COLUMN public.orders.email IS 'Where the delivery email goes (as the customer typed it).';

COMMENT ON COLUMN public.orders.currency IS 'The currency of total_amount and of the invoice (lower case, e.g. eur).';

COMMENT ON COLUMN public.orders.total_amount IS 'What the customer owes: the sum of qty * unit_price of its items.';

COMMENT ON COLUMN public.orders.status IS 'Payment side: created, waiting, confirming, paid, fulfilled, underpaid, failed, expired, refunded; legal moves in order_status_transitions.';

COMMENT ON COLUMN public.orders.fulfillment_status IS 'Delivery side: pending, processing, fulfilled, failed; legal moves in fulfillment_status_transitions.';

COMMENT ON COLUMN public.orders.status_reason IS 'Why the order is in its current status (e.g. underpaid by 0.50).';

COMMENT ON COLUMN public.orders.fulfillment_error IS 'The last fulfillment failure, shown to admins.';

COMMENT ON COLUMN public.orders.invoice_id IS 'The NOWPayments invoice id; NULL until the invoice is created.';

COMMENT ON COLUMN public.orders.invoice_url IS 'The NOWPayments hosted payment page the customer pays on.';

COMMENT ON COLUMN public.orders.invoice_error IS 'Why creating the NOWPayments invoice failed (order stays created).';

COMMENT ON COLUMN public.orders.kinguin_placement_started_at IS 'Set (and committed) before the Kinguin order is placed: a retry that finds it set but no kinguin_orders row looks the order up by orderExternalId instead of buying again.';

COMMENT ON COLUMN public.orders.idempotency_key IS 'The Idempotency-Key of POST /orders for orders made before migration 0007; no longer written (order_idempotency_keys holds the keys now, per caller and for 24 hours).';

COMMENT ON COLUMN public.orders.paid_at IS 'When it became paid (set by the status trigger).';

COMMENT ON COLUMN public.orders.fulfilled_at IS 'When its keys were all stored (set by the status trigger).';

COMMENT ON COLUMN public.orders.created_at IS 'When it was created (POST /orders).';

COMMENT ON COLUMN public.orders.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN public.orders.locale IS 'The customer''s language (ISO 639-1: en, de, es), chosen at POST /orders from its `locale` field or Accept-Language: the language of every email and of the emailed key page link.';

CREATE FUNCTION public.bitloot_order_webhook_data(o public.orders) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT jsonb_build_object(
        'orderId', o.id,
        'status', o.status,
        'fulfillmentStatus', o.fulfillment_status,
        'total', trim_scale(o.total_amount)::text,
        'currency', o.currency,
        'email', o.email)
$$;

COMMENT ON FUNCTION public.bitloot_order_webhook_data(o public.orders) IS 'The data of an order event: the order as of the change (email removed at sending unless BITLOOT_WEBHOOK_INCLUDE_EMAIL).';

CREATE FUNCTION public.bitloot_orders_log_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_orders_log_events() IS 'Writes one order_events row per status change that was really committed to orders.';

CREATE FUNCTION public.bitloot_orders_money_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_orders_money_guard() IS 'An order becomes paid only with bitloot_payment_evidence() (else BL003); its total_amount, currency and user_id never change, its email only through bitloot_correct_order_email() (else BL004).';

CREATE FUNCTION public.bitloot_orders_status_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_orders_status_guard() IS 'Enforces both order state machines: an illegal move raises SQLSTATE BL001.';

CREATE FUNCTION public.bitloot_orders_webhook_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_orders_webhook_events() IS 'After a committed-to-be status change of an order: queues its webhook event (order.<status>; order.failed also when the fulfillment fails).';

CREATE FUNCTION public.bitloot_paid_in_fiat(p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE
    AS $$
    -- The price times the share of the crypto amount that arrived, never more than the
    -- price; NULL when the report does not say. actually_paid_at_fiat and outcome_amount
    -- are not evidence (docs/external-apis.md 2.5, 2.7).
    SELECT CASE WHEN p_price_amount IS NULL OR p_actually_paid IS NULL
                     OR p_pay_amount IS NULL OR p_pay_amount <= 0 THEN NULL
                ELSE p_price_amount * least(1, p_actually_paid / p_pay_amount) END
$$;

COMMENT ON FUNCTION public.bitloot_paid_in_fiat(p_price_amount numeric, p_actually_paid numeric, p_pay_amount numeric) IS 'How much of the price a payment really sent, in the price currency: price_amount * least(1, actually_paid / pay_amount); NULL when an amount is missing or pay_amount <= 0. Shown to people (reasons, notices); the decision to pay compares exactly instead (bitloot_ipn_decision, bitloot_payment_evidence).';

CREATE FUNCTION public.bitloot_payment_evidence(p_order_id uuid) RETURNS text
    LANGUAGE sql STABLE
    AS $$
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

COMMENT ON FUNCTION public.bitloot_payment_evidence(p_order_id uuid) IS 'What proves the order is paid: ''payment <id>'' (the first final payment of its own, not a re-deposit, in its currency, with price_amount, actually_paid and a positive pay_amount, whose price_amount * least(1, actually_paid / pay_amount) + tolerance covers total_amount; final is finished, or also confirmed/sending under paid_on = confirmed, per payment_policy), else ''acceptance <id>'' (payment_acceptances), else NULL. The orders trigger, the worker and the reconciler all ask it.';

CREATE FUNCTION public.bitloot_payment_status_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
    SELECT CASE status
        WHEN 'waiting' THEN 0 WHEN 'confirming' THEN 1 WHEN 'confirmed' THEN 2
        WHEN 'sending' THEN 3 WHEN 'partially_paid' THEN 4
        WHEN 'finished' THEN 5 WHEN 'failed' THEN 5 WHEN 'expired' THEN 5
        WHEN 'refunded' THEN 6 END
$$;

COMMENT ON FUNCTION public.bitloot_payment_status_rank(status text) IS 'Progress order of NOWPayments statuses: a payment only moves to a higher rank, so a late or replayed IPN never moves it back.';

CREATE FUNCTION public.bitloot_payments_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_payments_guard() IS 'payments: the status only rises in bitloot_payment_status_rank; payment_id and order_id never change; once final (finished, failed, expired, refunded) price_amount, price_currency, pay_amount, pay_currency, actually_paid and parent_payment_id are fixed (BL005).';

CREATE FUNCTION public.bitloot_queue_webhook_event(p_order_id uuid, p_type text, p_data jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_queue_webhook_event(p_order_id uuid, p_type text, p_data jsonb) IS 'Writes one webhook_messages row (when any enabled endpoint wants p_type), one webhook_deliveries row per such endpoint, and queues their delivery jobs.';

CREATE FUNCTION public.bitloot_reject_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'BL002';
END;
$$;

COMMENT ON FUNCTION public.bitloot_reject_change() IS 'Trigger body for append-only tables: rejects UPDATE, DELETE and TRUNCATE (SQLSTATE BL002).';

CREATE FUNCTION public.bitloot_round_cents(p_amount numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
    -- Half to even (banker's rounding), as the reasons written before this migration were;
    -- round() would take halves away from zero.
    SELECT round(CASE WHEN f > 0.5 THEN t + 1 WHEN f < 0.5 THEN t ELSE t + t % 2 END / 100, 2)
      FROM (SELECT trunc(p_amount * 100) AS t, abs(p_amount * 100 - trunc(p_amount * 100)) AS f) x
$$;

COMMENT ON FUNCTION public.bitloot_round_cents(p_amount numeric) IS 'An amount rounded to cents, halves to even (for non-negative amounts, as money here is).';

CREATE FUNCTION public.bitloot_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.bitloot_touch_updated_at() IS 'Keeps updated_at current on every UPDATE.';

CREATE FUNCTION public.bitloot_webhook_events_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.bitloot_webhook_events_guard() IS 'webhook_events: provider, dedup_key, event_type, external_id, raw_body, signature_variant and received_at never change; order_id may be set once (BL005). processed_at, outcome and needs_attention record what applying it did.';

CREATE FUNCTION public.procrastinate_cancel_job_v1(job_id bigint, abort boolean, delete_job boolean) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
BEGIN
    IF delete_job THEN
        DELETE FROM procrastinate_jobs
        WHERE id = job_id AND status = 'todo'
        RETURNING id INTO _job_id;
    END IF;
    IF _job_id IS NULL THEN
        IF abort THEN
            UPDATE procrastinate_jobs
            SET abort_requested = true,
                status = CASE status
                    WHEN 'todo' THEN 'cancelled'::procrastinate_job_status ELSE status
                END
            WHERE id = job_id AND status IN ('todo', 'doing')
            RETURNING id INTO _job_id;
        ELSE
            UPDATE procrastinate_jobs
            SET status = 'cancelled'::procrastinate_job_status
            WHERE id = job_id AND status = 'todo'
            RETURNING id INTO _job_id;
        END IF;
    END IF;
    RETURN _job_id;
END;
$$;

CREATE FUNCTION public.procrastinate_defer_jobs_v1(jobs public.procrastinate_job_to_defer_v1[]) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    job_ids bigint[];
BEGIN
    WITH inserted_jobs AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
        SELECT (job).queue_name,
               (job).task_name,
               (job).priority,
               (job).lock,
               (job).queueing_lock,
               (job).args,
               (job).scheduled_at
        FROM unnest(jobs) AS job
        RETURNING id
    )
    SELECT array_agg(id) FROM inserted_jobs INTO job_ids;

    RETURN job_ids;
END;
$$;

CREATE FUNCTION public.procrastinate_defer_periodic_job_v2(_queue_name character varying, _lock character varying, _queueing_lock character varying, _task_name character varying, _priority integer, _periodic_id character varying, _defer_timestamp bigint, _args jsonb) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
	_job_id bigint;
	_defer_id bigint;
BEGIN
    INSERT
        INTO procrastinate_periodic_defers (task_name, periodic_id, defer_timestamp)
        VALUES (_task_name, _periodic_id, _defer_timestamp)
        ON CONFLICT DO NOTHING
        RETURNING id into _defer_id;

    IF _defer_id IS NULL THEN
        RETURN NULL;
    END IF;

    UPDATE procrastinate_periodic_defers
        SET job_id = (
            SELECT COALESCE((
                SELECT unnest(procrastinate_defer_jobs_v1(
                    ARRAY[
                        ROW(
                            _queue_name,
                            _task_name,
                            _priority,
                            _lock,
                            _queueing_lock,
                            _args,
                            NULL::timestamptz
                        )
                    ]::procrastinate_job_to_defer_v1[]
                ))
            ), NULL)
        )
        WHERE id = _defer_id
        RETURNING job_id INTO _job_id;

    DELETE
        FROM procrastinate_periodic_defers
        USING (
            SELECT id
            FROM procrastinate_periodic_defers
            WHERE procrastinate_periodic_defers.task_name = _task_name
            AND procrastinate_periodic_defers.periodic_id = _periodic_id
            AND procrastinate_periodic_defers.defer_timestamp < _defer_timestamp
            ORDER BY id
            FOR UPDATE
        ) to_delete
        WHERE procrastinate_periodic_defers.id = to_delete.id;

    RETURN _job_id;
END;
$$;

CREATE TABLE public.procrastinate_jobs (
    id bigint NOT NULL,
    queue_name character varying(128) NOT NULL,
    task_name character varying(128) NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    lock text,
    queueing_lock text,
    args jsonb DEFAULT '{}'::jsonb NOT NULL,
    status public.procrastinate_job_status DEFAULT 'todo'::public.procrastinate_job_status NOT NULL,
    scheduled_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    abort_requested boolean DEFAULT false NOT NULL,
    worker_id bigint,
    CONSTRAINT check_not_todo_abort_requested CHECK ((NOT ((status = 'todo'::public.procrastinate_job_status) AND (abort_requested = true))))
);

CREATE FUNCTION public.procrastinate_fetch_job_v2(target_queue_names character varying[], p_worker_id bigint) RETURNS public.procrastinate_jobs
    LANGUAGE plpgsql
    SET enable_sort TO 'off'
    AS $$
DECLARE
	found_jobs procrastinate_jobs;
BEGIN
    WITH candidate AS (
        SELECT jobs.*
            FROM procrastinate_jobs AS jobs
            WHERE
                -- reject the job if its lock has earlier or higher priority jobs
                NOT EXISTS (
                    SELECT 1
                        FROM procrastinate_jobs AS other_jobs
                        WHERE
                            jobs.lock IS NOT NULL
                            AND other_jobs.lock = jobs.lock
                            AND (
                                -- job with same lock is already running
                                other_jobs.status = 'doing'
                                OR
                                -- job with same lock is waiting and has higher priority (or same priority but was queued first)
                                (
                                    other_jobs.status = 'todo'
                                    AND (
                                        other_jobs.priority > jobs.priority
                                        OR (
                                        other_jobs.priority = jobs.priority
                                        AND other_jobs.id < jobs.id
                                        )
                                    )
                                )
                            )
                )
                AND jobs.status = 'todo'
                AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
            FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE procrastinate_jobs
        SET status = 'doing', worker_id = p_worker_id
        FROM candidate
        WHERE procrastinate_jobs.id = candidate.id
        RETURNING procrastinate_jobs.* INTO found_jobs;

 RETURN found_jobs;
END;
$$;

CREATE FUNCTION public.procrastinate_finish_job_v1(job_id bigint, end_status public.procrastinate_job_status, delete_job boolean) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
BEGIN
    IF end_status NOT IN ('succeeded', 'failed', 'aborted') THEN
        RAISE 'End status should be either "succeeded", "failed" or "aborted" (job id: %)', job_id;
    END IF;
    IF delete_job THEN
        DELETE FROM procrastinate_jobs
        WHERE id = job_id AND status IN ('todo', 'doing')
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = end_status,
            abort_requested = false,
            attempts = CASE status
                WHEN 'doing' THEN attempts + 1 ELSE attempts
            END
        WHERE id = job_id AND status IN ('todo', 'doing')
        RETURNING id INTO _job_id;
    END IF;
    IF _job_id IS NULL THEN
        RAISE 'Job was not found or not in "doing" or "todo" status (job id: %)', job_id;
    END IF;
END;
$$;

CREATE FUNCTION public.procrastinate_notify_queue_abort_job_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    payload TEXT;
BEGIN
    SELECT json_build_object('type', 'abort_job_requested', 'job_id', NEW.id)::text INTO payload;
	PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
	PERFORM pg_notify('procrastinate_any_queue_v1', payload);
	RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_notify_queue_job_inserted_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    payload TEXT;
BEGIN
    SELECT json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text INTO payload;
	PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
	PERFORM pg_notify('procrastinate_any_queue_v1', payload);
	RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_prune_stalled_workers_v1(seconds_since_heartbeat double precision) RETURNS TABLE(worker_id bigint)
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY
    DELETE FROM procrastinate_workers
    WHERE last_heartbeat < NOW() - (seconds_since_heartbeat || 'SECOND')::INTERVAL
    RETURNING procrastinate_workers.id;
END;
$$;

CREATE FUNCTION public.procrastinate_register_worker_v1() RETURNS TABLE(worker_id bigint)
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY
    INSERT INTO procrastinate_workers DEFAULT VALUES
    RETURNING procrastinate_workers.id;
END;
$$;

CREATE FUNCTION public.procrastinate_retry_job_v1(job_id bigint, retry_at timestamp with time zone, new_priority integer, new_queue_name character varying, new_lock character varying) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
    _abort_requested boolean;
BEGIN
    SELECT abort_requested FROM procrastinate_jobs
    WHERE id = job_id AND status = 'doing'
    FOR UPDATE
    INTO _abort_requested;
    IF _abort_requested THEN
        UPDATE procrastinate_jobs
        SET status = 'failed'::procrastinate_job_status
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = 'todo'::procrastinate_job_status,
            attempts = attempts + 1,
            scheduled_at = retry_at,
            priority = COALESCE(new_priority, priority),
            queue_name = COALESCE(new_queue_name, queue_name),
            lock = COALESCE(new_lock, lock)
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    END IF;

    IF _job_id IS NULL THEN
        RAISE 'Job was not found or not in "doing" status (job id: %)', job_id;
    END IF;
END;
$$;

CREATE FUNCTION public.procrastinate_retry_job_v2(job_id bigint, retry_at timestamp with time zone, new_priority integer, new_queue_name character varying, new_lock character varying) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
    _abort_requested boolean;
    _current_status procrastinate_job_status;
BEGIN
    SELECT status, abort_requested FROM procrastinate_jobs
    WHERE id = job_id AND status IN ('doing', 'failed')
    FOR UPDATE
    INTO _current_status, _abort_requested;
    IF _current_status = 'doing' AND _abort_requested THEN
        UPDATE procrastinate_jobs
        SET status = 'failed'::procrastinate_job_status
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = 'todo'::procrastinate_job_status,
            attempts = attempts + 1,
            scheduled_at = retry_at,
            priority = COALESCE(new_priority, priority),
            queue_name = COALESCE(new_queue_name, queue_name),
            lock = COALESCE(new_lock, lock)
        WHERE id = job_id AND status IN ('doing', 'failed')
        RETURNING id INTO _job_id;
    END IF;

    IF _job_id IS NULL THEN
        RAISE 'Job was not found or has an invalid status to retry (job id: %)', job_id;
    END IF;

END;
$$;

CREATE FUNCTION public.procrastinate_trigger_abort_requested_events_procedure_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type)
        VALUES (NEW.id, 'abort_requested'::procrastinate_job_event_type);
    RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_trigger_function_scheduled_events_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type, at)
        VALUES (NEW.id, 'scheduled'::procrastinate_job_event_type, NEW.scheduled_at);

	RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_trigger_function_status_events_insert_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type)
        VALUES (NEW.id, 'deferred'::procrastinate_job_event_type);
	RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_trigger_function_status_events_update_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    WITH t AS (
        SELECT CASE
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND NEW.status = 'doing'::procrastinate_job_status
                THEN 'started'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'deferred_for_retry'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'failed'::procrastinate_job_status
                THEN 'failed'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'succeeded'::procrastinate_job_status
                THEN 'succeeded'::procrastinate_job_event_type
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND (
                    NEW.status = 'cancelled'::procrastinate_job_status
                    OR NEW.status = 'failed'::procrastinate_job_status
                    OR NEW.status = 'succeeded'::procrastinate_job_status
                )
                THEN 'cancelled'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'aborted'::procrastinate_job_status
                THEN 'aborted'::procrastinate_job_event_type
            WHEN OLD.status = 'failed'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'retried'::procrastinate_job_event_type
            ELSE NULL
        END as event_type
    )
    INSERT INTO procrastinate_events(job_id, type)
        SELECT NEW.id, t.event_type
        FROM t
        WHERE t.event_type IS NOT NULL;
	RETURN NEW;
END;
$$;

CREATE FUNCTION public.procrastinate_unlink_periodic_defers_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE procrastinate_periodic_defers
    SET job_id = NULL
    WHERE job_id = OLD.id;
    RETURN OLD;
END;
$$;

CREATE FUNCTION public.procrastinate_unregister_worker_v1(worker_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM procrastinate_workers
    WHERE id = worker_id;
END;
$$;

CREATE FUNCTION public.procrastinate_update_heartbeat_v1(worker_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE procrastinate_workers
    SET last_heartbeat = NOW()
    WHERE id = worker_id;
END;
$$;

CREATE TABLE public._yoyo_log (
    id character varying(36) NOT NULL,
    migration_hash character varying(64),
    migration_id character varying(255),
    operation character varying(10),
    username character varying(255),
    hostname character varying(255),
    comment character varying(255),
    created_at_utc timestamp without time zone
);

CREATE TABLE public._yoyo_migration (
    migration_hash character varying(64) NOT NULL,
    migration_id character varying(255),
    applied_at_utc timestamp without time zone
);

CREATE TABLE public._yoyo_version (
    version integer NOT NULL,
    installed_at_utc timestamp without time zone
);

CREATE TABLE public.admin_audit_log (
    id bigint NOT NULL,
    admin_id text NOT NULL,
    action text NOT NULL,
    order_id uuid,
    reason text,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE public.admin_audit_log IS 'Append-only: every admin action, who did it and why.';

COMMENT ON COLUMN public.admin_audit_log.id IS 'Order of actions (identity).';

COMMENT ON COLUMN public.admin_audit_log.admin_id IS 'The admin''s JWT sub.';

COMMENT ON COLUMN public.admin_audit_log.action IS 'What was done, e.g. fulfillment.retry, delivery_email.resend.';

COMMENT ON COLUMN public.admin_audit_log.order_id IS 'The order acted on, if any.';

COMMENT ON COLUMN public.admin_audit_log.reason IS 'Why, as the admin wrote it.';

COMMENT ON COLUMN public.admin_audit_log.details IS 'What else the action recorded (JSON), e.g. the previous error.';

COMMENT ON COLUMN public.admin_audit_log.at IS 'When.';

ALTER TABLE public.admin_audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.admin_audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.kinguin_orders (
    order_id uuid NOT NULL,
    kinguin_order_id text NOT NULL,
    status text NOT NULL,
    status_updated_at timestamp with time zone,
    payment_price numeric(14,4),
    polls integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT kinguin_orders_status_check CHECK ((status = ANY (ARRAY['processing'::text, 'completed'::text, 'canceled'::text, 'refunded'::text])))
);

COMMENT ON TABLE public.kinguin_orders IS 'The Kinguin order bought for one of our orders (orderExternalId = our order id). status_updated_at is the webhook updatedAt watermark: older events are ignored.';

COMMENT ON COLUMN public.kinguin_orders.order_id IS 'Our order (its orderExternalId at Kinguin).';

COMMENT ON COLUMN public.kinguin_orders.kinguin_order_id IS 'Kinguin''s orderId.';

COMMENT ON COLUMN public.kinguin_orders.status IS 'Kinguin''s order status: processing, completed, canceled or refunded.';

COMMENT ON COLUMN public.kinguin_orders.status_updated_at IS 'Kinguin''s updatedAt of the last webhook applied: older events are ignored.';

COMMENT ON COLUMN public.kinguin_orders.payment_price IS 'What Kinguin charged our balance for it (paymentPrice), in EUR, the Kinguin balance currency.';

COMMENT ON COLUMN public.kinguin_orders.polls IS 'How many times the current fulfillment has polled it for keys.';

COMMENT ON COLUMN public.kinguin_orders.created_at IS 'When it was bought.';

COMMENT ON COLUMN public.kinguin_orders.updated_at IS 'When the row last changed.';

CREATE TABLE public.order_events (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    machine text NOT NULL,
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    reason text,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT order_events_machine_check CHECK ((machine = ANY (ARRAY['order'::text, 'fulfillment'::text])))
);

COMMENT ON TABLE public.order_events IS 'Append-only history of every status change of every order, written by trigger, so a change made from psql is recorded too. machine says which state machine moved.';

COMMENT ON COLUMN public.order_events.id IS 'Order of events (identity).';

COMMENT ON COLUMN public.order_events.order_id IS 'The order that moved.';

COMMENT ON COLUMN public.order_events.machine IS 'Which state machine moved: order (status) or fulfillment (fulfillment_status).';

COMMENT ON COLUMN public.order_events.from_status IS 'The status before; NULL for the order''s creation.';

COMMENT ON COLUMN public.order_events.to_status IS 'The status after.';

COMMENT ON COLUMN public.order_events.actor IS 'Who moved it: api, worker, nowpayments, kinguin, reconciler, admin:<sub> (bitloot.actor), or sql:<role> for a change made by hand.';

COMMENT ON COLUMN public.order_events.reason IS 'Why, as the actor said (bitloot.reason); NULL if it said nothing.';

COMMENT ON COLUMN public.order_events.at IS 'When (clock time of the change).';

CREATE VIEW public.daily_sales AS
 WITH sold AS (
         SELECT ((o.paid_at AT TIME ZONE 'UTC'::text))::date AS day,
            o.currency,
            count(*) AS orders_paid,
            COALESCE(sum(o.total_amount) FILTER (WHERE (o.status = ANY (ARRAY['paid'::text, 'fulfilled'::text]))), (0)::numeric) AS revenue,
            COALESCE(sum(k.payment_price) FILTER (WHERE (k.status <> ALL (ARRAY['canceled'::text, 'refunded'::text]))), (0)::numeric) AS kinguin_cost_eur
           FROM (public.orders o
             LEFT JOIN public.kinguin_orders k ON ((k.order_id = o.id)))
          WHERE (o.paid_at IS NOT NULL)
          GROUP BY (((o.paid_at AT TIME ZONE 'UTC'::text))::date), o.currency
        ), refunded AS (
         SELECT ((e.at AT TIME ZONE 'UTC'::text))::date AS day,
            o.currency,
            count(*) AS refunds,
            sum(o.total_amount) AS refunded_amount
           FROM (public.order_events e
             JOIN public.orders o ON ((o.id = e.order_id)))
          WHERE ((e.machine = 'order'::text) AND (e.to_status = 'refunded'::text))
          GROUP BY (((e.at AT TIME ZONE 'UTC'::text))::date), o.currency
        )
 SELECT day,
    currency,
    COALESCE(s.orders_paid, (0)::bigint) AS orders_paid,
    COALESCE(s.revenue, (0)::numeric) AS revenue,
    COALESCE(s.kinguin_cost_eur, (0)::numeric) AS kinguin_cost_eur,
        CASE
            WHEN (currency = 'eur'::text) THEN (COALESCE(s.revenue, (0)::numeric) - COALESCE(s.kinguin_cost_eur, (0)::numeric))
            ELSE NULL::numeric
        END AS margin_eur,
    COALESCE(r.refunds, (0)::bigint) AS refunds,
    COALESCE(r.refunded_amount, (0)::numeric) AS refunded_amount
   FROM (sold s
     FULL JOIN refunded r USING (day, currency));

COMMENT ON VIEW public.daily_sales IS 'Per UTC day and order currency: orders paid, revenue, what Kinguin charged, the margin (EUR orders only) and refunds. SELECT * FROM daily_sales ORDER BY day DESC, currency;';

COMMENT ON COLUMN public.daily_sales.day IS 'The UTC date: of paid_at for the sales columns, of the move to refunded for the refund columns.';

COMMENT ON COLUMN public.daily_sales.currency IS 'The orders'' currency (orders.currency, lower case).';

COMMENT ON COLUMN public.daily_sales.orders_paid IS 'Orders that became paid that day, whatever their status now (refunded ones too).';

COMMENT ON COLUMN public.daily_sales.revenue IS 'Sum of total_amount, in currency, of the orders paid that day that are paid or fulfilled now: an order refunded since is left out here (and counted under refunds on its refund day).';

COMMENT ON COLUMN public.daily_sales.kinguin_cost_eur IS 'What Kinguin charged, in EUR (kinguin_orders.payment_price: the balance charged; the Kinguin balance is in EUR), for the orders paid that day, whether refunded since or not; Kinguin orders that Kinguin canceled or refunded are left out (the balance came back).';

COMMENT ON COLUMN public.daily_sales.margin_eur IS 'revenue - kinguin_cost_eur, only where currency = eur; NULL for other currencies, whose revenue this view does not convert.';

COMMENT ON COLUMN public.daily_sales.refunds IS 'Orders moved to refunded that day.';

COMMENT ON COLUMN public.daily_sales.refunded_amount IS 'Sum of their total_amount, in currency (the order total; a partial refund is not recorded separately).';

CREATE TABLE public.key_access_events (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    key_id text NOT NULL,
    actor_kind text NOT NULL,
    actor_id text,
    client_ip inet,
    user_agent text,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT key_access_events_actor_kind_check CHECK ((actor_kind = ANY (ARRAY['user'::text, 'order_token'::text, 'admin'::text])))
);

COMMENT ON TABLE public.key_access_events IS 'Append-only: every issue of a download link for a key, who asked (actor_kind says which kind of token; admin means an admin override) and from where.';

COMMENT ON COLUMN public.key_access_events.id IS 'Order of issue (identity).';

COMMENT ON COLUMN public.key_access_events.order_id IS 'The order whose key was opened.';

COMMENT ON COLUMN public.key_access_events.key_id IS 'The key a link was issued for.';

COMMENT ON COLUMN public.key_access_events.actor_kind IS 'user (customer JWT), order_token or admin (an admin override).';

COMMENT ON COLUMN public.key_access_events.actor_id IS 'The JWT sub of the user or admin; for an order token, the order.';

COMMENT ON COLUMN public.key_access_events.client_ip IS 'The client address that asked.';

COMMENT ON COLUMN public.key_access_events.user_agent IS 'Its User-Agent header.';

COMMENT ON COLUMN public.key_access_events.at IS 'When the link was issued.';

CREATE TABLE public.key_delivery_logs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    order_id uuid NOT NULL,
    key_id text NOT NULL,
    product_id text,
    object_key text NOT NULL,
    content_type text NOT NULL,
    wrapped_data_key bytea NOT NULL,
    master_key_id text NOT NULL,
    status text DEFAULT 'stored'::text NOT NULL,
    expires_at timestamp with time zone,
    last_accessed_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    revoked_reason text,
    replaces_key_id text,
    CONSTRAINT key_delivery_logs_revocation_has_reason CHECK (((revoked_at IS NULL) = (revoked_reason IS NULL))),
    CONSTRAINT key_delivery_logs_revoked_reason_check CHECK ((revoked_reason = ANY (ARRAY['refunded'::text, 'replaced'::text]))),
    CONSTRAINT key_delivery_logs_status_check CHECK ((status = ANY (ARRAY['stored'::text, 'accessed'::text, 'expired'::text, 'deleted'::text])))
);

COMMENT ON TABLE public.key_delivery_logs IS 'One row per delivered key: where its ciphertext is (object_key) and its data key wrapped by master key master_key_id. Never the key itself.';

COMMENT ON COLUMN public.key_delivery_logs.id IS 'Row id.';

COMMENT ON COLUMN public.key_delivery_logs.order_id IS 'The order the key was bought for.';

COMMENT ON COLUMN public.key_delivery_logs.key_id IS 'Kinguin''s key id.';

COMMENT ON COLUMN public.key_delivery_logs.product_id IS 'The product it is a key of.';

COMMENT ON COLUMN public.key_delivery_logs.object_key IS 'Where its ciphertext is in object storage (AES-256-GCM; useless without the data key).';

COMMENT ON COLUMN public.key_delivery_logs.content_type IS 'text/plain for a text key, or the image type of an image key.';

COMMENT ON COLUMN public.key_delivery_logs.wrapped_data_key IS 'The key''s data key, encrypted by master key master_key_id (secret: not readable by bitloot_auditor).';

COMMENT ON COLUMN public.key_delivery_logs.master_key_id IS 'The id of the master key that wraps the data key.';

COMMENT ON COLUMN public.key_delivery_logs.status IS 'stored, accessed (a link was issued), expired (past expires_at), deleted (ciphertext removed).';

COMMENT ON COLUMN public.key_delivery_logs.expires_at IS 'When it stops being downloadable (BITLOOT_KEY_RETENTION_DAYS).';

COMMENT ON COLUMN public.key_delivery_logs.last_accessed_at IS 'When a download link was last issued for it.';

COMMENT ON COLUMN public.key_delivery_logs.created_at IS 'When it was stored (delivered).';

COMMENT ON COLUMN public.key_delivery_logs.updated_at IS 'When the row last changed (e.g. re-wrapped by keys rotate).';

COMMENT ON COLUMN public.key_delivery_logs.revoked_at IS 'When the key stopped being served (download-link answers only live keys); NULL while it is live. Its object is still deleted by the retention rule (expires_at).';

COMMENT ON COLUMN public.key_delivery_logs.revoked_reason IS 'refunded (the order was refunded) or replaced (an admin replaced a faulty key).';

COMMENT ON COLUMN public.key_delivery_logs.replaces_key_id IS 'For a replacement key: the key_id of the faulty key it replaces; NULL for a first key.';

CREATE VIEW public.delivery_audit_trail AS
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
    ( SELECT count(*) AS count
           FROM public.key_access_events a
          WHERE ((a.order_id = k.order_id) AND (a.key_id = k.key_id))) AS access_count,
    ( SELECT count(*) AS count
           FROM public.key_access_events a
          WHERE ((a.order_id = k.order_id) AND (a.key_id = k.key_id) AND (a.actor_kind = 'admin'::text))) AS admin_access_count
   FROM (public.key_delivery_logs k
     JOIN public.orders o ON ((o.id = k.order_id)));

COMMENT ON VIEW public.delivery_audit_trail IS 'Per delivered key: order, customer email, status, expiry, last access and a real access count from key_access_events. Holds no key material.';

COMMENT ON COLUMN public.delivery_audit_trail.order_id IS 'The order the key was delivered for.';

COMMENT ON COLUMN public.delivery_audit_trail.key_id IS 'Kinguin''s key id.';

COMMENT ON COLUMN public.delivery_audit_trail.customer_email IS 'The order''s email.';

COMMENT ON COLUMN public.delivery_audit_trail.product_id IS 'The product it is a key of.';

COMMENT ON COLUMN public.delivery_audit_trail.status IS 'stored, accessed, expired or deleted (key_delivery_logs.status).';

COMMENT ON COLUMN public.delivery_audit_trail.content_type IS 'text/plain, or the image type of an image key.';

COMMENT ON COLUMN public.delivery_audit_trail.master_key_id IS 'The master key that wraps its data key.';

COMMENT ON COLUMN public.delivery_audit_trail.delivered_at IS 'When it was stored.';

COMMENT ON COLUMN public.delivery_audit_trail.expires_at IS 'When it stops being downloadable.';

COMMENT ON COLUMN public.delivery_audit_trail.last_accessed_at IS 'When a link was last issued for it.';

COMMENT ON COLUMN public.delivery_audit_trail.access_count IS 'How many links were issued for it (key_access_events).';

COMMENT ON COLUMN public.delivery_audit_trail.admin_access_count IS 'How many of them were admin overrides.';

CREATE TABLE public.email_outbox (
    id bigint NOT NULL,
    order_id uuid,
    kind text NOT NULL,
    generation integer DEFAULT 1 NOT NULL,
    to_address text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    message_id text,
    sent_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    recovery_request_id bigint,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT email_outbox_generation_check CHECK ((generation >= 1)),
    CONSTRAINT email_outbox_kind_check CHECK ((kind = ANY (ARRAY['delivery'::text, 'payment_received'::text, 'underpaid'::text, 'undeliverable'::text, 'refunded'::text, 'key_replaced'::text, 'recovery'::text]))),
    CONSTRAINT email_outbox_recovery_has_no_order CHECK (
CASE
    WHEN (kind = 'recovery'::text) THEN ((order_id IS NULL) AND (recovery_request_id IS NOT NULL))
    ELSE ((order_id IS NOT NULL) AND (recovery_request_id IS NULL))
END),
    CONSTRAINT email_outbox_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'sent'::text, 'failed'::text])))
);

COMMENT ON TABLE public.email_outbox IS 'One row per email to send, idempotent on (order, kind, generation): a retried job finds it sent and sends nothing; an admin resend adds the next generation.';

COMMENT ON COLUMN public.email_outbox.id IS 'Row id (the outbox_id argument of send_delivery_email).';

COMMENT ON COLUMN public.email_outbox.order_id IS 'The order the email is about; NULL only for a recovery email (see recovery_request_id).';

COMMENT ON COLUMN public.email_outbox.kind IS 'Which email: delivery (the key-page link); the customer notices payment_received (a receipt), underpaid, undeliverable (refund coming), refunded, key_replaced; recovery (fresh links for every order of an address, POST /orders/recover).';

COMMENT ON COLUMN public.email_outbox.generation IS '1 for the first; each admin resend of the delivery email adds the next; a key_replaced notice carries the number of the replacement it announces.';

COMMENT ON COLUMN public.email_outbox.to_address IS 'Where it goes.';

COMMENT ON COLUMN public.email_outbox.status IS 'pending, sent, or failed (gave up; see last_error).';

COMMENT ON COLUMN public.email_outbox.attempts IS 'How many times sending was tried.';

COMMENT ON COLUMN public.email_outbox.last_error IS 'Why the last attempt failed; NULL once sent.';

COMMENT ON COLUMN public.email_outbox.message_id IS 'The Message-ID it was sent with (fixed per row, so a resent copy dedupes).';

COMMENT ON COLUMN public.email_outbox.sent_at IS 'When the mail server accepted it.';

COMMENT ON COLUMN public.email_outbox.created_at IS 'When it was queued.';

COMMENT ON COLUMN public.email_outbox.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN public.email_outbox.recovery_request_id IS 'For a recovery email: the recovery_requests row it answers (one email per request).';

COMMENT ON COLUMN public.email_outbox.details IS 'What the notice says beyond the order (amounts, the replaced key id), fixed when it was queued. Never a key, a token or a link.';

ALTER TABLE public.email_outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.email_outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.procrastinate_events (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    type public.procrastinate_job_event_type,
    at timestamp with time zone DEFAULT now()
);

CREATE VIEW public.failed_jobs AS
 SELECT j.id AS job_id,
    j.task_name,
    j.queue_name,
    j.attempts,
    ( SELECT max(ev.at) AS max
           FROM public.procrastinate_events ev
          WHERE ((ev.job_id = j.id) AND (ev.type = 'failed'::public.procrastinate_job_event_type))) AS failed_at,
    COALESCE(a.order_id, e.order_id) AS order_id,
    e.id AS outbox_id,
    o.status AS order_status,
    o.fulfillment_status,
        CASE j.task_name
            WHEN 'fulfill_order'::text THEN o.fulfillment_error
            WHEN 'send_delivery_email'::text THEN e.last_error
            ELSE NULL::text
        END AS error,
    j.args
   FROM (((public.procrastinate_jobs j
     CROSS JOIN LATERAL ( SELECT
                CASE
                    WHEN ((j.args ->> 'order_id'::text) ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'::text) THEN ((j.args ->> 'order_id'::text))::uuid
                    ELSE NULL::uuid
                END AS order_id,
                CASE
                    WHEN ((j.args ->> 'outbox_id'::text) ~ '^[0-9]{1,18}$'::text) THEN ((j.args ->> 'outbox_id'::text))::bigint
                    ELSE NULL::bigint
                END AS outbox_id) a)
     LEFT JOIN public.email_outbox e ON ((e.id = a.outbox_id)))
     LEFT JOIN public.orders o ON ((o.id = COALESCE(a.order_id, e.order_id))))
  WHERE (j.status = 'failed'::public.procrastinate_job_status);

COMMENT ON VIEW public.failed_jobs IS 'procrastinate jobs that failed for good (no retry left), joined to their order: SELECT * FROM failed_jobs ORDER BY failed_at DESC; (failed jobs are pruned after 30 days).';

COMMENT ON COLUMN public.failed_jobs.job_id IS 'procrastinate_jobs.id (the job_id of the worker''s log lines).';

COMMENT ON COLUMN public.failed_jobs.task_name IS 'fulfill_order, send_delivery_email, or a maintenance task (reconcile, expire_keys, ...).';

COMMENT ON COLUMN public.failed_jobs.queue_name IS 'fulfillment, email or maintenance.';

COMMENT ON COLUMN public.failed_jobs.attempts IS 'How many times it ran before giving up.';

COMMENT ON COLUMN public.failed_jobs.failed_at IS 'When it failed for the last time (procrastinate_events).';

COMMENT ON COLUMN public.failed_jobs.order_id IS 'The order it worked for: args.order_id (fulfill_order), or the order of its outbox row (send_delivery_email); NULL for maintenance jobs.';

COMMENT ON COLUMN public.failed_jobs.outbox_id IS 'email_outbox.id of a send_delivery_email job.';

COMMENT ON COLUMN public.failed_jobs.order_status IS 'The order''s status now.';

COMMENT ON COLUMN public.failed_jobs.fulfillment_status IS 'The order''s fulfillment status now.';

COMMENT ON COLUMN public.failed_jobs.error IS 'The error BitLoot recorded: orders.fulfillment_error for fulfill_order, email_outbox.last_error for send_delivery_email. procrastinate 3.10 keeps no error text of its own: when this is NULL the traceback is in the worker''s log, under job_id.';

COMMENT ON COLUMN public.failed_jobs.args IS 'The job''s arguments as deferred.';

CREATE TABLE public.fulfillment_status_transitions (
    from_status text NOT NULL,
    to_status text NOT NULL
);

COMMENT ON TABLE public.fulfillment_status_transitions IS 'The legal moves of orders.fulfillment_status; failed -> pending is an (audited) retry.';

COMMENT ON COLUMN public.fulfillment_status_transitions.from_status IS 'An orders.fulfillment_status an order may leave.';

COMMENT ON COLUMN public.fulfillment_status_transitions.to_status IS 'The orders.fulfillment_status it may move to from from_status.';

CREATE TABLE public.key_replacements (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    key_id text NOT NULL,
    number integer NOT NULL,
    admin_id text NOT NULL,
    reason text NOT NULL,
    product_id text NOT NULL,
    external_id text NOT NULL,
    placement_started_at timestamp with time zone,
    kinguin_order_id text,
    kinguin_status text,
    polls integer DEFAULT 0 NOT NULL,
    new_key_id text,
    status text DEFAULT 'requested'::text NOT NULL,
    error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT key_replacements_admin_id_check CHECK (((length(admin_id) >= 1) AND (length(admin_id) <= 500))),
    CONSTRAINT key_replacements_bought_after_marker CHECK (((kinguin_order_id IS NULL) OR (placement_started_at IS NOT NULL))),
    CONSTRAINT key_replacements_delivered_has_key CHECK (((status = 'delivered'::text) = (new_key_id IS NOT NULL))),
    CONSTRAINT key_replacements_error_check CHECK ((length(error) <= 500)),
    CONSTRAINT key_replacements_external_id_check CHECK ((external_id = (((order_id)::text || '-r'::text) || (number)::text))),
    CONSTRAINT key_replacements_failed_has_error CHECK (((status = 'failed'::text) = (error IS NOT NULL))),
    CONSTRAINT key_replacements_kinguin_status_check CHECK ((kinguin_status = ANY (ARRAY['processing'::text, 'completed'::text, 'canceled'::text, 'refunded'::text]))),
    CONSTRAINT key_replacements_number_check CHECK ((number >= 1)),
    CONSTRAINT key_replacements_placed_has_order CHECK (((status <> ALL (ARRAY['placed'::text, 'delivered'::text])) OR (kinguin_order_id IS NOT NULL))),
    CONSTRAINT key_replacements_polls_check CHECK ((polls >= 0)),
    CONSTRAINT key_replacements_reason_check CHECK (((length(reason) >= 1) AND (length(reason) <= 500))),
    CONSTRAINT key_replacements_status_check CHECK ((status = ANY (ARRAY['requested'::text, 'placed'::text, 'delivered'::text, 'failed'::text])))
);

COMMENT ON TABLE public.key_replacements IS 'Admin replacements of faulty keys (POST /admin/orders/{orderId}/keys/{keyId}/replace): one row per faulty key at most, each bought once from Kinguin under its own orderExternalId. SELECT * FROM key_replacements WHERE status = ''failed'' lists the ones an admin must look at (the order stays fulfilled, the faulty key stays live).';

COMMENT ON COLUMN public.key_replacements.id IS 'Replacement id (identity); the replace_key job''s argument.';

COMMENT ON COLUMN public.key_replacements.order_id IS 'The order whose key is replaced.';

COMMENT ON COLUMN public.key_replacements.key_id IS 'The faulty key (key_delivery_logs.key_id of the order); revoked (''replaced'') when the new key is delivered.';

COMMENT ON COLUMN public.key_replacements.number IS 'The order''s replacements numbered 1, 2, ...: the suffix of external_id and the generation of the key_replaced notice.';

COMMENT ON COLUMN public.key_replacements.admin_id IS 'The admin who asked (JWT sub).';

COMMENT ON COLUMN public.key_replacements.reason IS 'Why, as the admin wrote it (also in admin_audit_log).';

COMMENT ON COLUMN public.key_replacements.product_id IS 'The product bought again (the faulty key''s).';

COMMENT ON COLUMN public.key_replacements.external_id IS 'The orderExternalId of the replacement''s Kinguin order: <order id>-r<number>, never the order id itself (the first purchase''s), unique across the Kinguin account.';

COMMENT ON COLUMN public.key_replacements.placement_started_at IS 'Committed before the Kinguin order is placed: from then on one may exist even if it was never recorded, so a retry searches Kinguin by external_id before buying (bitloot/fulfillment/purchase.py).';

COMMENT ON COLUMN public.key_replacements.kinguin_order_id IS 'Kinguin''s orderId of the replacement''s order, once recorded.';

COMMENT ON COLUMN public.key_replacements.kinguin_status IS 'What Kinguin last said about that order: processing, completed, canceled or refunded.';

COMMENT ON COLUMN public.key_replacements.polls IS 'How many times the job polled Kinguin for the key.';

COMMENT ON COLUMN public.key_replacements.new_key_id IS 'The replacement key (key_delivery_logs.key_id, its replaces_key_id = key_id) once delivered.';

COMMENT ON COLUMN public.key_replacements.status IS 'requested (queued, maybe being bought), placed (the Kinguin order is recorded), delivered (the new key is stored and live, the faulty one revoked), failed (see error). Only forward; delivered and failed are final.';

COMMENT ON COLUMN public.key_replacements.error IS 'Why it failed (Kinguin refused or canceled, no key delivered, the order was refunded meanwhile), for an admin; NULL unless failed.';

COMMENT ON COLUMN public.key_replacements.created_at IS 'When the admin asked.';

COMMENT ON COLUMN public.key_replacements.updated_at IS 'When the row last changed.';

CREATE TABLE public.kinguin_key_returns (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    kinguin_order_id text,
    outcome text NOT NULL,
    detail text DEFAULT ''::text NOT NULL,
    key_statuses jsonb DEFAULT '[]'::jsonb NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT kinguin_key_returns_outcome_check CHECK ((outcome = ANY (ARRAY['requested'::text, 'returned'::text, 'refused'::text, 'skipped'::text, 'error'::text])))
);

COMMENT ON TABLE public.kinguin_key_returns IS 'Append-only: what the key-return job of a refunded order did (bitloot/fulfillment/returns.py). Kinguin allows one return request per order (POST /v2/order/{id}/keys/return): a requested row is committed before the request is sent, so a second job never sends another; the answer follows as returned, refused or error. skipped: no request was sent, and why.';

COMMENT ON COLUMN public.kinguin_key_returns.id IS 'Row id (identity): the order of the decisions.';

COMMENT ON COLUMN public.kinguin_key_returns.order_id IS 'The refunded order.';

COMMENT ON COLUMN public.kinguin_key_returns.kinguin_order_id IS 'The Kinguin order whose keys were (or would have been) returned; NULL when none was bought.';

COMMENT ON COLUMN public.kinguin_key_returns.outcome IS 'requested (about to send the one request), returned (Kinguin answered 200), refused (Kinguin refused: NoKeysToReturn or another 4xx kind, in detail), error (no usable answer after the retries: whether the keys went back is unknown, see key_statuses), skipped (not asked: no Kinguin order, a key was revealed, more than 24 h since delivery, the Kinguin order was canceled or refunded).';

COMMENT ON COLUMN public.kinguin_key_returns.detail IS 'Why: Kinguin''s error kind and detail, or the reason for skipping. Never a key.';

COMMENT ON COLUMN public.kinguin_key_returns.key_statuses IS 'The keys as Kinguin reported them, [{"id": ..., "status": "RETURNED"}, ...] (ids and statuses only); [] when Kinguin said nothing about them.';

COMMENT ON COLUMN public.kinguin_key_returns.at IS 'When this was recorded.';

CREATE TABLE public.recovery_request_orders (
    request_id bigint NOT NULL,
    order_id uuid NOT NULL
);

COMMENT ON TABLE public.recovery_request_orders IS 'Append-only: the orders a recovery request sent fresh links for (their earlier emailed links were revoked).';

COMMENT ON COLUMN public.recovery_request_orders.request_id IS 'The recovery request.';

COMMENT ON COLUMN public.recovery_request_orders.order_id IS 'An order it listed.';

CREATE TABLE public.recovery_requests (
    id bigint NOT NULL,
    email text NOT NULL,
    client_ip inet,
    outcome text NOT NULL,
    order_count integer DEFAULT 0 NOT NULL,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT recovery_requests_email_check CHECK (((length(email) >= 3) AND (length(email) <= 320))),
    CONSTRAINT recovery_requests_order_count_check CHECK ((order_count >= 0)),
    CONSTRAINT recovery_requests_outcome_check CHECK ((outcome = ANY (ARRAY['sent'::text, 'no_orders'::text, 'rate_limited'::text])))
);

COMMENT ON TABLE public.recovery_requests IS 'Append-only: every POST /orders/recover, whatever it found. The HTTP answer is the same for all of them (no enumeration); this row says what really happened.';

COMMENT ON COLUMN public.recovery_requests.id IS 'Request id (identity).';

COMMENT ON COLUMN public.recovery_requests.email IS 'The address asked for, lower-cased and trimmed.';

COMMENT ON COLUMN public.recovery_requests.client_ip IS 'Where the request came from.';

COMMENT ON COLUMN public.recovery_requests.outcome IS 'sent (a recovery email was queued), no_orders (nothing to send: unknown address or no fulfilled order within the retention period), rate_limited (too many requests for the address or from the client).';

COMMENT ON COLUMN public.recovery_requests.order_count IS 'How many orders the email lists.';

COMMENT ON COLUMN public.recovery_requests.requested_at IS 'When it was asked.';

CREATE TABLE public.refunds (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    amount numeric(12,2) NOT NULL,
    currency text NOT NULL,
    reference text NOT NULL,
    reason text NOT NULL,
    admin_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT refunds_admin_id_check CHECK ((length(admin_id) > 0)),
    CONSTRAINT refunds_amount_check CHECK ((amount > (0)::numeric)),
    CONSTRAINT refunds_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT refunds_reason_check CHECK ((length(btrim(reason)) > 0)),
    CONSTRAINT refunds_reference_check CHECK (((length(btrim(reference)) >= 1) AND (length(btrim(reference)) <= 200)))
);

COMMENT ON TABLE public.refunds IS 'Append-only: the refund of an order, at most one per order (POST /admin/orders/{id}/refund). The money itself is paid out by an admin in NOWPayments'' dashboard; this row records that payout. Written in the transaction that moves the order to refunded.';

COMMENT ON COLUMN public.refunds.id IS 'Refund id (identity).';

COMMENT ON COLUMN public.refunds.order_id IS 'The refunded order (one refund per order).';

COMMENT ON COLUMN public.refunds.amount IS 'How much was refunded, in the order''s currency; more than 0, at most the order total. Defaults to bitloot_amount_paid(order_id).';

COMMENT ON COLUMN public.refunds.currency IS 'The order''s currency (ISO 4217, lower case).';

COMMENT ON COLUMN public.refunds.reference IS 'The reference of the payout made in NOWPayments'' dashboard (required).';

COMMENT ON COLUMN public.refunds.reason IS 'Why, as the admin wrote it (required).';

COMMENT ON COLUMN public.refunds.admin_id IS 'The JWT sub of the admin who refunded it.';

COMMENT ON COLUMN public.refunds.created_at IS 'When the refund was recorded.';

CREATE TABLE public.webhook_events (
    id bigint NOT NULL,
    provider text NOT NULL,
    dedup_key text NOT NULL,
    event_type text NOT NULL,
    external_id text,
    order_id uuid,
    raw_body text NOT NULL,
    signature_variant text,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone,
    outcome text,
    needs_attention boolean DEFAULT false NOT NULL,
    CONSTRAINT webhook_events_provider_check CHECK ((provider = ANY (ARRAY['nowpayments'::text, 'kinguin'::text])))
);

COMMENT ON TABLE public.webhook_events IS 'Every verified webhook exactly once (UNIQUE provider, dedup_key), raw as received, with what applying it did (outcome). Unverified requests are never stored.';

COMMENT ON COLUMN public.webhook_events.id IS 'Arrival order (identity).';

COMMENT ON COLUMN public.webhook_events.provider IS 'Who sent it: nowpayments (IPN, or the status API via the reconciler) or kinguin.';

COMMENT ON COLUMN public.webhook_events.dedup_key IS 'What makes two deliveries the same event: order, payment, status and amounts for an IPN; Kinguin order, status and updatedAt for Kinguin.';

COMMENT ON COLUMN public.webhook_events.event_type IS 'The IPN''s payment_status, or the Kinguin X-Event-Name.';

COMMENT ON COLUMN public.webhook_events.external_id IS 'The provider''s id: the NOWPayments payment id, or the Kinguin order id.';

COMMENT ON COLUMN public.webhook_events.order_id IS 'The order it names, if any; no foreign key, so events for unknown orders are kept too.';

COMMENT ON COLUMN public.webhook_events.raw_body IS 'The body exactly as received (secret: a Kinguin body may carry key serials; not readable by bitloot_auditor).';

COMMENT ON COLUMN public.webhook_events.signature_variant IS 'Which serialisation the IPN signature matched (utf8-lists, ascii-lists, utf8-objects, ascii-objects), api for a report read from the status API; NULL for Kinguin.';

COMMENT ON COLUMN public.webhook_events.received_at IS 'When it arrived.';

COMMENT ON COLUMN public.webhook_events.processed_at IS 'When it was applied (with outcome); NULL: not yet.';

COMMENT ON COLUMN public.webhook_events.outcome IS 'What applying the event did: one of webhook_outcomes (see its meaning column); NULL until processed. Written in the same transaction as the business change.';

COMMENT ON COLUMN public.webhook_events.needs_attention IS 'Flagged for admins: unknown order, currency mismatch, underpayment and the like.';

CREATE VIEW public.fulfillment_timeline AS
 SELECT order_events.order_id,
    order_events.at,
    'status'::text AS source,
    ((((order_events.machine || ': '::text) || COALESCE(order_events.from_status, '-'::text)) || ' -> '::text) || order_events.to_status) AS what,
    order_events.actor,
    order_events.reason
   FROM public.order_events
UNION ALL
 SELECT webhook_events.order_id,
    webhook_events.received_at AS at,
    (webhook_events.provider || ' webhook'::text) AS source,
    (webhook_events.event_type || COALESCE((' '::text || webhook_events.outcome), ''::text)) AS what,
    webhook_events.provider AS actor,
    NULL::text AS reason
   FROM public.webhook_events
  WHERE (webhook_events.order_id IS NOT NULL)
UNION ALL
 SELECT kinguin_orders.order_id,
    kinguin_orders.created_at AS at,
    'kinguin order'::text AS source,
    ((kinguin_orders.kinguin_order_id || ' '::text) || kinguin_orders.status) AS what,
    'worker'::text AS actor,
    NULL::text AS reason
   FROM public.kinguin_orders
UNION ALL
 SELECT key_delivery_logs.order_id,
    key_delivery_logs.created_at AS at,
    'key stored'::text AS source,
    (((key_delivery_logs.key_id || ' ('::text) || key_delivery_logs.content_type) || ')'::text) AS what,
    'worker'::text AS actor,
    NULL::text AS reason
   FROM public.key_delivery_logs
UNION ALL
 SELECT key_access_events.order_id,
    key_access_events.at,
    'key access'::text AS source,
    key_access_events.key_id AS what,
    (key_access_events.actor_kind || COALESCE((':'::text || key_access_events.actor_id), ''::text)) AS actor,
    NULL::text AS reason
   FROM public.key_access_events
UNION ALL
 SELECT email_outbox.order_id,
    COALESCE(email_outbox.sent_at, email_outbox.created_at) AS at,
    'email'::text AS source,
    ((((email_outbox.kind || ' #'::text) || email_outbox.generation) || ' '::text) || email_outbox.status) AS what,
    'worker'::text AS actor,
    email_outbox.last_error AS reason
   FROM public.email_outbox
  WHERE (email_outbox.order_id IS NOT NULL)
UNION ALL
 SELECT admin_audit_log.order_id,
    admin_audit_log.at,
    'admin'::text AS source,
    admin_audit_log.action AS what,
    admin_audit_log.admin_id AS actor,
    admin_audit_log.reason
   FROM public.admin_audit_log
  WHERE (admin_audit_log.order_id IS NOT NULL)
UNION ALL
 SELECT ro.order_id,
    r.requested_at AS at,
    'recovery'::text AS source,
    (('recovery request '::text || r.id) || ': fresh link sent'::text) AS what,
    'customer'::text AS actor,
    NULL::text AS reason
   FROM (public.recovery_request_orders ro
     JOIN public.recovery_requests r ON ((r.id = ro.request_id)))
UNION ALL
 SELECT key_delivery_logs.order_id,
    key_delivery_logs.revoked_at AS at,
    'key revoked'::text AS source,
    (((key_delivery_logs.key_id || ' ('::text) || key_delivery_logs.revoked_reason) || ')'::text) AS what,
    'bitloot'::text AS actor,
    NULL::text AS reason
   FROM public.key_delivery_logs
  WHERE (key_delivery_logs.revoked_at IS NOT NULL)
UNION ALL
 SELECT refunds.order_id,
    refunds.created_at AS at,
    'refund'::text AS source,
    ((((((trim_scale(refunds.amount))::text || ' '::text) || refunds.currency) || ' (payout '::text) || refunds.reference) || ')'::text) AS what,
    ('admin:'::text || refunds.admin_id) AS actor,
    refunds.reason
   FROM public.refunds
UNION ALL
 SELECT kinguin_key_returns.order_id,
    kinguin_key_returns.at,
    'kinguin key return'::text AS source,
    (kinguin_key_returns.outcome || COALESCE((' '::text || kinguin_key_returns.kinguin_order_id), ''::text)) AS what,
    'worker'::text AS actor,
    NULLIF(kinguin_key_returns.detail, ''::text) AS reason
   FROM public.kinguin_key_returns
UNION ALL
 SELECT key_replacements.order_id,
    key_replacements.created_at AS at,
    'key replacement'::text AS source,
    (((('replacement '::text || key_replacements.number) || ' of key '::text) || key_replacements.key_id) || ' requested'::text) AS what,
    ('admin:'::text || key_replacements.admin_id) AS actor,
    key_replacements.reason
   FROM public.key_replacements
UNION ALL
 SELECT key_replacements.order_id,
    key_replacements.updated_at AS at,
    'key replacement'::text AS source,
    (((('replacement '::text || key_replacements.number) || ' '::text) || key_replacements.status) || COALESCE(((' (new key '::text || key_replacements.new_key_id) || ')'::text), ''::text)) AS what,
    'worker'::text AS actor,
    key_replacements.error AS reason
   FROM public.key_replacements
  WHERE (key_replacements.status = ANY (ARRAY['delivered'::text, 'failed'::text]));

COMMENT ON VIEW public.fulfillment_timeline IS 'Everything that happened to an order, one row per event, from every table: SELECT * FROM fulfillment_timeline WHERE order_id = ... ORDER BY at.';

COMMENT ON COLUMN public.fulfillment_timeline.order_id IS 'The order.';

COMMENT ON COLUMN public.fulfillment_timeline.at IS 'When it happened.';

COMMENT ON COLUMN public.fulfillment_timeline.source IS 'Where it comes from: status, <provider> webhook, kinguin order, key stored, key access, email or admin.';

COMMENT ON COLUMN public.fulfillment_timeline.what IS 'What happened, in a few words.';

COMMENT ON COLUMN public.fulfillment_timeline.actor IS 'Who did it.';

COMMENT ON COLUMN public.fulfillment_timeline.reason IS 'Why, when known (an email''s last error, an admin''s reason).';

ALTER TABLE public.key_access_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.key_access_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE VIEW public.key_access_log AS
 SELECT id AS access_id,
    order_id,
    key_id,
    at,
    actor_kind,
    actor_id,
    client_ip,
    user_agent,
    (actor_kind = 'admin'::text) AS admin_override
   FROM public.key_access_events a;

COMMENT ON VIEW public.key_access_log IS 'Every issue of a download link for a key (key_access_events): which order and key, when, who asked and from where, and whether it was an admin override. SELECT * FROM key_access_log WHERE order_id = ... ORDER BY at;';

COMMENT ON COLUMN public.key_access_log.access_id IS 'key_access_events.id: the order in which links were issued.';

COMMENT ON COLUMN public.key_access_log.order_id IS 'The order whose key was opened.';

COMMENT ON COLUMN public.key_access_log.key_id IS 'The Kinguin key id (key_delivery_logs.key_id) a link was issued for.';

COMMENT ON COLUMN public.key_access_log.at IS 'When the link was issued.';

COMMENT ON COLUMN public.key_access_log.actor_kind IS 'Who asked: user (a customer JWT), order_token (an order access token, e.g. the emailed link) or admin (an admin JWT).';

COMMENT ON COLUMN public.key_access_log.actor_id IS 'The JWT sub of the user or admin; for an order token, the order it opens.';

COMMENT ON COLUMN public.key_access_log.client_ip IS 'The client address (the socket peer, or X-Forwarded-For within BITLOOT_TRUSTED_PROXY_HOPS).';

COMMENT ON COLUMN public.key_access_log.user_agent IS 'The User-Agent header as sent (may be absent).';

COMMENT ON COLUMN public.key_access_log.admin_override IS 'True when an admin opened a customer''s key (actor_kind = admin).';

ALTER TABLE public.key_replacements ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.key_replacements_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.kinguin_calls (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    endpoint text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    http_status integer,
    error_code text,
    latency_ms numeric(12,3) NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    replacement_id bigint,
    CONSTRAINT kinguin_calls_attempt_check CHECK ((attempt >= 1)),
    CONSTRAINT kinguin_calls_endpoint_check CHECK ((endpoint = ANY (ARRAY['place_order'::text, 'get_order'::text, 'find_order'::text, 'get_keys'::text, 'get_product'::text, 'get_balance'::text, 'return_keys'::text]))),
    CONSTRAINT kinguin_calls_http_status_check CHECK (((http_status >= 100) AND (http_status <= 599))),
    CONSTRAINT kinguin_calls_latency_ms_check CHECK ((latency_ms >= (0)::numeric)),
    CONSTRAINT kinguin_calls_outcome_check CHECK ((outcome <> ''::text))
);

COMMENT ON TABLE public.kinguin_calls IS 'Append-only log of every HTTP attempt made to Kinguin for an order (one row per attempt, retries included), written in one batch at the end of each fulfillment pass. A worker crash loses at most the calls of the pass that was running.';

COMMENT ON COLUMN public.kinguin_calls.id IS 'Row id; increases in the order the calls were made within a pass.';

COMMENT ON COLUMN public.kinguin_calls.order_id IS 'The order the call was made for.';

COMMENT ON COLUMN public.kinguin_calls.endpoint IS 'Which Kinguin call: place_order, get_order, find_order (search by orderExternalId), get_keys (one row per page), get_product, get_balance or return_keys (the key return of a refunded order).';

COMMENT ON COLUMN public.kinguin_calls.attempt IS 'The attempt number of this HTTP request within one client call (1 = first try; higher = a retry after a timeout, connection error, 429 or 5xx).';

COMMENT ON COLUMN public.kinguin_calls.outcome IS 'ok, timeout, connection_error, rate_limited, server_error, or for a refusal Kinguin''s error kind (e.g. ProductUnavailable, InsufficientBalance, OrderNotFound).';

COMMENT ON COLUMN public.kinguin_calls.http_status IS 'The HTTP status Kinguin answered; NULL when no response arrived (timeout, connection).';

COMMENT ON COLUMN public.kinguin_calls.error_code IS 'Kinguin''s error kind (or ours: Timeout, Connection, InvalidResponse) when the attempt failed; NULL when it succeeded.';

COMMENT ON COLUMN public.kinguin_calls.latency_ms IS 'How long the attempt took, in milliseconds.';

COMMENT ON COLUMN public.kinguin_calls.at IS 'When the row was written (the end of the pass; the calls of one pass share it).';

COMMENT ON COLUMN public.kinguin_calls.replacement_id IS 'The key replacement the call was made for (key_replacements.id); NULL for the order''s first purchase.';

ALTER TABLE public.kinguin_calls ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.kinguin_calls_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE public.kinguin_key_returns ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.kinguin_key_returns_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.payments (
    payment_id text NOT NULL,
    order_id uuid NOT NULL,
    invoice_id text,
    parent_payment_id text,
    status text NOT NULL,
    price_amount numeric(30,12),
    price_currency text,
    pay_amount numeric(40,18),
    pay_currency text,
    actually_paid numeric(40,18),
    actually_paid_at_fiat numeric(30,12),
    outcome_amount numeric(40,18),
    outcome_currency text,
    provider_updated_at timestamp with time zone,
    last_ipn_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT payments_status_check CHECK ((public.bitloot_payment_status_rank(status) IS NOT NULL))
);

COMMENT ON TABLE public.payments IS 'NOWPayments payments as last reported by a verified IPN or the status API; one order may have several (re-deposits carry parent_payment_id).';

COMMENT ON COLUMN public.payments.payment_id IS 'The NOWPayments payment id.';

COMMENT ON COLUMN public.payments.order_id IS 'Our order it pays (the invoice''s order_id).';

COMMENT ON COLUMN public.payments.invoice_id IS 'The NOWPayments invoice it was made from.';

COMMENT ON COLUMN public.payments.parent_payment_id IS 'Set on a re-deposit: the payment it was a further deposit to. Never applied to the order (flagged for a human).';

COMMENT ON COLUMN public.payments.status IS 'The NOWPayments payment_status; only ever moves forward (bitloot_payment_status_rank).';

COMMENT ON COLUMN public.payments.price_amount IS 'The price asked, in price_currency (fiat).';

COMMENT ON COLUMN public.payments.price_currency IS 'The fiat currency of price_amount (should equal orders.currency).';

COMMENT ON COLUMN public.payments.pay_amount IS 'The crypto amount the customer was asked to send, in pay_currency.';

COMMENT ON COLUMN public.payments.pay_currency IS 'The cryptocurrency paid with (e.g. btc).';

COMMENT ON COLUMN public.payments.actually_paid IS 'The crypto amount received so far, in pay_currency.';

COMMENT ON COLUMN public.payments.actually_paid_at_fiat IS 'What NOWPayments says actually_paid is worth in price_currency.';

COMMENT ON COLUMN public.payments.outcome_amount IS 'What our payout wallet receives, in outcome_currency.';

COMMENT ON COLUMN public.payments.outcome_currency IS 'The currency of outcome_amount (the payout currency).';

COMMENT ON COLUMN public.payments.provider_updated_at IS 'NOWPayments'' own updated_at of the report applied last.';

COMMENT ON COLUMN public.payments.last_ipn_at IS 'When a report (IPN or status API) last moved this payment.';

COMMENT ON COLUMN public.payments.created_at IS 'When we first heard of the payment.';

COMMENT ON COLUMN public.payments.updated_at IS 'When the row last changed, or the reconciler last asked NOWPayments about it.';

CREATE VIEW public.stuck_orders AS
 SELECT o.id AS order_id,
    o.paid_at,
    (now() - o.paid_at) AS paid_for,
    o.fulfillment_status,
        CASE
            WHEN (o.fulfillment_status = 'failed'::text) THEN ('fulfillment failed: '::text || COALESCE(o.fulfillment_error, 'no reason recorded'::text))
            WHEN (k.status = ANY (ARRAY['canceled'::text, 'refunded'::text])) THEN ((('Kinguin '::text || k.status) || ' order '::text) || k.kinguin_order_id)
            WHEN (j.id IS NULL) THEN 'no fulfillment job queued (the reconciler queues one)'::text
            WHEN (j.status = 'doing'::public.procrastinate_job_status) THEN 'a worker is running its fulfillment job'::text
            WHEN (k.status = 'completed'::text) THEN (('Kinguin completed order '::text || k.kinguin_order_id) || ': keys not stored yet'::text)
            WHEN (k.status = 'processing'::text) THEN (('waiting for Kinguin''s keys ('::text || k.polls) || ' polls so far)'::text)
            WHEN (o.kinguin_placement_started_at IS NOT NULL) THEN 'Kinguin purchase started, not recorded yet: the next pass looks it up'::text
            ELSE 'waiting for a worker to buy the keys'::text
        END AS reason,
    o.fulfillment_error,
    k.kinguin_order_id,
    k.status AS kinguin_status,
    k.polls AS kinguin_polls,
    j.id AS next_job_id,
    (j.status)::text AS next_job_status,
    j.scheduled_at AS next_job_at,
    j.attempts AS next_job_attempts
   FROM ((public.orders o
     LEFT JOIN public.kinguin_orders k ON ((k.order_id = o.id)))
     LEFT JOIN LATERAL ( SELECT pj.id,
            pj.status,
            pj.scheduled_at,
            pj.attempts
           FROM public.procrastinate_jobs pj
          WHERE ((pj.lock = ('order:'::text || (o.id)::text)) AND (pj.status = ANY (ARRAY['todo'::public.procrastinate_job_status, 'doing'::public.procrastinate_job_status])))
          ORDER BY (pj.status = 'doing'::public.procrastinate_job_status) DESC, pj.scheduled_at NULLS FIRST, pj.id
         LIMIT 1) j ON (true))
  WHERE ((o.status = 'paid'::text) AND (o.fulfillment_status <> 'fulfilled'::text) AND (o.paid_at < (now() - '00:05:00'::interval)));

COMMENT ON VIEW public.stuck_orders IS 'Orders paid more than 5 minutes ago and not fulfilled (failed ones included), with the reason and the next queued job of the order. For a longer threshold filter on paid_for: SELECT * FROM stuck_orders WHERE paid_for > interval ''1 hour'' ORDER BY paid_at;';

COMMENT ON COLUMN public.stuck_orders.order_id IS 'The order (status paid).';

COMMENT ON COLUMN public.stuck_orders.paid_at IS 'When the order became paid.';

COMMENT ON COLUMN public.stuck_orders.paid_for IS 'How long ago it was paid (always more than 5 minutes here): filter on it for another threshold.';

COMMENT ON COLUMN public.stuck_orders.fulfillment_status IS 'pending, processing or failed.';

COMMENT ON COLUMN public.stuck_orders.reason IS 'Why it is not fulfilled, in words: the fulfillment error, the Kinguin order''s state, or what its job is doing; from the columns that follow.';

COMMENT ON COLUMN public.stuck_orders.fulfillment_error IS 'orders.fulfillment_error: the last failure, if any.';

COMMENT ON COLUMN public.stuck_orders.kinguin_order_id IS 'The Kinguin order bought for it; NULL: none bought yet.';

COMMENT ON COLUMN public.stuck_orders.kinguin_status IS 'The Kinguin order''s status: processing, completed, canceled or refunded.';

COMMENT ON COLUMN public.stuck_orders.kinguin_polls IS 'How many times this fulfillment has polled Kinguin for keys.';

COMMENT ON COLUMN public.stuck_orders.next_job_id IS 'procrastinate_jobs.id of the order''s running or next job (lock order:<id>); NULL: none queued.';

COMMENT ON COLUMN public.stuck_orders.next_job_status IS 'doing (a worker runs it) or todo (waiting).';

COMMENT ON COLUMN public.stuck_orders.next_job_at IS 'When the waiting job is due (scheduled_at; NULL: as soon as a worker is free).';

COMMENT ON COLUMN public.stuck_orders.next_job_attempts IS 'How many times that job has already run.';

CREATE TABLE public.webhook_endpoints (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    url text NOT NULL,
    event_types text[],
    description text,
    enabled boolean DEFAULT true NOT NULL,
    disabled_at timestamp with time zone,
    disabled_reason text,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    removed_at timestamp with time zone,
    CONSTRAINT webhook_endpoints_created_by_check CHECK (((length(created_by) >= 1) AND (length(created_by) <= 500))),
    CONSTRAINT webhook_endpoints_description_check CHECK ((length(description) <= 500)),
    CONSTRAINT webhook_endpoints_disabled_has_reason CHECK ((enabled OR ((disabled_at IS NOT NULL) AND (disabled_reason IS NOT NULL)))),
    CONSTRAINT webhook_endpoints_disabled_reason_check CHECK ((length(disabled_reason) <= 500)),
    CONSTRAINT webhook_endpoints_event_types_check CHECK (((event_types IS NULL) OR (cardinality(event_types) > 0))),
    CONSTRAINT webhook_endpoints_url_check CHECK (((length(url) >= 8) AND (length(url) <= 2000)))
);

COMMENT ON TABLE public.webhook_endpoints IS 'Where storefronts want BitLoot''s events (Standard Webhooks). Registered by an admin; a removed endpoint keeps its row (removed_at) so its attempts stay explained.';

COMMENT ON COLUMN public.webhook_endpoints.id IS 'Endpoint id (shown by bitloot webhooks add).';

COMMENT ON COLUMN public.webhook_endpoints.url IS 'Where events are POSTed: https, and never a private, loopback, link-local or metadata address (checked at registration and again at each delivery, against what the name resolves to), unless BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS is set.';

COMMENT ON COLUMN public.webhook_endpoints.event_types IS 'The event types it receives (order.paid, ...); NULL: every type.';

COMMENT ON COLUMN public.webhook_endpoints.description IS 'What the admin called it.';

COMMENT ON COLUMN public.webhook_endpoints.enabled IS 'false: no new deliveries are made to it (an admin disabled it, or it failed for days).';

COMMENT ON COLUMN public.webhook_endpoints.disabled_at IS 'When it was disabled.';

COMMENT ON COLUMN public.webhook_endpoints.disabled_reason IS 'Why: an admin''s reason, or that its deliveries failed for days.';

COMMENT ON COLUMN public.webhook_endpoints.created_by IS 'Who registered it (admin sub or cli:<user>).';

COMMENT ON COLUMN public.webhook_endpoints.created_at IS 'When it was registered.';

COMMENT ON COLUMN public.webhook_endpoints.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN public.webhook_endpoints.removed_at IS 'When it was removed (it receives nothing from then on); NULL while registered.';

CREATE TABLE public.webhook_outcomes (
    outcome text NOT NULL,
    provider text,
    meaning text NOT NULL,
    CONSTRAINT webhook_outcomes_meaning_check CHECK ((meaning <> ''::text)),
    CONSTRAINT webhook_outcomes_provider_check CHECK ((provider = ANY (ARRAY['nowpayments'::text, 'kinguin'::text])))
);

COMMENT ON TABLE public.webhook_outcomes IS 'Every value webhook_events.outcome may hold, with what it means; the code''s Outcome enum (bitloot/inbox/outcomes.py) lists the same values.';

COMMENT ON COLUMN public.webhook_outcomes.outcome IS 'The value stored in webhook_events.outcome.';

COMMENT ON COLUMN public.webhook_outcomes.provider IS 'The provider whose events produce it: nowpayments or kinguin; NULL for both.';

COMMENT ON COLUMN public.webhook_outcomes.meaning IS 'What applying the event did, in one line; "flagged" means needs_attention is set.';

CREATE VIEW public.needs_attention AS
 SELECT 'webhook'::text AS kind,
    w.order_id,
    (w.id)::text AS reference,
    ((w.provider || ' '::text) || w.event_type) AS status,
    w.received_at AS at,
    COALESCE(((w.outcome || ': '::text) || wo.meaning), 'not processed yet'::text) AS why
   FROM (public.webhook_events w
     LEFT JOIN public.webhook_outcomes wo ON ((wo.outcome = w.outcome)))
  WHERE w.needs_attention
UNION ALL
 SELECT 'order'::text AS kind,
    o.id AS order_id,
    (o.id)::text AS reference,
    ((o.status || '/'::text) || o.fulfillment_status) AS status,
    o.updated_at AS at,
    (('underpaid: '::text || COALESCE(o.status_reason, 'less than the total arrived'::text)) || ' (accept the payment or refund it)'::text) AS why
   FROM public.orders o
  WHERE (o.status = 'underpaid'::text)
UNION ALL
 SELECT 'order'::text AS kind,
    o.id AS order_id,
    (o.id)::text AS reference,
    ((o.status || '/'::text) || o.fulfillment_status) AS status,
    o.updated_at AS at,
    (('fulfillment failed: '::text || COALESCE(o.fulfillment_error, 'no reason recorded'::text)) || ' (retry it or refund the order)'::text) AS why
   FROM public.orders o
  WHERE ((o.status = 'paid'::text) AND (o.fulfillment_status = 'failed'::text))
UNION ALL
 SELECT 'order'::text AS kind,
    s.order_id,
    (s.order_id)::text AS reference,
    ('paid/'::text || s.fulfillment_status) AS status,
    s.paid_at AS at,
    ((('paid '::text || date_trunc('minute'::text, s.paid_for)) || ' ago and not fulfilled: '::text) || s.reason) AS why
   FROM public.stuck_orders s
  WHERE ((s.fulfillment_status <> 'failed'::text) AND (s.paid_for > '01:00:00'::interval))
UNION ALL
 SELECT 'payment'::text AS kind,
    p.order_id,
    p.payment_id AS reference,
    p.status,
    p.updated_at AS at,
    (((((('re-deposit to payment '::text || p.parent_payment_id) || ' ('::text) || COALESCE((trim_scale(p.actually_paid))::text, '?'::text)) || ' '::text) || COALESCE(p.pay_currency, ''::text)) || '): never applied to the order, settle by hand'::text) AS why
   FROM public.payments p
  WHERE (p.parent_payment_id IS NOT NULL)
UNION ALL
 SELECT 'email'::text AS kind,
    e.order_id,
    (e.id)::text AS reference,
    e.status,
    e.updated_at AS at,
    (((((((e.kind || ' email #'::text) || e.generation) || ' to '::text) || e.to_address) || ' failed: '::text) || COALESCE(e.last_error, 'no reason recorded'::text)) ||
        CASE
            WHEN (e.kind = 'delivery'::text) THEN ' (resend it)'::text
            ELSE ''::text
        END) AS why
   FROM public.email_outbox e
  WHERE (e.status = 'failed'::text)
UNION ALL
 SELECT 'replacement'::text AS kind,
    r.order_id,
    (r.id)::text AS reference,
    r.status,
    r.updated_at AS at,
    (((((('replacement '::text || r.number) || ' of key '::text) || r.key_id) || ' failed: '::text) || COALESCE(r.error, 'no reason recorded'::text)) || ' (the old key is still live: refund the order or tell the customer)'::text) AS why
   FROM public.key_replacements r
  WHERE (r.status = 'failed'::text)
UNION ALL
 SELECT 'key return'::text AS kind,
    k.order_id,
    (k.id)::text AS reference,
    k.outcome AS status,
    k.at,
    (((('Kinguin key return '::text || COALESCE(k.kinguin_order_id, ''::text)) || ' ended in an error: '::text) || COALESCE(NULLIF(k.detail, ''::text), 'no detail'::text)) || ' (check the balance in Kinguin''s dashboard)'::text) AS why
   FROM public.kinguin_key_returns k
  WHERE (k.outcome = 'error'::text)
UNION ALL
 SELECT 'webhook endpoint'::text AS kind,
    NULL::uuid AS order_id,
    (e.id)::text AS reference,
    'disabled'::text AS status,
    e.disabled_at AS at,
    (((('webhook endpoint '::text || e.url) || ' disabled: '::text) || e.disabled_reason) || ' (fix the receiver, then bitloot webhooks enable and redeliver)'::text) AS why
   FROM public.webhook_endpoints e
  WHERE ((NOT e.enabled) AND (e.removed_at IS NULL) AND (e.disabled_reason ~~ 'failing%'::text));

COMMENT ON VIEW public.needs_attention IS 'Everything a human must look at, one row each, with why: flagged webhooks (see webhook_outcomes), underpaid orders, failed fulfillments, orders paid over an hour ago and not fulfilled, re-deposits, failed delivery emails. A row leaves when its cause does; flagged webhooks stay (BitLoot never clears needs_attention), so filter on at. SELECT * FROM needs_attention ORDER BY at DESC;';

COMMENT ON COLUMN public.needs_attention.kind IS 'What to look at: webhook, order, payment, email, replacement, key return or webhook endpoint.';

COMMENT ON COLUMN public.needs_attention.order_id IS 'The order concerned; NULL for a webhook that names no order of ours.';

COMMENT ON COLUMN public.needs_attention.reference IS 'The row to open: webhook_events.id (webhook), orders.id (order), payments.payment_id (payment), email_outbox.id (email), key_replacements.id (replacement), kinguin_key_returns.id (key return), webhook_endpoints.id (webhook endpoint).';

COMMENT ON COLUMN public.needs_attention.status IS 'webhook: provider and event type; order: status/fulfillment_status; payment: its NOWPayments status; email: the outbox status.';

COMMENT ON COLUMN public.needs_attention.at IS 'When: the webhook''s arrival, the order''s last change (its payment for a stuck order), the payment''s or the email''s last update.';

COMMENT ON COLUMN public.needs_attention.why IS 'Why a human must look, and what they can do.';

CREATE TABLE public.order_access_tokens (
    token_hash bytea NOT NULL,
    order_id uuid NOT NULL,
    purpose text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    revoked_reason text,
    CONSTRAINT order_access_tokens_expire_after_creation CHECK ((expires_at > created_at)),
    CONSTRAINT order_access_tokens_purpose_check CHECK ((purpose = ANY (ARRAY['checkout'::text, 'email'::text, 'recovery'::text]))),
    CONSTRAINT order_access_tokens_revocation_has_reason CHECK (((revoked_at IS NULL) = (revoked_reason IS NULL))),
    CONSTRAINT order_access_tokens_token_hash_check CHECK ((length(token_hash) = 32))
);

COMMENT ON TABLE public.order_access_tokens IS 'Order access tokens BitLoot issued (accessToken of POST /orders, emailed key-page links), by the SHA-256 of the token, never the token. Revoked by setting revoked_at; never deleted by the application.';

COMMENT ON COLUMN public.order_access_tokens.token_hash IS 'SHA-256 of the whole token string (blot_...): a 256-bit random secret needs no slow hash.';

COMMENT ON COLUMN public.order_access_tokens.order_id IS 'The one order the token opens.';

COMMENT ON COLUMN public.order_access_tokens.purpose IS 'Why it was issued: checkout (POST /orders), email (a delivery email), recovery (a recovery email).';

COMMENT ON COLUMN public.order_access_tokens.created_at IS 'When it was issued.';

COMMENT ON COLUMN public.order_access_tokens.expires_at IS 'After this the token answers 401 (issued with BITLOOT_ORDER_TOKEN_TTL).';

COMMENT ON COLUMN public.order_access_tokens.revoked_at IS 'When it was revoked (it answers 401 from then on); NULL while it is not.';

COMMENT ON COLUMN public.order_access_tokens.revoked_reason IS 'Why it was revoked, e.g. resend (an admin sent the delivery email again).';

ALTER TABLE public.order_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.order_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.order_idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_fingerprint bytea NOT NULL,
    order_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT order_idempotency_keys_key_check CHECK (((length(key) >= 1) AND (length(key) <= 200))),
    CONSTRAINT order_idempotency_keys_request_fingerprint_check CHECK ((length(request_fingerprint) = 32)),
    CONSTRAINT order_idempotency_keys_scope_check CHECK (((length(scope) >= 1) AND (length(scope) <= 200)))
);

COMMENT ON TABLE public.order_idempotency_keys IS 'The Idempotency-Key headers of POST /orders, per caller, for 24 hours: a retry within them answers with the order the key made; after them the key makes a new order.';

COMMENT ON COLUMN public.order_idempotency_keys.scope IS 'Whose key: user:<JWT sub> for a signed-in user, guest:<hex of request_fingerprint> for a guest.';

COMMENT ON COLUMN public.order_idempotency_keys.key IS 'The Idempotency-Key header as sent.';

COMMENT ON COLUMN public.order_idempotency_keys.request_fingerprint IS 'SHA-256 of the normalised email and the sorted items: a signed-in user who reuses the key for another request gets a 422.';

COMMENT ON COLUMN public.order_idempotency_keys.order_id IS 'The order the key made.';

COMMENT ON COLUMN public.order_idempotency_keys.created_at IS 'When the key made its order; 24 hours later it no longer protects a retry.';

CREATE TABLE public.order_status_transitions (
    from_status text NOT NULL,
    to_status text NOT NULL
);

COMMENT ON TABLE public.order_status_transitions IS 'The legal moves of orders.status; the orders trigger rejects any other move.';

COMMENT ON COLUMN public.order_status_transitions.from_status IS 'An orders.status an order may leave.';

COMMENT ON COLUMN public.order_status_transitions.to_status IS 'The orders.status it may move to from from_status.';

CREATE TABLE public.payment_acceptances (
    id bigint NOT NULL,
    order_id uuid NOT NULL,
    admin_id text NOT NULL,
    reason text NOT NULL,
    accepted_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT payment_acceptances_admin_id_check CHECK ((length(admin_id) > 0)),
    CONSTRAINT payment_acceptances_reason_check CHECK ((length(btrim(reason)) > 0))
);

COMMENT ON TABLE public.payment_acceptances IS 'Append-only: an admin''s decision that an order counts as paid without a covering payment (e.g. a top-up settled by hand). It is evidence for `paid` to the orders trigger; POST /admin/orders/{id}/accept-payment (the business-exceptions issue) writes it.';

COMMENT ON COLUMN public.payment_acceptances.id IS 'Order of acceptances (identity).';

COMMENT ON COLUMN public.payment_acceptances.order_id IS 'The order accepted as paid.';

COMMENT ON COLUMN public.payment_acceptances.admin_id IS 'The JWT sub of the admin who accepted it.';

COMMENT ON COLUMN public.payment_acceptances.reason IS 'Why, as the admin wrote it (required).';

COMMENT ON COLUMN public.payment_acceptances.accepted_at IS 'When it was accepted.';

ALTER TABLE public.payment_acceptances ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.payment_acceptances_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE VIEW public.payment_audit AS
 SELECT p.payment_id,
    p.order_id,
    p.status AS current_status,
    p.price_amount,
    p.price_currency,
    p.actually_paid,
    p.pay_currency,
    w.id AS event_id,
    w.received_at,
    ((w.raw_body)::jsonb ->> 'payment_status'::text) AS ipn_status,
    w.signature_variant,
    w.outcome,
    w.needs_attention
   FROM (public.payments p
     LEFT JOIN public.webhook_events w ON (((w.provider = 'nowpayments'::text) AND (w.external_id = p.payment_id))));

COMMENT ON VIEW public.payment_audit IS 'Per payment, one row per IPN received for it, oldest first by event_id: the status each IPN reported and what applying it did.';

COMMENT ON COLUMN public.payment_audit.payment_id IS 'The NOWPayments payment id.';

COMMENT ON COLUMN public.payment_audit.order_id IS 'Our order it pays.';

COMMENT ON COLUMN public.payment_audit.current_status IS 'The payment''s status now.';

COMMENT ON COLUMN public.payment_audit.price_amount IS 'The price asked, in price_currency.';

COMMENT ON COLUMN public.payment_audit.price_currency IS 'The fiat currency of price_amount.';

COMMENT ON COLUMN public.payment_audit.actually_paid IS 'The crypto amount received so far.';

COMMENT ON COLUMN public.payment_audit.pay_currency IS 'The cryptocurrency paid with.';

COMMENT ON COLUMN public.payment_audit.event_id IS 'webhook_events.id of one report about it; NULL if none is stored.';

COMMENT ON COLUMN public.payment_audit.received_at IS 'When that report arrived.';

COMMENT ON COLUMN public.payment_audit.ipn_status IS 'The payment_status that report gave.';

COMMENT ON COLUMN public.payment_audit.signature_variant IS 'Which serialisation its signature matched (api: the status API).';

COMMENT ON COLUMN public.payment_audit.outcome IS 'What applying it did (webhook_outcomes).';

COMMENT ON COLUMN public.payment_audit.needs_attention IS 'Whether it was flagged for a human.';

CREATE TABLE public.payment_policy (
    singleton boolean DEFAULT true NOT NULL,
    paid_on text NOT NULL,
    tolerance numeric NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT payment_policy_paid_on_check CHECK ((paid_on = ANY (ARRAY['finished'::text, 'confirmed'::text]))),
    CONSTRAINT payment_policy_singleton_check CHECK (singleton),
    CONSTRAINT payment_policy_tolerance_check CHECK ((tolerance >= (0)::numeric))
);

COMMENT ON TABLE public.payment_policy IS 'One row: when a payment pays an order (BITLOOT_PAID_ON, BITLOOT_PAYMENT_TOLERANCE), as the last `serve` or `worker` to start wrote it from its settings (open_resources). bitloot_payment_evidence() reads it; run every process with the same settings.';

COMMENT ON COLUMN public.payment_policy.singleton IS 'Always true: the table has exactly one row.';

COMMENT ON COLUMN public.payment_policy.paid_on IS 'finished: only a finished payment pays an order; confirmed: confirmed and sending do too.';

COMMENT ON COLUMN public.payment_policy.tolerance IS 'How much less than the order total (in the order''s currency) a payment may cover and still pay it.';

COMMENT ON COLUMN public.payment_policy.updated_at IS 'When a process last wrote it (at its start).';

CREATE SEQUENCE public.procrastinate_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.procrastinate_events_id_seq OWNED BY public.procrastinate_events.id;

CREATE SEQUENCE public.procrastinate_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.procrastinate_jobs_id_seq OWNED BY public.procrastinate_jobs.id;

CREATE TABLE public.procrastinate_periodic_defers (
    id bigint NOT NULL,
    task_name character varying(128) NOT NULL,
    defer_timestamp bigint,
    job_id bigint,
    periodic_id character varying(128) DEFAULT ''::character varying NOT NULL
);

CREATE SEQUENCE public.procrastinate_periodic_defers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.procrastinate_periodic_defers_id_seq OWNED BY public.procrastinate_periodic_defers.id;

CREATE TABLE public.procrastinate_workers (
    id bigint NOT NULL,
    last_heartbeat timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.procrastinate_workers ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.procrastinate_workers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.products (
    product_id text NOT NULL,
    name text NOT NULL,
    price numeric(12,2) NOT NULL,
    currency text NOT NULL,
    max_cost numeric(12,2) NOT NULL,
    text_only boolean DEFAULT true NOT NULL,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    kinguin_price numeric,
    kinguin_qty integer,
    kinguin_text_qty integer,
    kinguin_updated_at timestamp with time zone,
    checked_at timestamp with time zone,
    platform text,
    regional_limitations text,
    excluded_countries text[] DEFAULT '{}'::text[] NOT NULL,
    image_url text,
    is_preorder boolean DEFAULT false NOT NULL,
    release_date date,
    CONSTRAINT products_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT products_excluded_countries_check CHECK (public.bitloot_country_codes_valid(excluded_countries)),
    CONSTRAINT products_image_url_check CHECK (((image_url ~ '^https://[^\s"<>]+$'::text) AND (length(image_url) <= 2000))),
    CONSTRAINT products_kinguin_price_check CHECK ((kinguin_price > (0)::numeric)),
    CONSTRAINT products_kinguin_qty_check CHECK ((kinguin_qty >= 0)),
    CONSTRAINT products_kinguin_text_qty_check CHECK ((kinguin_text_qty >= 0)),
    CONSTRAINT products_max_cost_check CHECK ((max_cost > (0)::numeric)),
    CONSTRAINT products_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT products_platform_check CHECK (((length(platform) >= 1) AND (length(platform) <= 100))),
    CONSTRAINT products_price_check CHECK ((price > (0)::numeric)),
    CONSTRAINT products_product_id_check CHECK ((product_id ~ '^[A-Za-z0-9_-]{1,64}$'::text)),
    CONSTRAINT products_regional_limitations_check CHECK (((length(regional_limitations) >= 1) AND (length(regional_limitations) <= 200)))
);

COMMENT ON TABLE public.products IS 'The catalog rows an order may name: a Kinguin productId, our retail price and currency, and max_cost, the most (EUR) we pay Kinguin per unit.';

COMMENT ON COLUMN public.products.product_id IS 'The Kinguin productId, also what POST /orders names as productId.';

COMMENT ON COLUMN public.products.name IS 'The name shown to customers and in the delivery email.';

COMMENT ON COLUMN public.products.price IS 'Our retail price per unit, in currency.';

COMMENT ON COLUMN public.products.currency IS 'The currency of price (lower case ISO 4217, e.g. eur).';

COMMENT ON COLUMN public.products.max_cost IS 'The most we pay Kinguin per unit, in EUR (the Kinguin balance currency).';

COMMENT ON COLUMN public.products.text_only IS 'Ask Kinguin for keyType "text" (false: accept image keys too).';

COMMENT ON COLUMN public.products.active IS 'Whether new orders may name it (false: kept for old orders only).';

COMMENT ON COLUMN public.products.created_at IS 'When it was added (bitloot products add).';

COMMENT ON COLUMN public.products.updated_at IS 'When the row last changed: by bitloot products add, or by a new answer from Kinguin (see checked_at).';

COMMENT ON COLUMN public.products.kinguin_price IS 'The price (EUR) of Kinguin''s cheapest offer when last read; NULL: never read, or no offer in stock (Kinguin answered 404 ProductUnavailable).';

COMMENT ON COLUMN public.products.kinguin_qty IS 'Keys in stock across Kinguin''s cheapest offers (any key type) when last told, by a read or a product.update webhook; NULL: never told.';

COMMENT ON COLUMN public.products.kinguin_text_qty IS 'Text keys in stock across Kinguin''s cheapest offers (what a text_only product can buy); NULL: never told, or Kinguin did not say.';

COMMENT ON COLUMN public.products.kinguin_updated_at IS 'Kinguin''s updatedAt of the newest answer applied (a read or a product.update webhook): a webhook dated at or before it is stale and ignored.';

COMMENT ON COLUMN public.products.checked_at IS 'When the stored answer (price and stock) was last read from Kinguin, or came with a price in a product.update webhook. POST /orders reuses it while younger than BITLOOT_PRODUCT_CACHE_TTL; NULL: never read, or a webhook without a price changed the stock, so the next order reads the product again.';

COMMENT ON COLUMN public.products.platform IS 'Kinguin''s `platform` when last read (Steam, GOG COM, Xbox Series X|S, ...): where the key is activated; NULL: not read yet.';

COMMENT ON COLUMN public.products.regional_limitations IS 'Kinguin''s `regionalLimitations` when last read (REGION FREE, EUROPE, ...): where the key works; NULL: not read yet.';

COMMENT ON COLUMN public.products.excluded_countries IS 'Kinguin''s `countryLimitation` when last read: ISO country codes where the key will not activate; empty: none named.';

COMMENT ON COLUMN public.products.image_url IS 'The https URL of Kinguin''s cover image when last read (shown in emails and by storefronts); NULL: none.';

COMMENT ON COLUMN public.products.is_preorder IS 'Kinguin''s `isPreorder` when last read: keys come on or after release_date.';

COMMENT ON COLUMN public.products.release_date IS 'Kinguin''s `releaseDate` when last read (a date); NULL: unknown.';

CREATE TABLE public.rate_limit_buckets (
    bucket text NOT NULL,
    tat timestamp with time zone NOT NULL
);

COMMENT ON TABLE public.rate_limit_buckets IS 'GCRA rate limiting shared by every server process: tat is the theoretical arrival time of the next request allowed in the bucket.';

COMMENT ON COLUMN public.rate_limit_buckets.bucket IS 'rule:subject, e.g. download:address:<ip> (subjects are client addresses and token subjects; not readable by bitloot_auditor).';

COMMENT ON COLUMN public.rate_limit_buckets.tat IS 'The theoretical arrival time of the next request the bucket allows.';

ALTER TABLE public.recovery_requests ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.recovery_requests_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE VIEW public.refunds_due AS
 WITH due AS (
         SELECT o_1.id,
            (('underpaid: '::text || COALESCE(o_1.status_reason, 'less than the total arrived'::text)) || ' (accept the payment or refund it)'::text) AS why,
            ( SELECT max(e.at) AS max
                   FROM public.order_events e
                  WHERE ((e.order_id = o_1.id) AND (e.machine = 'order'::text) AND (e.to_status = 'underpaid'::text))) AS since
           FROM public.orders o_1
          WHERE (o_1.status = 'underpaid'::text)
        UNION ALL
         SELECT o_1.id,
            (
                CASE
                    WHEN (k.status = ANY (ARRAY['canceled'::text, 'refunded'::text])) THEN ((('Kinguin order '::text || k.kinguin_order_id) || ' was '::text) || k.status)
                    ELSE ('fulfillment failed: '::text || COALESCE(o_1.fulfillment_error, 'no reason recorded'::text))
                END || ' (refund it, or retry the fulfillment)'::text),
            GREATEST(( SELECT max(e.at) AS max
                   FROM public.order_events e
                  WHERE ((e.order_id = o_1.id) AND (e.machine = 'fulfillment'::text) AND (e.to_status = 'failed'::text))),
                CASE
                    WHEN (k.status = ANY (ARRAY['canceled'::text, 'refunded'::text])) THEN COALESCE(k.status_updated_at, k.updated_at)
                    ELSE NULL::timestamp with time zone
                END) AS "greatest"
           FROM (public.orders o_1
             LEFT JOIN public.kinguin_orders k ON ((k.order_id = o_1.id)))
          WHERE ((o_1.status = 'paid'::text) AND ((o_1.fulfillment_status = 'failed'::text) OR (k.status = ANY (ARRAY['canceled'::text, 'refunded'::text]))))
        ), arrived AS (
         SELECT p.order_id,
                CASE
                    WHEN (count(DISTINCT p.pay_currency) = 1) THEN trim_scale(sum(p.actually_paid))
                    ELSE NULL::numeric
                END AS actually_paid,
            string_agg(DISTINCT p.pay_currency, ','::text) AS pay_currency
           FROM public.payments p
          WHERE ((p.order_id IN ( SELECT due.id
                   FROM due)) AND (p.status = ANY (ARRAY['confirming'::text, 'confirmed'::text, 'sending'::text, 'partially_paid'::text, 'finished'::text])) AND (p.actually_paid IS NOT NULL))
          GROUP BY p.order_id
        )
 SELECT o.id AS order_id,
    o.status,
    o.fulfillment_status,
    d.why,
    o.email,
    o.currency,
    o.total_amount,
    public.bitloot_amount_paid(o.id) AS amount_due,
    a.actually_paid,
    a.pay_currency,
    COALESCE(d.since, o.updated_at) AS since
   FROM ((due d
     JOIN public.orders o ON ((o.id = d.id)))
     LEFT JOIN arrived a ON ((a.order_id = o.id)));

COMMENT ON VIEW public.refunds_due IS 'Orders whose money an admin must settle (GET /admin/refunds-due): paid orders that cannot be delivered (fulfillment failed, or their Kinguin order was canceled or refunded) and underpaid orders. Refund them (POST /admin/orders/{id}/refund) or, for underpaid ones, accept the payment (POST /admin/orders/{id}/accept-payment); a failed fulfillment may also be retried. Newest first: ORDER BY since DESC.';

COMMENT ON COLUMN public.refunds_due.order_id IS 'The order.';

COMMENT ON COLUMN public.refunds_due.status IS 'Its status: paid or underpaid.';

COMMENT ON COLUMN public.refunds_due.fulfillment_status IS 'Its fulfillment status.';

COMMENT ON COLUMN public.refunds_due.why IS 'Why it is here, and what can be done.';

COMMENT ON COLUMN public.refunds_due.email IS 'The customer''s address (where the refund notice goes).';

COMMENT ON COLUMN public.refunds_due.currency IS 'The order''s currency.';

COMMENT ON COLUMN public.refunds_due.total_amount IS 'The order total.';

COMMENT ON COLUMN public.refunds_due.amount_due IS 'What a refund gives back by default: bitloot_amount_paid (the total when a payment covered it, else what arrived, in the order currency, rounded down to cents).';

COMMENT ON COLUMN public.refunds_due.actually_paid IS 'What arrived in crypto: the sum of actually_paid of the order''s payments that money reached; NULL when they were in several currencies (see pay_currency) or none arrived.';

COMMENT ON COLUMN public.refunds_due.pay_currency IS 'The crypto currency of actually_paid (a comma list when several).';

COMMENT ON COLUMN public.refunds_due.since IS 'Since when: the order became underpaid, its fulfillment failed, or its Kinguin order was canceled (the order''s updated_at when no event says).';

ALTER TABLE public.refunds ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.refunds_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.vault_canaries (
    master_key_id text NOT NULL,
    wrapped bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE public.vault_canaries IS 'A known value wrapped by each master key, so a process started with a wrong master key refuses to run instead of writing data nobody can decrypt.';

COMMENT ON COLUMN public.vault_canaries.master_key_id IS 'The master key''s id.';

COMMENT ON COLUMN public.vault_canaries.wrapped IS 'A known value wrapped by that key (secret: not readable by bitloot_auditor).';

COMMENT ON COLUMN public.vault_canaries.created_at IS 'When the key was first used.';

CREATE TABLE public.webhook_attempts (
    id bigint NOT NULL,
    endpoint_id uuid NOT NULL,
    message_id bigint NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    status_code integer,
    latency_ms numeric(10,1),
    error text,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_attempts_attempt_check CHECK ((attempt >= 1)),
    CONSTRAINT webhook_attempts_error_check CHECK ((length(error) <= 500)),
    CONSTRAINT webhook_attempts_outcome_check CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retry'::text, 'failed'::text, 'refused_address'::text])))
);

COMMENT ON TABLE public.webhook_attempts IS 'Append-only: every HTTP attempt to deliver an event to an endpoint.';

COMMENT ON COLUMN public.webhook_attempts.id IS 'Attempt id (identity).';

COMMENT ON COLUMN public.webhook_attempts.endpoint_id IS 'The endpoint.';

COMMENT ON COLUMN public.webhook_attempts.message_id IS 'The event.';

COMMENT ON COLUMN public.webhook_attempts.attempt IS 'Which attempt of this delivery (1 is the first).';

COMMENT ON COLUMN public.webhook_attempts.outcome IS 'delivered (2xx), retry (5xx, 408, 409, 425, 429, timeout, connection error: tried again later), failed (another 4xx, or the last retry), refused_address (the name resolved to a private or metadata address: not sent).';

COMMENT ON COLUMN public.webhook_attempts.status_code IS 'The HTTP status, when an answer came.';

COMMENT ON COLUMN public.webhook_attempts.latency_ms IS 'From sending to the answer (or the error).';

COMMENT ON COLUMN public.webhook_attempts.error IS 'Why it failed, in one line (never the secret).';

COMMENT ON COLUMN public.webhook_attempts.at IS 'When it was made.';

ALTER TABLE public.webhook_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.webhook_deliveries (
    endpoint_id uuid NOT NULL,
    message_id bigint NOT NULL,
    order_id uuid NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    last_status_code integer,
    last_error text,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_deliveries_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT webhook_deliveries_last_error_check CHECK ((length(last_error) <= 500)),
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))
);

COMMENT ON TABLE public.webhook_deliveries IS 'One row per event per endpoint: where its delivery stands. An admin redelivery puts a failed row back to pending.';

COMMENT ON COLUMN public.webhook_deliveries.endpoint_id IS 'The endpoint.';

COMMENT ON COLUMN public.webhook_deliveries.message_id IS 'The event (webhook_messages.id).';

COMMENT ON COLUMN public.webhook_deliveries.order_id IS 'The event''s order (copied, so one job drains one endpoint''s events of one order).';

COMMENT ON COLUMN public.webhook_deliveries.status IS 'pending (to send, at next_attempt_at), delivered (a 2xx), failed (a 4xx that is not 408/409/425/429, or every retry used: about 3 days).';

COMMENT ON COLUMN public.webhook_deliveries.attempts IS 'HTTP attempts so far.';

COMMENT ON COLUMN public.webhook_deliveries.next_attempt_at IS 'When a pending delivery is tried next.';

COMMENT ON COLUMN public.webhook_deliveries.last_status_code IS 'The last answer''s HTTP status, if any.';

COMMENT ON COLUMN public.webhook_deliveries.last_error IS 'Why the last attempt failed, in one line.';

COMMENT ON COLUMN public.webhook_deliveries.delivered_at IS 'When a 2xx came back.';

COMMENT ON COLUMN public.webhook_deliveries.created_at IS 'When it was queued.';

COMMENT ON COLUMN public.webhook_deliveries.updated_at IS 'When the row last changed.';

CREATE TABLE public.webhook_messages (
    id bigint NOT NULL,
    msg_id text NOT NULL,
    order_id uuid NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT webhook_messages_event_type_check CHECK ((event_type = ANY (ARRAY['order.paid'::text, 'order.fulfilled'::text, 'order.failed'::text, 'order.underpaid'::text, 'order.refunded'::text, 'order.expired'::text, 'order.key_replaced'::text]))),
    CONSTRAINT webhook_messages_msg_id_check CHECK ((msg_id ~ '^msg_[0-9a-f]{32}$'::text))
);

COMMENT ON TABLE public.webhook_messages IS 'Append-only outbox of events for storefronts, written by trigger in the transaction of the change that caused them (so a rolled-back change has no event).';

COMMENT ON COLUMN public.webhook_messages.id IS 'Order of events (identity): per order, the delivery order.';

COMMENT ON COLUMN public.webhook_messages.msg_id IS 'The webhook-id header: the same on every attempt and every endpoint, so receivers dedupe.';

COMMENT ON COLUMN public.webhook_messages.order_id IS 'The order the event is about.';

COMMENT ON COLUMN public.webhook_messages.event_type IS 'order.paid, order.fulfilled, order.failed (payment failed, or fulfillment failed), order.underpaid, order.refunded, order.expired, order.key_replaced.';

COMMENT ON COLUMN public.webhook_messages.data IS 'The event''s data as of the change: orderId, status, fulfillmentStatus, total, currency, email (sent only when BITLOOT_WEBHOOK_INCLUDE_EMAIL is set), keyId for order.key_replaced. Never a key, a data key, a signed URL or a token.';

COMMENT ON COLUMN public.webhook_messages.created_at IS 'When it happened (the payload''s timestamp).';

CREATE VIEW public.webhook_delivery_audit AS
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
   FROM ((public.webhook_deliveries d
     JOIN public.webhook_messages m ON ((m.id = d.message_id)))
     JOIN public.webhook_endpoints e ON ((e.id = d.endpoint_id)));

COMMENT ON VIEW public.webhook_delivery_audit IS 'Every event for every endpoint and where its delivery stands; the attempts are in webhook_attempts. SELECT * FROM webhook_delivery_audit WHERE status <> ''delivered'';';

COMMENT ON COLUMN public.webhook_delivery_audit.endpoint_id IS 'The endpoint.';

COMMENT ON COLUMN public.webhook_delivery_audit.url IS 'Its URL.';

COMMENT ON COLUMN public.webhook_delivery_audit.msg_id IS 'The webhook-id the receiver sees.';

COMMENT ON COLUMN public.webhook_delivery_audit.event_type IS 'order.paid, ...';

COMMENT ON COLUMN public.webhook_delivery_audit.order_id IS 'The order.';

COMMENT ON COLUMN public.webhook_delivery_audit.event_at IS 'When the event happened.';

COMMENT ON COLUMN public.webhook_delivery_audit.status IS 'pending, delivered or failed.';

COMMENT ON COLUMN public.webhook_delivery_audit.attempts IS 'HTTP attempts so far.';

COMMENT ON COLUMN public.webhook_delivery_audit.last_status_code IS 'The last answer''s status.';

COMMENT ON COLUMN public.webhook_delivery_audit.last_error IS 'Why the last attempt failed.';

COMMENT ON COLUMN public.webhook_delivery_audit.next_attempt_at IS 'When a pending one is tried next.';

COMMENT ON COLUMN public.webhook_delivery_audit.delivered_at IS 'When it was delivered.';

CREATE TABLE public.webhook_endpoint_secrets (
    id bigint NOT NULL,
    endpoint_id uuid NOT NULL,
    wrapped bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone
);

COMMENT ON TABLE public.webhook_endpoint_secrets IS 'An endpoint''s signing secrets (whsec_...), each wrapped (AES-GCM) by a master key, never in clear. Deliveries are signed with every secret not expired, so a rotation keeps deliveries verifiable by the old secret until it expires.';

COMMENT ON COLUMN public.webhook_endpoint_secrets.id IS 'Secret id (identity).';

COMMENT ON COLUMN public.webhook_endpoint_secrets.endpoint_id IS 'Whose secret.';

COMMENT ON COLUMN public.webhook_endpoint_secrets.wrapped IS 'nonce || AES-GCM(master key, the 32 secret bytes), bound to the endpoint id.';

COMMENT ON COLUMN public.webhook_endpoint_secrets.master_key_id IS 'The master key that wraps it (bitloot keys rotate re-wraps it under the newest).';

COMMENT ON COLUMN public.webhook_endpoint_secrets.created_at IS 'When it was made.';

COMMENT ON COLUMN public.webhook_endpoint_secrets.expires_at IS 'NULL: the current secret. Set when the secret is rotated: it still signs until then.';

ALTER TABLE public.webhook_endpoint_secrets ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_endpoint_secrets_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE public.webhook_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE public.webhook_messages ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.yoyo_lock (
    locked integer DEFAULT 1 NOT NULL,
    ctime timestamp without time zone,
    pid integer NOT NULL
);

ALTER TABLE ONLY public.procrastinate_events ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_events_id_seq'::regclass);

ALTER TABLE ONLY public.procrastinate_jobs ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_jobs_id_seq'::regclass);

ALTER TABLE ONLY public.procrastinate_periodic_defers ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_periodic_defers_id_seq'::regclass);

ALTER TABLE ONLY public._yoyo_log
    ADD CONSTRAINT _yoyo_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public._yoyo_migration
    ADD CONSTRAINT _yoyo_migration_pkey PRIMARY KEY (migration_hash);

ALTER TABLE ONLY public._yoyo_version
    ADD CONSTRAINT _yoyo_version_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.admin_audit_log
    ADD CONSTRAINT admin_audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.email_outbox
    ADD CONSTRAINT email_outbox_order_id_kind_generation_key UNIQUE (order_id, kind, generation);

ALTER TABLE ONLY public.email_outbox
    ADD CONSTRAINT email_outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.email_outbox
    ADD CONSTRAINT email_outbox_recovery_request_id_key UNIQUE (recovery_request_id);

ALTER TABLE ONLY public.fulfillment_status_transitions
    ADD CONSTRAINT fulfillment_status_transitions_pkey PRIMARY KEY (from_status, to_status);

ALTER TABLE ONLY public.key_access_events
    ADD CONSTRAINT key_access_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.key_delivery_logs
    ADD CONSTRAINT key_delivery_logs_object_key_key UNIQUE (object_key);

ALTER TABLE ONLY public.key_delivery_logs
    ADD CONSTRAINT key_delivery_logs_order_id_key_id_key UNIQUE (order_id, key_id);

ALTER TABLE ONLY public.key_delivery_logs
    ADD CONSTRAINT key_delivery_logs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_external_id_key UNIQUE (external_id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_kinguin_order_id_key UNIQUE (kinguin_order_id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_order_id_key_id_key UNIQUE (order_id, key_id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_order_id_number_key UNIQUE (order_id, number);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.kinguin_calls
    ADD CONSTRAINT kinguin_calls_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.kinguin_key_returns
    ADD CONSTRAINT kinguin_key_returns_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.kinguin_orders
    ADD CONSTRAINT kinguin_orders_kinguin_order_id_key UNIQUE (kinguin_order_id);

ALTER TABLE ONLY public.kinguin_orders
    ADD CONSTRAINT kinguin_orders_pkey PRIMARY KEY (order_id);

ALTER TABLE ONLY public.order_access_tokens
    ADD CONSTRAINT order_access_tokens_pkey PRIMARY KEY (token_hash);

ALTER TABLE ONLY public.order_events
    ADD CONSTRAINT order_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.order_idempotency_keys
    ADD CONSTRAINT order_idempotency_keys_pkey PRIMARY KEY (scope, key);

ALTER TABLE ONLY public.order_items
    ADD CONSTRAINT order_items_pkey PRIMARY KEY (order_id, product_id);

ALTER TABLE ONLY public.order_status_transitions
    ADD CONSTRAINT order_status_transitions_pkey PRIMARY KEY (from_status, to_status);

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_idempotency_key_key UNIQUE (idempotency_key);

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_invoice_id_key UNIQUE (invoice_id);

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.payment_acceptances
    ADD CONSTRAINT payment_acceptances_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.payment_policy
    ADD CONSTRAINT payment_policy_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_pkey PRIMARY KEY (payment_id);

ALTER TABLE ONLY public.procrastinate_events
    ADD CONSTRAINT procrastinate_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.procrastinate_jobs
    ADD CONSTRAINT procrastinate_jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_unique UNIQUE (task_name, periodic_id, defer_timestamp);

ALTER TABLE ONLY public.procrastinate_workers
    ADD CONSTRAINT procrastinate_workers_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.products
    ADD CONSTRAINT products_pkey PRIMARY KEY (product_id);

ALTER TABLE ONLY public.rate_limit_buckets
    ADD CONSTRAINT rate_limit_buckets_pkey PRIMARY KEY (bucket);

ALTER TABLE ONLY public.recovery_request_orders
    ADD CONSTRAINT recovery_request_orders_pkey PRIMARY KEY (request_id, order_id);

ALTER TABLE ONLY public.recovery_requests
    ADD CONSTRAINT recovery_requests_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.refunds
    ADD CONSTRAINT refunds_order_id_key UNIQUE (order_id);

ALTER TABLE ONLY public.refunds
    ADD CONSTRAINT refunds_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.vault_canaries
    ADD CONSTRAINT vault_canaries_pkey PRIMARY KEY (master_key_id);

ALTER TABLE ONLY public.webhook_attempts
    ADD CONSTRAINT webhook_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (endpoint_id, message_id);

ALTER TABLE ONLY public.webhook_endpoint_secrets
    ADD CONSTRAINT webhook_endpoint_secrets_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_provider_dedup_key_key UNIQUE (provider, dedup_key);

ALTER TABLE ONLY public.webhook_messages
    ADD CONSTRAINT webhook_messages_msg_id_key UNIQUE (msg_id);

ALTER TABLE ONLY public.webhook_messages
    ADD CONSTRAINT webhook_messages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_outcomes
    ADD CONSTRAINT webhook_outcomes_pkey PRIMARY KEY (outcome);

ALTER TABLE ONLY public.yoyo_lock
    ADD CONSTRAINT yoyo_lock_pkey PRIMARY KEY (locked);

CREATE INDEX admin_audit_log_order_idx ON public.admin_audit_log USING btree (order_id, id);

CREATE INDEX idx_procrastinate_jobs_worker_not_null ON public.procrastinate_jobs USING btree (worker_id) WHERE ((worker_id IS NOT NULL) AND (status = 'doing'::public.procrastinate_job_status));

CREATE INDEX idx_procrastinate_workers_last_heartbeat ON public.procrastinate_workers USING btree (last_heartbeat);

CREATE INDEX key_access_events_order_idx ON public.key_access_events USING btree (order_id, key_id, id);

CREATE INDEX key_delivery_logs_expiry_idx ON public.key_delivery_logs USING btree (expires_at) WHERE (status = ANY (ARRAY['stored'::text, 'accessed'::text]));

CREATE INDEX key_delivery_logs_master_key_idx ON public.key_delivery_logs USING btree (master_key_id);

CREATE INDEX key_replacements_status_idx ON public.key_replacements USING btree (status) WHERE (status = ANY (ARRAY['requested'::text, 'placed'::text, 'failed'::text]));

CREATE INDEX kinguin_calls_order_idx ON public.kinguin_calls USING btree (order_id, id);

CREATE INDEX kinguin_calls_replacement_idx ON public.kinguin_calls USING btree (replacement_id) WHERE (replacement_id IS NOT NULL);

CREATE UNIQUE INDEX kinguin_key_returns_one_request ON public.kinguin_key_returns USING btree (order_id) WHERE (outcome = 'requested'::text);

CREATE INDEX kinguin_key_returns_order_idx ON public.kinguin_key_returns USING btree (order_id, id);

CREATE INDEX order_access_tokens_order_idx ON public.order_access_tokens USING btree (order_id);

CREATE INDEX order_events_order_idx ON public.order_events USING btree (order_id, id);

CREATE INDEX orders_created_idx ON public.orders USING btree (created_at DESC, id DESC);

CREATE INDEX orders_email_idx ON public.orders USING btree (lower(email));

CREATE INDEX orders_paid_unfulfilled_idx ON public.orders USING btree (paid_at) WHERE ((status = 'paid'::text) AND (fulfillment_status <> 'fulfilled'::text));

CREATE INDEX orders_user_created_idx ON public.orders USING btree (user_id, created_at DESC, id DESC) WHERE (user_id IS NOT NULL);

CREATE INDEX payment_acceptances_order_idx ON public.payment_acceptances USING btree (order_id, id);

CREATE INDEX payments_created_idx ON public.payments USING btree (created_at DESC, payment_id DESC);

CREATE INDEX payments_not_final_idx ON public.payments USING btree (updated_at) WHERE (status = ANY (ARRAY['waiting'::text, 'confirming'::text, 'confirmed'::text, 'sending'::text]));

CREATE INDEX payments_order_idx ON public.payments USING btree (order_id);

CREATE INDEX payments_status_created_idx ON public.payments USING btree (status, created_at DESC, payment_id DESC);

CREATE INDEX procrastinate_events_job_id_fkey_v1 ON public.procrastinate_events USING btree (job_id);

CREATE INDEX procrastinate_jobs_id_lock_idx_v1 ON public.procrastinate_jobs USING btree (id, lock) WHERE (status = ANY (ARRAY['todo'::public.procrastinate_job_status, 'doing'::public.procrastinate_job_status]));

CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON public.procrastinate_jobs USING btree (lock) WHERE (status = 'doing'::public.procrastinate_job_status);

CREATE INDEX procrastinate_jobs_priority_idx_v1 ON public.procrastinate_jobs USING btree (priority DESC, id) WHERE (status = 'todo'::public.procrastinate_job_status);

CREATE INDEX procrastinate_jobs_queue_name_idx_v1 ON public.procrastinate_jobs USING btree (queue_name);

CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1 ON public.procrastinate_jobs USING btree (queueing_lock) WHERE (status = 'todo'::public.procrastinate_job_status);

CREATE INDEX procrastinate_periodic_defers_job_id_fkey_v1 ON public.procrastinate_periodic_defers USING btree (job_id);

CREATE INDEX recovery_request_orders_order_idx ON public.recovery_request_orders USING btree (order_id);

CREATE INDEX recovery_requests_email_idx ON public.recovery_requests USING btree (email, requested_at);

CREATE INDEX webhook_attempts_delivery_idx ON public.webhook_attempts USING btree (endpoint_id, message_id, id);

CREATE INDEX webhook_deliveries_failed_idx ON public.webhook_deliveries USING btree (updated_at) WHERE (status = 'failed'::text);

CREATE INDEX webhook_deliveries_pair_idx ON public.webhook_deliveries USING btree (endpoint_id, order_id, message_id) WHERE (status = 'pending'::text);

CREATE INDEX webhook_deliveries_pending_idx ON public.webhook_deliveries USING btree (created_at) WHERE (status = 'pending'::text);

CREATE INDEX webhook_endpoint_secrets_endpoint_idx ON public.webhook_endpoint_secrets USING btree (endpoint_id, id);

CREATE INDEX webhook_endpoint_secrets_master_key_idx ON public.webhook_endpoint_secrets USING btree (master_key_id);

CREATE INDEX webhook_events_attention_idx ON public.webhook_events USING btree (received_at) WHERE needs_attention;

CREATE INDEX webhook_events_external_idx ON public.webhook_events USING btree (provider, external_id, id);

CREATE INDEX webhook_events_order_idx ON public.webhook_events USING btree (order_id, id) WHERE (order_id IS NOT NULL);

CREATE INDEX webhook_messages_created_idx ON public.webhook_messages USING btree (created_at);

CREATE INDEX webhook_messages_order_idx ON public.webhook_messages USING btree (order_id, id);

CREATE TRIGGER admin_audit_log_append_only BEFORE DELETE OR UPDATE ON public.admin_audit_log FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER admin_audit_log_no_truncate BEFORE TRUNCATE ON public.admin_audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER email_outbox_guard BEFORE UPDATE ON public.email_outbox FOR EACH ROW EXECUTE FUNCTION public.bitloot_email_outbox_guard();

CREATE TRIGGER email_outbox_no_delete BEFORE DELETE ON public.email_outbox FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER email_outbox_no_truncate BEFORE TRUNCATE ON public.email_outbox FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER email_outbox_touch BEFORE UPDATE ON public.email_outbox FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER key_access_events_append_only BEFORE DELETE OR UPDATE ON public.key_access_events FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_access_events_no_truncate BEFORE TRUNCATE ON public.key_access_events FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_delivery_logs_guard BEFORE UPDATE ON public.key_delivery_logs FOR EACH ROW EXECUTE FUNCTION public.bitloot_key_delivery_logs_guard();

CREATE TRIGGER key_delivery_logs_no_delete BEFORE DELETE ON public.key_delivery_logs FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_delivery_logs_no_truncate BEFORE TRUNCATE ON public.key_delivery_logs FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_delivery_logs_touch BEFORE UPDATE ON public.key_delivery_logs FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER key_replacements_guard BEFORE UPDATE ON public.key_replacements FOR EACH ROW EXECUTE FUNCTION public.bitloot_key_replacements_guard();

CREATE TRIGGER key_replacements_no_delete BEFORE DELETE ON public.key_replacements FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_replacements_no_truncate BEFORE TRUNCATE ON public.key_replacements FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER key_replacements_touch BEFORE UPDATE ON public.key_replacements FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER key_replacements_webhook_events AFTER UPDATE ON public.key_replacements FOR EACH ROW EXECUTE FUNCTION public.bitloot_key_replacements_webhook_events();

CREATE TRIGGER kinguin_calls_append_only BEFORE DELETE OR UPDATE ON public.kinguin_calls FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_calls_no_truncate BEFORE TRUNCATE ON public.kinguin_calls FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_key_returns_append_only BEFORE DELETE OR UPDATE ON public.kinguin_key_returns FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_key_returns_no_truncate BEFORE TRUNCATE ON public.kinguin_key_returns FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_orders_guard BEFORE UPDATE ON public.kinguin_orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_kinguin_orders_guard();

CREATE TRIGGER kinguin_orders_no_delete BEFORE DELETE ON public.kinguin_orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_orders_no_truncate BEFORE TRUNCATE ON public.kinguin_orders FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER kinguin_orders_touch BEFORE UPDATE ON public.kinguin_orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER order_events_append_only BEFORE DELETE OR UPDATE ON public.order_events FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON public.order_events FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER orders_log_events AFTER INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_orders_log_events();

CREATE TRIGGER orders_no_delete BEFORE DELETE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER orders_status_guard BEFORE INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_orders_status_guard();

CREATE TRIGGER orders_status_guard_money BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_orders_money_guard();

CREATE TRIGGER orders_webhook_events AFTER UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_orders_webhook_events();

CREATE TRIGGER payment_acceptances_append_only BEFORE DELETE OR UPDATE ON public.payment_acceptances FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payment_acceptances_no_truncate BEFORE TRUNCATE ON public.payment_acceptances FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payment_policy_no_delete BEFORE DELETE ON public.payment_policy FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payment_policy_no_truncate BEFORE TRUNCATE ON public.payment_policy FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payment_policy_touch BEFORE UPDATE ON public.payment_policy FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER payments_guard BEFORE UPDATE ON public.payments FOR EACH ROW EXECUTE FUNCTION public.bitloot_payments_guard();

CREATE TRIGGER payments_no_delete BEFORE DELETE ON public.payments FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON public.payments FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER payments_touch BEFORE UPDATE ON public.payments FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER procrastinate_jobs_notify_queue_job_aborted_v1 AFTER UPDATE OF abort_requested ON public.procrastinate_jobs FOR EACH ROW WHEN (((old.abort_requested = false) AND (new.abort_requested = true) AND (new.status = 'doing'::public.procrastinate_job_status))) EXECUTE FUNCTION public.procrastinate_notify_queue_abort_job_v1();

CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 AFTER INSERT ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::public.procrastinate_job_status)) EXECUTE FUNCTION public.procrastinate_notify_queue_job_inserted_v1();

CREATE TRIGGER procrastinate_trigger_abort_requested_events_v1 AFTER UPDATE OF abort_requested ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.abort_requested = true)) EXECUTE FUNCTION public.procrastinate_trigger_abort_requested_events_procedure_v1();

CREATE TRIGGER procrastinate_trigger_delete_jobs_v1 BEFORE DELETE ON public.procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION public.procrastinate_unlink_periodic_defers_v1();

CREATE TRIGGER procrastinate_trigger_scheduled_events_v1 AFTER INSERT OR UPDATE ON public.procrastinate_jobs FOR EACH ROW WHEN (((new.scheduled_at IS NOT NULL) AND (new.status = 'todo'::public.procrastinate_job_status))) EXECUTE FUNCTION public.procrastinate_trigger_function_scheduled_events_v1();

CREATE TRIGGER procrastinate_trigger_status_events_insert_v1 AFTER INSERT ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::public.procrastinate_job_status)) EXECUTE FUNCTION public.procrastinate_trigger_function_status_events_insert_v1();

CREATE TRIGGER procrastinate_trigger_status_events_update_v1 AFTER UPDATE OF status ON public.procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION public.procrastinate_trigger_function_status_events_update_v1();

CREATE TRIGGER products_touch BEFORE UPDATE ON public.products FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER recovery_request_orders_append_only BEFORE DELETE OR UPDATE ON public.recovery_request_orders FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER recovery_request_orders_no_truncate BEFORE TRUNCATE ON public.recovery_request_orders FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER recovery_requests_append_only BEFORE DELETE OR UPDATE ON public.recovery_requests FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER recovery_requests_no_truncate BEFORE TRUNCATE ON public.recovery_requests FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER refunds_append_only BEFORE DELETE OR UPDATE ON public.refunds FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON public.refunds FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_attempts_append_only BEFORE DELETE OR UPDATE ON public.webhook_attempts FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_attempts_no_truncate BEFORE TRUNCATE ON public.webhook_attempts FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_deliveries_no_delete BEFORE DELETE ON public.webhook_deliveries FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_deliveries_touch BEFORE UPDATE ON public.webhook_deliveries FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER webhook_endpoint_secrets_no_delete BEFORE DELETE ON public.webhook_endpoint_secrets FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_endpoints_no_delete BEFORE DELETE ON public.webhook_endpoints FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_endpoints_touch BEFORE UPDATE ON public.webhook_endpoints FOR EACH ROW EXECUTE FUNCTION public.bitloot_touch_updated_at();

CREATE TRIGGER webhook_events_guard BEFORE UPDATE ON public.webhook_events FOR EACH ROW EXECUTE FUNCTION public.bitloot_webhook_events_guard();

CREATE TRIGGER webhook_events_no_delete BEFORE DELETE ON public.webhook_events FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_events_no_truncate BEFORE TRUNCATE ON public.webhook_events FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_messages_append_only BEFORE DELETE OR UPDATE ON public.webhook_messages FOR EACH ROW EXECUTE FUNCTION public.bitloot_reject_change();

CREATE TRIGGER webhook_messages_no_truncate BEFORE TRUNCATE ON public.webhook_messages FOR EACH STATEMENT EXECUTE FUNCTION public.bitloot_reject_change();

ALTER TABLE ONLY public.admin_audit_log
    ADD CONSTRAINT admin_audit_log_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.email_outbox
    ADD CONSTRAINT email_outbox_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.email_outbox
    ADD CONSTRAINT email_outbox_recovery_request_id_fkey FOREIGN KEY (recovery_request_id) REFERENCES public.recovery_requests(id);

ALTER TABLE ONLY public.key_access_events
    ADD CONSTRAINT key_access_events_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.key_delivery_logs
    ADD CONSTRAINT key_delivery_logs_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_order_id_key_id_fkey FOREIGN KEY (order_id, key_id) REFERENCES public.key_delivery_logs(order_id, key_id);

ALTER TABLE ONLY public.key_replacements
    ADD CONSTRAINT key_replacements_product_id_fkey FOREIGN KEY (product_id) REFERENCES public.products(product_id);

ALTER TABLE ONLY public.kinguin_calls
    ADD CONSTRAINT kinguin_calls_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.kinguin_calls
    ADD CONSTRAINT kinguin_calls_replacement_id_fkey FOREIGN KEY (replacement_id) REFERENCES public.key_replacements(id);

ALTER TABLE ONLY public.kinguin_key_returns
    ADD CONSTRAINT kinguin_key_returns_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.kinguin_orders
    ADD CONSTRAINT kinguin_orders_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.order_access_tokens
    ADD CONSTRAINT order_access_tokens_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.order_events
    ADD CONSTRAINT order_events_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.order_idempotency_keys
    ADD CONSTRAINT order_idempotency_keys_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id) DEFERRABLE INITIALLY DEFERRED;

ALTER TABLE ONLY public.order_items
    ADD CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.order_items
    ADD CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES public.products(product_id);

ALTER TABLE ONLY public.payment_acceptances
    ADD CONSTRAINT payment_acceptances_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.procrastinate_events
    ADD CONSTRAINT procrastinate_events_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.procrastinate_jobs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.procrastinate_jobs
    ADD CONSTRAINT procrastinate_jobs_worker_id_fkey FOREIGN KEY (worker_id) REFERENCES public.procrastinate_workers(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.procrastinate_jobs(id);

ALTER TABLE ONLY public.recovery_request_orders
    ADD CONSTRAINT recovery_request_orders_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.recovery_request_orders
    ADD CONSTRAINT recovery_request_orders_request_id_fkey FOREIGN KEY (request_id) REFERENCES public.recovery_requests(id);

ALTER TABLE ONLY public.refunds
    ADD CONSTRAINT refunds_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.webhook_attempts
    ADD CONSTRAINT webhook_attempts_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id);

ALTER TABLE ONLY public.webhook_attempts
    ADD CONSTRAINT webhook_attempts_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.webhook_messages(id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.webhook_messages(id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);

ALTER TABLE ONLY public.webhook_endpoint_secrets
    ADD CONSTRAINT webhook_endpoint_secrets_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_outcome_fkey FOREIGN KEY (outcome) REFERENCES public.webhook_outcomes(outcome);

ALTER TABLE ONLY public.webhook_messages
    ADD CONSTRAINT webhook_messages_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);
