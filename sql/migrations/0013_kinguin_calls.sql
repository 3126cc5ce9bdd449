-- Every Kinguin call made for an order is one append-only row (issue 14, item 3).
--
-- The Kinguin client reports each HTTP attempt (endpoint, outcome, HTTP status, error
-- code, latency, attempt number) to its hooks; the fulfillment domain collects the calls
-- of one pass for one order and inserts them in one batch when the pass ends, also when
-- it fails or raises (bitloot/fulfillment/calls.py). A crash of the worker process loses
-- at most the calls of the pass that was running.

CREATE TABLE kinguin_calls (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    endpoint    text NOT NULL CHECK (endpoint IN (
                    'place_order', 'get_order', 'find_order', 'get_keys', 'get_product',
                    'get_balance')),
    attempt     integer NOT NULL CHECK (attempt >= 1),
    outcome     text NOT NULL CHECK (outcome <> ''),
    http_status integer CHECK (http_status BETWEEN 100 AND 599),
    error_code  text,
    latency_ms  numeric(12, 3) NOT NULL CHECK (latency_ms >= 0),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kinguin_calls_order_idx ON kinguin_calls (order_id, id);

COMMENT ON TABLE kinguin_calls IS
    'Append-only log of every HTTP attempt made to Kinguin for an order (one row per '
    'attempt, retries included), written in one batch at the end of each fulfillment pass. '
    'A worker crash loses at most the calls of the pass that was running.';
COMMENT ON COLUMN kinguin_calls.id IS 'Row id; increases in the order the calls were made within a pass.';
COMMENT ON COLUMN kinguin_calls.order_id IS 'The order the call was made for.';
COMMENT ON COLUMN kinguin_calls.endpoint IS
    'Which Kinguin call: place_order, get_order, find_order (search by orderExternalId), '
    'get_keys (one row per page), get_product or get_balance.';
COMMENT ON COLUMN kinguin_calls.attempt IS
    'The attempt number of this HTTP request within one client call (1 = first try; '
    'higher = a retry after a timeout, connection error, 429 or 5xx).';
COMMENT ON COLUMN kinguin_calls.outcome IS
    'ok, timeout, connection_error, rate_limited, server_error, or for a refusal '
    'Kinguin''s error kind (e.g. ProductUnavailable, InsufficientBalance, OrderNotFound).';
COMMENT ON COLUMN kinguin_calls.http_status IS
    'The HTTP status Kinguin answered; NULL when no response arrived (timeout, connection).';
COMMENT ON COLUMN kinguin_calls.error_code IS
    'Kinguin''s error kind (or ours: Timeout, Connection, InvalidResponse) when the attempt '
    'failed; NULL when it succeeded.';
COMMENT ON COLUMN kinguin_calls.latency_ms IS 'How long the attempt took, in milliseconds.';
COMMENT ON COLUMN kinguin_calls.at IS
    'When the row was written (the end of the pass; the calls of one pass share it).';

CREATE TRIGGER kinguin_calls_append_only BEFORE UPDATE OR DELETE ON kinguin_calls
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER kinguin_calls_no_truncate BEFORE TRUNCATE ON kinguin_calls
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Grants: kinguin_calls joins the append-only logs (INSERT, never UPDATE/DELETE)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION bitloot_grant_roles() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    schema_name text := current_schema();
    -- The application only reads these (the transition tables, the outcome list).
    app_read_only text[] := ARRAY[
        'order_status_transitions', 'fulfillment_status_transitions', 'webhook_outcomes'];
    -- Append-only logs: INSERT (the order_events trigger runs as the application), never
    -- UPDATE or DELETE; their triggers refuse those too (BL002).
    app_append_only text[] := ARRAY[
        'order_events', 'key_access_events', 'admin_audit_log', 'payment_acceptances',
        'kinguin_calls'];
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
COMMENT ON FUNCTION bitloot_grant_roles() IS
    'Re-applies every grant of bitloot_app and bitloot_auditor to the objects that exist '
    '(README, "Database roles"); false, with nothing granted, while either role is missing. '
    'Run by the migrations and by every `bitloot migrate`, as the owner of the schema.';
REVOKE EXECUTE ON FUNCTION bitloot_grant_roles() FROM PUBLIC;

-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
