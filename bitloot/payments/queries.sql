-- name: apply_ipn
-- The whole report in one round trip: every rule is in the function (migration 0020).
SELECT outcome, needs_attention, duplicate, enqueued, order_id
  FROM bitloot_apply_ipn(
       p_dedup_key => %(dedup_key)s, p_raw_body => %(raw_body)s,
       p_signature_variant => %(signature_variant)s, p_payment_id => %(payment_id)s,
       p_payment_status => %(payment_status)s, p_order_id => %(order_id)s,
       p_invoice_id => %(invoice_id)s, p_parent_payment_id => %(parent_payment_id)s,
       p_price_amount => %(price_amount)s, p_price_currency => %(price_currency)s,
       p_pay_amount => %(pay_amount)s, p_pay_currency => %(pay_currency)s,
       p_actually_paid => %(actually_paid)s, p_actually_paid_at_fiat => %(actually_paid_at_fiat)s,
       p_outcome_amount => %(outcome_amount)s, p_outcome_currency => %(outcome_currency)s,
       p_provider_updated_at => %(provider_updated_at)s, p_actor => %(actor)s,
       p_actor_reason => %(actor_reason)s);

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
