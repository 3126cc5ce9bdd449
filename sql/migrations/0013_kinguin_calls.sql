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

-- bitloot_grant_roles() (0009) finds the append-only logs by their UPDATE guard, so
-- applying it again covers kinguin_calls.
-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
