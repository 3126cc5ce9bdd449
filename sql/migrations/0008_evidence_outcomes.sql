-- Outcomes for payment reports that must prove what was paid, and for Kinguin events dated
-- in the future (issue 13, items 4 and 5). The code's Outcome enum (bitloot/inbox/outcomes.py)
-- holds the same values and meanings; tests/inbox/test_outcomes.py keeps the two equal.

INSERT INTO webhook_outcomes (outcome, provider, meaning) VALUES
    ('still_underpaid', 'nowpayments',
     'A final report for an underpaid order still does not prove its total: order'
     ' unchanged. Flagged.'),
    ('underpaid_now_covered', 'nowpayments',
     'A final report for an underpaid order covers its total: order unchanged (never paid'
     ' by itself), flagged for a human to release or refund.'),
    ('future_timestamp', 'kinguin',
     'Dated beyond our clock plus the allowed skew: flagged, watermark untouched; a job'
     ' queued as a hint only if one would be for a correctly dated event.');

-- A final report without the evidence of the amount now also ends in underpaid.
UPDATE webhook_outcomes
   SET meaning = 'Moved the order to underpaid: less than its total arrived, or the report'
                 ' did not prove the amount. Flagged.'
 WHERE outcome = 'order_underpaid';
