-- name: insert_webhook_event
INSERT INTO webhook_events (provider, dedup_key, event_type, external_id, order_id, raw_body,
                            signature_variant)
VALUES (%(provider)s, %(dedup_key)s, %(event_type)s, %(external_id)s, %(order_id)s,
        %(raw_body)s, %(signature_variant)s)
ON CONFLICT (provider, dedup_key) DO NOTHING
RETURNING id;

-- name: finish_webhook_event
-- The order it was matched to is linked too, when the event did not name it itself
-- (a Kinguin event without orderExternalId is matched by the Kinguin order id).
UPDATE webhook_events
   SET processed_at = now(), outcome = %(outcome)s, needs_attention = %(needs_attention)s,
       order_id = coalesce(%(order_id)s, order_id)
 WHERE id = %(id)s;
