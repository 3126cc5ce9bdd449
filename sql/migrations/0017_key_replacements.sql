-- Faulty keys (issue 15, item 5): an admin replaces a delivered key with one bought anew.
--
-- POST /admin/orders/{orderId}/keys/{keyId}/replace inserts one key_replacements row (at
-- most one per faulty key), audits it and queues the `replace_key` job, in one
-- transaction. The job buys ONE key from Kinguin under the replacement's own
-- orderExternalId (`<order id>-r<number>`), with the crash-safety of the first purchase
-- (bitloot/fulfillment/purchase.py): placement_started_at is committed before buying, and
-- a retry that finds it set with no Kinguin order recorded searches Kinguin by that id
-- instead of buying again. When the key arrives it is stored like the first ones and, in
-- one transaction, its key_delivery_logs row is written (replaces_key_id = the faulty
-- key), the faulty key is revoked ('replaced'), the replacement is delivered and the
-- customer's key_replaced notice is queued.

CREATE TABLE key_replacements (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id             uuid NOT NULL REFERENCES orders (id),
    key_id               text NOT NULL,
    number               integer NOT NULL CHECK (number >= 1),
    admin_id             text NOT NULL CHECK (length(admin_id) BETWEEN 1 AND 500),
    reason               text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    product_id           text NOT NULL REFERENCES products (product_id),
    external_id          text NOT NULL UNIQUE,
    placement_started_at timestamptz,
    kinguin_order_id     text UNIQUE,
    kinguin_status       text CHECK (kinguin_status IN (
                             'processing', 'completed', 'canceled', 'refunded')),
    polls                integer NOT NULL DEFAULT 0 CHECK (polls >= 0),
    new_key_id           text,
    status               text NOT NULL DEFAULT 'requested' CHECK (status IN (
                             'requested', 'placed', 'delivered', 'failed')),
    error                text CHECK (length(error) <= 500),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- A faulty key is replaced at most once (a replacement key may itself be replaced).
    UNIQUE (order_id, key_id),
    UNIQUE (order_id, number),
    FOREIGN KEY (order_id, key_id) REFERENCES key_delivery_logs (order_id, key_id),
    -- Never the first purchase's orderExternalId (the order id), never another's.
    CONSTRAINT key_replacements_external_id_check
        CHECK (external_id = order_id::text || '-r' || number::text),
    CONSTRAINT key_replacements_placed_has_order
        CHECK (status NOT IN ('placed', 'delivered') OR kinguin_order_id IS NOT NULL),
    CONSTRAINT key_replacements_delivered_has_key
        CHECK ((status = 'delivered') = (new_key_id IS NOT NULL)),
    CONSTRAINT key_replacements_failed_has_error
        CHECK ((status = 'failed') = (error IS NOT NULL)),
    CONSTRAINT key_replacements_bought_after_marker
        CHECK (kinguin_order_id IS NULL OR placement_started_at IS NOT NULL)
);
COMMENT ON TABLE key_replacements IS
    'Admin replacements of faulty keys (POST /admin/orders/{orderId}/keys/{keyId}/replace): '
    'one row per faulty key at most, each bought once from Kinguin under its own '
    'orderExternalId. SELECT * FROM key_replacements WHERE status = ''failed'' lists the '
    'ones an admin must look at (the order stays fulfilled, the faulty key stays live).';
COMMENT ON COLUMN key_replacements.id IS 'Replacement id (identity); the replace_key job''s argument.';
COMMENT ON COLUMN key_replacements.order_id IS 'The order whose key is replaced.';
COMMENT ON COLUMN key_replacements.key_id IS
    'The faulty key (key_delivery_logs.key_id of the order); revoked (''replaced'') when the '
    'new key is delivered.';
COMMENT ON COLUMN key_replacements.number IS
    'The order''s replacements numbered 1, 2, ...: the suffix of external_id and the '
    'generation of the key_replaced notice.';
COMMENT ON COLUMN key_replacements.admin_id IS 'The admin who asked (JWT sub).';
COMMENT ON COLUMN key_replacements.reason IS 'Why, as the admin wrote it (also in admin_audit_log).';
COMMENT ON COLUMN key_replacements.product_id IS 'The product bought again (the faulty key''s).';
COMMENT ON COLUMN key_replacements.external_id IS
    'The orderExternalId of the replacement''s Kinguin order: <order id>-r<number>, never the '
    'order id itself (the first purchase''s), unique across the Kinguin account.';
COMMENT ON COLUMN key_replacements.placement_started_at IS
    'Committed before the Kinguin order is placed: from then on one may exist even if it was '
    'never recorded, so a retry searches Kinguin by external_id before buying '
    '(bitloot/fulfillment/purchase.py).';
COMMENT ON COLUMN key_replacements.kinguin_order_id IS 'Kinguin''s orderId of the replacement''s order, once recorded.';
COMMENT ON COLUMN key_replacements.kinguin_status IS
    'What Kinguin last said about that order: processing, completed, canceled or refunded.';
COMMENT ON COLUMN key_replacements.polls IS 'How many times the job polled Kinguin for the key.';
COMMENT ON COLUMN key_replacements.new_key_id IS 'The replacement key (key_delivery_logs.key_id, its replaces_key_id = key_id) once delivered.';
COMMENT ON COLUMN key_replacements.status IS
    'requested (queued, maybe being bought), placed (the Kinguin order is recorded), '
    'delivered (the new key is stored and live, the faulty one revoked), failed (see error). '
    'Only forward; delivered and failed are final.';
COMMENT ON COLUMN key_replacements.error IS
    'Why it failed (Kinguin refused or canceled, no key delivered, the order was refunded '
    'meanwhile), for an admin; NULL unless failed.';
COMMENT ON COLUMN key_replacements.created_at IS 'When the admin asked.';
COMMENT ON COLUMN key_replacements.updated_at IS 'When the row last changed.';

CREATE INDEX key_replacements_status_idx ON key_replacements (status)
    WHERE status IN ('requested', 'placed', 'failed');
CREATE TRIGGER key_replacements_touch BEFORE UPDATE ON key_replacements
    FOR EACH ROW EXECUTE FUNCTION bitloot_touch_updated_at();

CREATE FUNCTION bitloot_key_replacements_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION bitloot_key_replacements_guard() IS
    'key_replacements: order, key, number, admin, reason, product, external_id and created_at '
    'never change; placement_started_at, kinguin_order_id and new_key_id are set once; status '
    'only forward (requested -> placed -> delivered, requested|placed -> failed), delivered '
    'and failed are final (BL005).';
CREATE TRIGGER key_replacements_guard BEFORE UPDATE ON key_replacements
    FOR EACH ROW EXECUTE FUNCTION bitloot_key_replacements_guard();
CREATE TRIGGER key_replacements_no_delete BEFORE DELETE ON key_replacements
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER key_replacements_no_truncate BEFORE TRUNCATE ON key_replacements
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- The Kinguin calls of a replacement are the order's calls, marked with the replacement
-- ---------------------------------------------------------------------------------------

ALTER TABLE kinguin_calls ADD COLUMN replacement_id bigint REFERENCES key_replacements (id);
COMMENT ON COLUMN kinguin_calls.replacement_id IS
    'The key replacement the call was made for (key_replacements.id); NULL for the order''s '
    'first purchase.';
CREATE INDEX kinguin_calls_replacement_idx ON kinguin_calls (replacement_id)
    WHERE replacement_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- Kinguin webhooks about a replacement's order
-- ---------------------------------------------------------------------------------------

INSERT INTO webhook_outcomes (outcome, provider, meaning) VALUES
    ('replacement_enqueued', 'kinguin',
     'A key replacement''s Kinguin order changed: its replace_key job was queued to look again.'),
    ('replacement_noted', 'kinguin',
     'A key replacement''s Kinguin order is processing: nothing to do yet.'),
    ('replacement_settled', 'kinguin',
     'A key replacement already delivered or failed: nothing done; flagged on cancel/refund.');

-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
