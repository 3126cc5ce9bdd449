-- name: upsert_payment
-- A payment only moves to a higher-ranked status, so a replayed or late IPN changes nothing;
-- the RETURNING row tells the caller whether this IPN moved it. Once the payment is final
-- (rank 5: finished, failed, expired) its amounts and currencies are kept as they were: a
-- later report (refunded) moves the status only (trigger payments_guard, migration 0012).
INSERT INTO payments AS p (payment_id, order_id, invoice_id, parent_payment_id, status,
                           price_amount, price_currency, pay_amount, pay_currency, actually_paid,
                           actually_paid_at_fiat, outcome_amount, outcome_currency,
                           provider_updated_at)
VALUES (%(payment_id)s, %(order_id)s, %(invoice_id)s, %(parent_payment_id)s, %(status)s,
        %(price_amount)s, %(price_currency)s, %(pay_amount)s, %(pay_currency)s,
        %(actually_paid)s, %(actually_paid_at_fiat)s, %(outcome_amount)s, %(outcome_currency)s,
        %(provider_updated_at)s)
ON CONFLICT (payment_id) DO UPDATE
   SET status = EXCLUDED.status,
       invoice_id = coalesce(EXCLUDED.invoice_id, p.invoice_id),
       parent_payment_id = CASE WHEN bitloot_payment_status_rank(p.status) >= 5
                                THEN p.parent_payment_id
                                ELSE coalesce(EXCLUDED.parent_payment_id, p.parent_payment_id) END,
       price_amount = CASE WHEN bitloot_payment_status_rank(p.status) >= 5 THEN p.price_amount
                    ELSE coalesce(EXCLUDED.price_amount, p.price_amount) END,
       price_currency = CASE WHEN bitloot_payment_status_rank(p.status) >= 5 THEN p.price_currency
                    ELSE coalesce(EXCLUDED.price_currency, p.price_currency) END,
       pay_amount = CASE WHEN bitloot_payment_status_rank(p.status) >= 5 THEN p.pay_amount
                    ELSE coalesce(EXCLUDED.pay_amount, p.pay_amount) END,
       pay_currency = CASE WHEN bitloot_payment_status_rank(p.status) >= 5 THEN p.pay_currency
                    ELSE coalesce(EXCLUDED.pay_currency, p.pay_currency) END,
       actually_paid = CASE WHEN bitloot_payment_status_rank(p.status) >= 5 THEN p.actually_paid
                    ELSE coalesce(EXCLUDED.actually_paid, p.actually_paid) END,
       actually_paid_at_fiat = coalesce(EXCLUDED.actually_paid_at_fiat, p.actually_paid_at_fiat),
       outcome_amount = coalesce(EXCLUDED.outcome_amount, p.outcome_amount),
       outcome_currency = coalesce(EXCLUDED.outcome_currency, p.outcome_currency),
       provider_updated_at = coalesce(EXCLUDED.provider_updated_at, p.provider_updated_at),
       last_ipn_at = now()
 WHERE p.order_id = EXCLUDED.order_id
   AND bitloot_payment_status_rank(EXCLUDED.status) > bitloot_payment_status_rank(p.status)
RETURNING payment_id;

-- name: payment_order
SELECT order_id FROM payments WHERE payment_id = %(payment_id)s;

-- name: stale_payments
-- Payments not final and not heard of for a while: the reconciler asks NOWPayments.
SELECT payment_id
  FROM payments
 WHERE status IN ('waiting', 'confirming', 'confirmed', 'sending')
   AND updated_at < now() - make_interval(mins => %(minutes)s)
 ORDER BY updated_at
 LIMIT %(limit)s;

-- name: touch_payment
UPDATE payments SET updated_at = now() WHERE payment_id = %(payment_id)s;
