-- The shop's own exceptions, part two (issue 15, items 2 and 3): refunds and underpaid orders.
--
--   * a refund is an append-only row, one per order (POST /admin/orders/{id}/refund): the
--     payout an admin made in NOWPayments' dashboard, its reference, amount and reason;
--   * what a customer paid for an order, in the order's currency, is one SQL function
--     (bitloot_amount_paid): the refund's default amount and the refunds_due view ask it;
--   * every request to Kinguin to take back the keys of a refunded order (at most one per
--     order, Kinguin allows one), and every decision not to ask, is an append-only row of
--     kinguin_key_returns;
--   * refunds_due lists what an admin must settle: paid orders that cannot be delivered,
--     and underpaid orders, with the amount due (GET /admin/refunds-due reads it).

-- ---------------------------------------------------------------------------------------
-- Refunds
-- ---------------------------------------------------------------------------------------

CREATE TABLE refunds (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid NOT NULL UNIQUE REFERENCES orders (id),
    amount     numeric(12, 2) NOT NULL CHECK (amount > 0),
    currency   text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    reference  text NOT NULL CHECK (length(btrim(reference)) BETWEEN 1 AND 200),
    reason     text NOT NULL CHECK (length(btrim(reason)) > 0),
    admin_id   text NOT NULL CHECK (length(admin_id) > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE refunds IS
    'Append-only: the refund of an order, at most one per order (POST /admin/orders/{id}/'
    'refund). The money itself is paid out by an admin in NOWPayments'' dashboard; this row '
    'records that payout. Written in the transaction that moves the order to refunded.';
COMMENT ON COLUMN refunds.id IS 'Refund id (identity).';
COMMENT ON COLUMN refunds.order_id IS 'The refunded order (one refund per order).';
COMMENT ON COLUMN refunds.amount IS
    'How much was refunded, in the order''s currency; more than 0, at most the order total. '
    'Defaults to bitloot_amount_paid(order_id).';
COMMENT ON COLUMN refunds.currency IS 'The order''s currency (ISO 4217, lower case).';
COMMENT ON COLUMN refunds.reference IS
    'The reference of the payout made in NOWPayments'' dashboard (required).';
COMMENT ON COLUMN refunds.reason IS 'Why, as the admin wrote it (required).';
COMMENT ON COLUMN refunds.admin_id IS 'The JWT sub of the admin who refunded it.';
COMMENT ON COLUMN refunds.created_at IS 'When the refund was recorded.';
CREATE TRIGGER refunds_append_only BEFORE UPDATE OR DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON refunds
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- ---------------------------------------------------------------------------------------
-- Key returns to Kinguin
-- ---------------------------------------------------------------------------------------

CREATE TABLE kinguin_key_returns (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         uuid NOT NULL REFERENCES orders (id),
    kinguin_order_id text,
    outcome          text NOT NULL CHECK (outcome IN
                         ('requested', 'returned', 'refused', 'skipped', 'error')),
    detail           text NOT NULL DEFAULT '',
    key_statuses     jsonb NOT NULL DEFAULT '[]'::jsonb,
    at               timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kinguin_key_returns IS
    'Append-only: what the key-return job of a refunded order did (bitloot/fulfillment/'
    'returns.py). Kinguin allows one return request per order (POST /v2/order/{id}/keys/'
    'return): a requested row is committed before the request is sent, so a second job '
    'never sends another; the answer follows as returned, refused or error. skipped: no '
    'request was sent, and why.';
COMMENT ON COLUMN kinguin_key_returns.id IS 'Row id (identity): the order of the decisions.';
COMMENT ON COLUMN kinguin_key_returns.order_id IS 'The refunded order.';
COMMENT ON COLUMN kinguin_key_returns.kinguin_order_id IS
    'The Kinguin order whose keys were (or would have been) returned; NULL when none was bought.';
COMMENT ON COLUMN kinguin_key_returns.outcome IS
    'requested (about to send the one request), returned (Kinguin answered 200), refused '
    '(Kinguin refused: NoKeysToReturn or another 4xx kind, in detail), error (no usable '
    'answer after the retries: whether the keys went back is unknown, see key_statuses), '
    'skipped (not asked: no Kinguin order, a key was revealed, more than 24 h since delivery, '
    'the Kinguin order was canceled or refunded).';
COMMENT ON COLUMN kinguin_key_returns.detail IS
    'Why: Kinguin''s error kind and detail, or the reason for skipping. Never a key.';
COMMENT ON COLUMN kinguin_key_returns.key_statuses IS
    'The keys as Kinguin reported them, [{"id": ..., "status": "RETURNED"}, ...] (ids and '
    'statuses only); [] when Kinguin said nothing about them.';
COMMENT ON COLUMN kinguin_key_returns.at IS 'When this was recorded.';
CREATE INDEX kinguin_key_returns_order_idx ON kinguin_key_returns (order_id, id);
-- The one request per order, in the database: a second `requested` row is refused.
CREATE UNIQUE INDEX kinguin_key_returns_one_request ON kinguin_key_returns (order_id)
    WHERE outcome = 'requested';
CREATE TRIGGER kinguin_key_returns_append_only BEFORE UPDATE OR DELETE ON kinguin_key_returns
    FOR EACH ROW EXECUTE FUNCTION bitloot_reject_change();
CREATE TRIGGER kinguin_key_returns_no_truncate BEFORE TRUNCATE ON kinguin_key_returns
    FOR EACH STATEMENT EXECUTE FUNCTION bitloot_reject_change();

-- The return request is a Kinguin call like the others: kinguin_calls records it.
ALTER TABLE kinguin_calls DROP CONSTRAINT kinguin_calls_endpoint_check;
ALTER TABLE kinguin_calls ADD CONSTRAINT kinguin_calls_endpoint_check CHECK (endpoint IN (
    'place_order', 'get_order', 'find_order', 'get_keys', 'get_product', 'get_balance',
    'return_keys'));
COMMENT ON COLUMN kinguin_calls.endpoint IS
    'Which Kinguin call: place_order, get_order, find_order (search by orderExternalId), '
    'get_keys (one row per page), get_product, get_balance or return_keys (the key return '
    'of a refunded order).';

-- ---------------------------------------------------------------------------------------
-- What a customer paid, in the order's currency: one rule
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION bitloot_amount_paid(p_order_id uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
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
COMMENT ON FUNCTION bitloot_amount_paid(uuid) IS
    'What the customer paid for the order, in its currency: the total when a payment covers '
    'it (bitloot_payment_evidence says payment, tolerance included); else the sum over the '
    'order''s payments that money reached (confirming, confirmed, sending, partially_paid, '
    'finished; re-deposits included) in the order currency of price_amount * least(1, '
    'actually_paid / pay_amount), rounded down to cents and capped at the total; 0 when '
    'nothing is known to have arrived. An admin''s acceptance is no money: an accepted order '
    'counts what arrived. NULL for an unknown order. The refund''s default amount and '
    'refunds_due.amount_due.';

-- ---------------------------------------------------------------------------------------
-- Orders whose money must be settled by an admin
-- ---------------------------------------------------------------------------------------

CREATE VIEW refunds_due AS
WITH due AS (
    SELECT o.id, 'underpaid: ' || coalesce(o.status_reason, 'less than the total arrived')
               || ' (accept the payment or refund it)' AS why,
           (SELECT max(e.at) FROM order_events e
             WHERE e.order_id = o.id AND e.machine = 'order' AND e.to_status = 'underpaid')
               AS since
      FROM orders o
     WHERE o.status = 'underpaid'
    UNION ALL
    SELECT o.id,
           CASE WHEN k.status IN ('canceled', 'refunded')
                THEN 'Kinguin order ' || k.kinguin_order_id || ' was ' || k.status
                ELSE 'fulfillment failed: ' || coalesce(o.fulfillment_error, 'no reason recorded')
           END || ' (refund it, or retry the fulfillment)',
           greatest((SELECT max(e.at) FROM order_events e
                      WHERE e.order_id = o.id AND e.machine = 'fulfillment'
                        AND e.to_status = 'failed'),
                    CASE WHEN k.status IN ('canceled', 'refunded')
                         THEN coalesce(k.status_updated_at, k.updated_at) END)
      FROM orders o
      LEFT JOIN kinguin_orders k ON k.order_id = o.id
     WHERE o.status = 'paid'
       AND (o.fulfillment_status = 'failed' OR k.status IN ('canceled', 'refunded'))
),
arrived AS (
    SELECT p.order_id,
           CASE WHEN count(DISTINCT p.pay_currency) = 1
                THEN trim_scale(sum(p.actually_paid)) END AS actually_paid,
           string_agg(DISTINCT p.pay_currency, ',') AS pay_currency
      FROM payments p
     WHERE p.order_id IN (SELECT id FROM due)
       AND p.status IN ('confirming', 'confirmed', 'sending', 'partially_paid', 'finished')
       AND p.actually_paid IS NOT NULL
     GROUP BY p.order_id
)
SELECT o.id AS order_id, o.status, o.fulfillment_status, d.why, o.email, o.currency,
       o.total_amount, bitloot_amount_paid(o.id) AS amount_due,
       a.actually_paid, a.pay_currency,
       coalesce(d.since, o.updated_at) AS since
  FROM due d
  JOIN orders o ON o.id = d.id
  LEFT JOIN arrived a ON a.order_id = o.id;
COMMENT ON VIEW refunds_due IS
    'Orders whose money an admin must settle (GET /admin/refunds-due): paid orders that '
    'cannot be delivered (fulfillment failed, or their Kinguin order was canceled or '
    'refunded) and underpaid orders. Refund them (POST /admin/orders/{id}/refund) or, for '
    'underpaid ones, accept the payment (POST /admin/orders/{id}/accept-payment); a '
    'failed fulfillment may also be retried. Newest first: ORDER BY since DESC.';
COMMENT ON COLUMN refunds_due.order_id IS 'The order.';
COMMENT ON COLUMN refunds_due.status IS 'Its status: paid or underpaid.';
COMMENT ON COLUMN refunds_due.fulfillment_status IS 'Its fulfillment status.';
COMMENT ON COLUMN refunds_due.why IS 'Why it is here, and what can be done.';
COMMENT ON COLUMN refunds_due.email IS 'The customer''s address (where the refund notice goes).';
COMMENT ON COLUMN refunds_due.currency IS 'The order''s currency.';
COMMENT ON COLUMN refunds_due.total_amount IS 'The order total.';
COMMENT ON COLUMN refunds_due.amount_due IS
    'What a refund gives back by default: bitloot_amount_paid (the total when a payment '
    'covered it, else what arrived, in the order currency, rounded down to cents).';
COMMENT ON COLUMN refunds_due.actually_paid IS
    'What arrived in crypto: the sum of actually_paid of the order''s payments that money '
    'reached; NULL when they were in several currencies (see pay_currency) or none arrived.';
COMMENT ON COLUMN refunds_due.pay_currency IS
    'The crypto currency of actually_paid (a comma list when several).';
COMMENT ON COLUMN refunds_due.since IS
    'Since when: the order became underpaid, its fulfillment failed, or its Kinguin order '
    'was canceled (the order''s updated_at when no event says).';

-- The timeline shows refunds and key returns from 0018 on (one definition of the view).

-- ---------------------------------------------------------------------------------------
-- Grants: refunds and kinguin_key_returns join the append-only logs, refunds_due the views
-- ---------------------------------------------------------------------------------------

-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
