-- Database roles (issue 14): the processes stop logging in as the owner of the schema.
--
--   bitloot_app      what `bitloot serve` and `bitloot worker` need: SELECT, INSERT, UPDATE
--                    on the tables they write (DELETE only where the code deletes: rate
--                    limit buckets and procrastinate's own tables), INSERT without UPDATE
--                    or DELETE on the append-only logs, SELECT only on the lookup tables,
--                    USAGE on the sequences, EXECUTE on the functions (procrastinate's
--                    too). It owns nothing, so it cannot TRUNCATE, DROP, ALTER or
--                    `ALTER TABLE ... DISABLE TRIGGER` (the state-machine guards hold).
--   bitloot_auditor  read-only: every view, and every column of every table except the
--                    secret ones (wrapped data keys, webhook bodies, token hashes, the vault
--                    canaries, the rate-limit buckets).
--
-- Both are NOLOGIN group roles: logins are made members of them (README, "Database roles").
-- Roles belong to the whole cluster, not to this database, so this migration creates them
-- only when they are missing and the migrating role may (a superuser or CREATEROLE);
-- otherwise it leaves a NOTICE and `bitloot migrate` prints the SQL an administrator runs
-- once (bitloot/db/roles.sql). Either way the schema is complete; only the grants wait.
--
-- The grants live in one function, bitloot_grant_roles(), which (re)applies every one of
-- them from scratch to whatever tables, views, sequences and functions exist. It runs at
-- the end of this migration, at the end of every migration that adds objects, and after
-- every `bitloot migrate` (bitloot/db/migrate.py), so a table added later is covered as
-- soon as it is migrated, and a role created after the migrations gets its rights from
-- the next `bitloot migrate`.

DO $$
DECLARE
    may_create boolean;
    role_name text;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOREACH role_name IN ARRAY ARRAY['bitloot_app', 'bitloot_auditor'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            CONTINUE;
        ELSIF may_create THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        ELSE
            RAISE NOTICE 'role % does not exist and % may not create it: an administrator '
                'runs the SQL `bitloot migrate` prints, then `bitloot migrate` again',
                role_name, current_user;
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION bitloot_grant_roles() RETURNS boolean LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION bitloot_grant_roles() IS
    'Re-applies every grant of bitloot_app and bitloot_auditor to the objects that exist '
    '(README, "Database roles"); false, with nothing granted, while either role is missing. '
    'Run by the migrations and by every `bitloot migrate`, as the owner of the schema.';
REVOKE EXECUTE ON FUNCTION bitloot_grant_roles() FROM PUBLIC;

-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
