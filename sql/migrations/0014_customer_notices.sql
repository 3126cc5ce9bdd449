-- The shop's own exceptions, part one (issue 15): what every later piece shares.
--
--   * an underpaid order may become paid: the orders trigger still demands evidence
--     (bitloot_payment_evidence: a covering payment, or an admin's payment_acceptances row);
--   * the email outbox carries customer notices besides the delivery email, one per kind
--     per order (generation 1; a key replacement numbers its notices), and recovery
--     emails, which belong to an address rather than an order;
--   * a recovery request (POST /orders/recover) is an append-only audit row, with the
--     orders it re-sent links for;
--   * a delivered key can be revoked (the order was refunded, or the key was replaced):
--     download-link serves only live keys.

-- ---------------------------------------------------------------------------------------
-- underpaid -> paid, with evidence only
-- ---------------------------------------------------------------------------------------

INSERT INTO order_status_transitions (from_status, to_status) VALUES ('underpaid', 'paid');

-- ---------------------------------------------------------------------------------------
-- Recovery requests
-- ---------------------------------------------------------------------------------------

CREATE TABLE recovery_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    client_ip    inet,
    outcome      text NOT NULL CHECK (outcome IN ('sent', 'no_orders', 'rate_limited')),
    order_count  integer NOT NULL DEFAULT 0 CHECK (order_count >= 0),
    requested_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE recovery_requests IS
    'Append-only: every POST /orders/recover, whatever it found. The HTTP answer is the same '
    'for all of them (no enumeration); this row says what really happened.';
COMMENT ON COLUMN recovery_requests.id IS 'Request id (identity).';
COMMENT ON COLUMN recovery_requests.email IS 'The address asked for, lower-cased and trimmed.';
COMMENT ON COLUMN recovery_requests.client_ip IS 'Where the request came from.';
COMMENT ON COLUMN recovery_requests.outcome IS
    'sent (a recovery email was queued), no_orders (nothing to send: unknown address or no '
    'fulfilled order within the retention period), rate_limited (too many requests for the '
    'address or from the client).';
COMMENT ON COLUMN recovery_requests.order_count IS 'How many orders the email lists.';
COMMENT ON COLUMN recovery_requests.requested_at IS 'When it was asked.';
CREATE INDEX recovery_requests_email_idx ON recovery_requests (email, requested_at);
CREATE TRIGGER recovery_requests_append_only BEFORE UPDATE OR DELETE ON recovery_requests
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER recovery_requests_no_truncate BEFORE TRUNCATE ON recovery_requests
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

CREATE TABLE recovery_request_orders (
    request_id bigint NOT NULL REFERENCES recovery_requests (id),
    order_id   uuid NOT NULL REFERENCES orders (id),
    PRIMARY KEY (request_id, order_id)
);
COMMENT ON TABLE recovery_request_orders IS
    'Append-only: the orders a recovery request sent fresh links for (their earlier emailed '
    'links were revoked).';
COMMENT ON COLUMN recovery_request_orders.request_id IS 'The recovery request.';
COMMENT ON COLUMN recovery_request_orders.order_id IS 'An order it listed.';
CREATE INDEX recovery_request_orders_order_idx ON recovery_request_orders (order_id);
CREATE TRIGGER recovery_request_orders_append_only BEFORE UPDATE OR DELETE
    ON recovery_request_orders FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER recovery_request_orders_no_truncate BEFORE TRUNCATE ON recovery_request_orders
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- The outbox: notices and recovery emails
-- ---------------------------------------------------------------------------------------

ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_kind_check;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_kind_check CHECK (kind IN (
    'delivery', 'payment_received', 'underpaid', 'undeliverable', 'refunded',
    'key_replaced', 'recovery'));
ALTER TABLE email_outbox ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE email_outbox ADD COLUMN recovery_request_id bigint UNIQUE
    REFERENCES recovery_requests (id);
ALTER TABLE email_outbox ADD COLUMN details jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_recovery_has_no_order CHECK (
    CASE WHEN kind = 'recovery' THEN order_id IS NULL AND recovery_request_id IS NOT NULL
         ELSE order_id IS NOT NULL AND recovery_request_id IS NULL END);
COMMENT ON COLUMN email_outbox.order_id IS
    'The order the email is about; NULL only for a recovery email (see recovery_request_id).';
COMMENT ON COLUMN email_outbox.kind IS
    'Which email: delivery (the key-page link); the customer notices payment_received (a '
    'receipt), underpaid, undeliverable (refund coming), refunded, key_replaced; recovery '
    '(fresh links for every order of an address, POST /orders/recover).';
COMMENT ON COLUMN email_outbox.generation IS
    '1 for the first; each admin resend of the delivery email adds the next; a key_replaced '
    'notice carries the number of the replacement it announces.';
COMMENT ON COLUMN email_outbox.recovery_request_id IS
    'For a recovery email: the recovery_requests row it answers (one email per request).';
COMMENT ON COLUMN email_outbox.details IS
    'What the notice says beyond the order (amounts, the replaced key id), fixed when it was '
    'queued. Never a key, a token or a link.';

CREATE OR REPLACE FUNCTION bitloot_email_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION bitloot_email_outbox_guard() IS
    'email_outbox: order_id, kind, generation, to_address, recovery_request_id, details and '
    'created_at never change; a sent email stays sent (status, message_id, sent_at); attempts '
    'only grow (BL005).';

-- ---------------------------------------------------------------------------------------
-- Revoked keys
-- ---------------------------------------------------------------------------------------

ALTER TABLE key_delivery_logs ADD COLUMN revoked_at timestamptz;
ALTER TABLE key_delivery_logs ADD COLUMN revoked_reason text
    CHECK (revoked_reason IN ('refunded', 'replaced'));
ALTER TABLE key_delivery_logs ADD COLUMN replaces_key_id text;
ALTER TABLE key_delivery_logs ADD CONSTRAINT key_delivery_logs_revocation_has_reason
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL));
COMMENT ON COLUMN key_delivery_logs.revoked_at IS
    'When the key stopped being served (download-link answers only live keys); NULL while '
    'it is live. Its object is still deleted by the retention rule (expires_at).';
COMMENT ON COLUMN key_delivery_logs.revoked_reason IS
    'refunded (the order was refunded) or replaced (an admin replaced a faulty key).';
COMMENT ON COLUMN key_delivery_logs.replaces_key_id IS
    'For a replacement key: the key_id of the faulty key it replaces; NULL for a first key.';

CREATE OR REPLACE FUNCTION bitloot_key_delivery_logs_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION bitloot_key_delivery_logs_guard() IS
    'key_delivery_logs: id, order_id, key_id, product_id, object_key, content_type, '
    'replaces_key_id and created_at never change; wrapped_data_key only together with '
    'master_key_id (a re-wrap, bitloot/vault/rotate.py); status only forward: stored, '
    'accessed, expired, deleted; a revocation is final (BL005).';

-- The views that show emails, recoveries and revoked keys (fulfillment_timeline,
-- needs_attention) are redefined once, with the rest of issue 15, in 0018.
