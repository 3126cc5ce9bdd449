-- What applying a webhook did, as a closed list the database knows: every value of
-- webhook_events.outcome with its provider and meaning. The code holds the same list
-- (bitloot/inbox/outcomes.py, `Outcome`); tests/inbox/test_outcomes.py keeps the two equal,
-- so a new value is added in both. For DBAs: SELECT * FROM webhook_outcomes ORDER BY outcome;

CREATE TABLE webhook_outcomes (
    outcome  text PRIMARY KEY,
    provider text CHECK (provider IN ('nowpayments', 'kinguin')),
    meaning  text NOT NULL CHECK (meaning <> '')
);
COMMENT ON TABLE webhook_outcomes IS
    'Every value webhook_events.outcome may hold, with what it means; the code''s Outcome '
    'enum (bitloot/inbox/outcomes.py) lists the same values.';
COMMENT ON COLUMN webhook_outcomes.outcome IS 'The value stored in webhook_events.outcome.';
COMMENT ON COLUMN webhook_outcomes.provider IS
    'The provider whose events produce it: nowpayments or kinguin; NULL for both.';
COMMENT ON COLUMN webhook_outcomes.meaning IS
    'What applying the event did, in one line; "flagged" means needs_attention is set.';

INSERT INTO webhook_outcomes (outcome, provider, meaning) VALUES
    -- Both providers
    ('duplicate', NULL,
     'A copy of an event already stored: nothing applied. Only returned; no row has it.'),
    ('unknown_order', NULL,
     'The event names no order of ours: kept and flagged, nothing applied.'),
    ('stale', NULL,
     'Older than what was applied (payment status rank, Kinguin watermark): ignored.'),
    -- NOWPayments IPNs, and the reconciler reading the API
    ('payment_belongs_to_another_order', 'nowpayments',
     'The payment id is already recorded for another order: flagged, nothing applied.'),
    ('redeposit_waiting', 'nowpayments',
     'A re-deposit (child payment) reported waiting: recorded and flagged, order unchanged.'),
    ('redeposit_confirming', 'nowpayments',
     'A re-deposit reported confirming: recorded and flagged, order unchanged.'),
    ('redeposit_confirmed', 'nowpayments',
     'A re-deposit reported confirmed: recorded and flagged, order unchanged.'),
    ('redeposit_sending', 'nowpayments',
     'A re-deposit reported sending: recorded and flagged, order unchanged.'),
    ('redeposit_partially_paid', 'nowpayments',
     'A re-deposit reported partially_paid: recorded and flagged, order unchanged.'),
    ('redeposit_finished', 'nowpayments',
     'A re-deposit reported finished: recorded and flagged for a human to settle.'),
    ('redeposit_failed', 'nowpayments',
     'A re-deposit reported failed: recorded and flagged, order unchanged.'),
    ('redeposit_refunded', 'nowpayments',
     'A re-deposit reported refunded: recorded and flagged, order unchanged.'),
    ('redeposit_expired', 'nowpayments',
     'A re-deposit reported expired: recorded and flagged, order unchanged.'),
    ('payment_waiting', 'nowpayments',
     'The payment waits for the customer''s funds: recorded, order unchanged.'),
    ('payment_in_progress', 'nowpayments',
     'The payment is still confirming and the order already is: recorded, order unchanged.'),
    ('order_confirming', 'nowpayments',
     'Moved the order to confirming: the payment is seen, not final yet.'),
    ('order_paid', 'nowpayments',
     'Moved the order to paid and queued its fulfillment.'),
    ('order_underpaid', 'nowpayments',
     'Moved the order to underpaid: less than its total arrived. Flagged.'),
    ('order_failed', 'nowpayments',
     'Moved the order to failed: the payment failed (flagged when paid in another currency).'),
    ('order_expired', 'nowpayments',
     'Moved the order to expired: the payment expired unpaid.'),
    ('order_refunded', 'nowpayments',
     'Moved the order to refunded: the payment was refunded. Flagged.'),
    ('order_already_paid', 'nowpayments',
     'The order was already paid: nothing moved (flagged if the report was bad news).'),
    ('order_already_fulfilled', 'nowpayments',
     'The order was already fulfilled: nothing moved (flagged if the report was bad news).'),
    ('order_already_underpaid', 'nowpayments',
     'The order was already underpaid: nothing moved (flagged if the report was bad news).'),
    ('order_already_failed', 'nowpayments',
     'The order had already failed: nothing moved (flagged if the report was bad news).'),
    ('order_already_expired', 'nowpayments',
     'The order had already expired: nothing moved (flagged if the report was bad news).'),
    ('order_already_refunded', 'nowpayments',
     'The order was already refunded: nothing moved (flagged if the report was bad news).'),
    -- Kinguin order webhooks
    ('other_kinguin_order', 'kinguin',
     'Another Kinguin order carries our order id (bought twice?): flagged, no job.'),
    ('noted', 'kinguin',
     'Kinguin is processing the order: watermark advanced, no job.'),
    ('keys_being_collected', 'kinguin',
     'Kinguin completed and the worker already collects the keys: no second job.'),
    ('fulfillment_enqueued_completed', 'kinguin',
     'Kinguin completed the order: a fulfillment job was queued to collect the keys.'),
    ('fulfillment_enqueued_canceled', 'kinguin',
     'Kinguin canceled the order: a fulfillment job was queued to look again.'),
    ('fulfillment_enqueued_refunded', 'kinguin',
     'Kinguin refunded the order: a fulfillment job was queued to look again.'),
    ('order_created_pending', 'kinguin',
     'Our order is created (not yet invoiced): nothing done; flagged on cancel/refund.'),
    ('order_waiting_pending', 'kinguin',
     'Our order is waiting for payment: nothing done; flagged on cancel/refund.'),
    ('order_confirming_pending', 'kinguin',
     'Our order''s payment is confirming: nothing done; flagged on cancel/refund.'),
    ('order_underpaid_pending', 'kinguin',
     'Our order is underpaid: nothing done; flagged on cancel/refund.'),
    ('order_failed_pending', 'kinguin',
     'Our order failed (payment side): nothing done; flagged on cancel/refund.'),
    ('order_expired_pending', 'kinguin',
     'Our order expired unpaid: nothing done; flagged on cancel/refund.'),
    ('order_paid_fulfilled', 'kinguin',
     'Our order is paid, keys stored (a manual change): nothing done; flagged on cancel/refund.'),
    ('order_paid_failed', 'kinguin',
     'Our order''s fulfillment failed: nothing done; flagged on cancel/refund.'),
    ('order_fulfilled_fulfilled', 'kinguin',
     'Our order is fulfilled: nothing done; flagged on cancel/refund.'),
    ('order_refunded_pending', 'kinguin',
     'Our order was refunded before fulfillment: nothing done; flagged on cancel/refund.'),
    ('order_refunded_processing', 'kinguin',
     'Our order was refunded while being fulfilled: nothing done; flagged on cancel/refund.'),
    ('order_refunded_fulfilled', 'kinguin',
     'Our order was refunded after fulfillment: nothing done; flagged on cancel/refund.'),
    ('order_refunded_failed', 'kinguin',
     'Our order was refunded, fulfillment failed: nothing done; flagged on cancel/refund.');

-- Added directly, without NOT VALID: until now the column was written only by the code,
-- from literals and f-strings whose every possible value is listed above (the f-strings
-- expanded over the payment, order and Kinguin statuses the schema allows; the one left
-- out, order_already_<created|waiting|confirming>, needed a move to fail under the order
-- row lock, which cannot happen). So no existing row violates it. NULL stays allowed: an
-- event not (yet) processed.
ALTER TABLE webhook_events
    ADD CONSTRAINT webhook_events_outcome_fkey
    FOREIGN KEY (outcome) REFERENCES webhook_outcomes (outcome);
COMMENT ON COLUMN webhook_events.outcome IS
    'What applying the event did: one of webhook_outcomes (see its meaning column); NULL '
    'until processed. Written in the same transaction as the business change.';
