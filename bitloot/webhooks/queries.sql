-- Queries of the outbound webhooks domain (bitloot.webhooks), loaded by name with
-- bitloot.db.queries.QuerySet. Endpoints and their secrets first, then the delivery.

-- name: insert_endpoint
INSERT INTO webhook_endpoints (url, event_types, description, created_by)
VALUES (%(url)s, %(event_types)s, %(description)s, %(created_by)s)
RETURNING id;

-- name: insert_endpoint_secret
INSERT INTO webhook_endpoint_secrets (endpoint_id, wrapped, master_key_id)
VALUES (%(endpoint_id)s, %(wrapped)s, %(master_key_id)s)
RETURNING id;

-- name: registered_endpoints
-- Every endpoint not removed, oldest first, with its current secret's age and how many
-- secrets still sign (the current one, and rotated ones until they expire).
SELECT e.id, e.url, e.event_types, e.description, e.enabled, e.disabled_at,
       e.disabled_reason, e.created_by, e.created_at, e.updated_at, e.removed_at
  FROM webhook_endpoints e
 WHERE e.removed_at IS NULL
 ORDER BY e.created_at, e.id;

-- name: registered_endpoint
-- One endpoint not removed (a removed one is gone for the admin API and the CLI).
SELECT e.id, e.url, e.event_types, e.description, e.enabled, e.disabled_at,
       e.disabled_reason, e.created_by, e.created_at, e.updated_at, e.removed_at
  FROM webhook_endpoints e
 WHERE e.id = %(endpoint_id)s AND e.removed_at IS NULL;

-- name: lock_registered_endpoint
-- The same, locked for the transaction: changes to one endpoint (disable, rotate,
-- remove) happen one after another.
SELECT e.id, e.url, e.event_types, e.description, e.enabled, e.disabled_at,
       e.disabled_reason, e.created_by, e.created_at, e.updated_at, e.removed_at
  FROM webhook_endpoints e
 WHERE e.id = %(endpoint_id)s AND e.removed_at IS NULL
   FOR UPDATE;

-- name: endpoint_secret_ages
-- The secrets that still sign for the given endpoints (not expired), newest first: what
-- the admin sees of them, never the secret.
SELECT s.id, s.endpoint_id, s.created_at, s.expires_at
  FROM webhook_endpoint_secrets s
 WHERE s.endpoint_id = ANY(%(endpoint_ids)s::uuid[])
   AND (s.expires_at IS NULL OR s.expires_at > now())
 ORDER BY s.endpoint_id, s.id DESC;

-- name: endpoint_signing_secrets
-- The wrapped secrets that sign an endpoint's deliveries now (current and not yet
-- expired), newest first.
SELECT s.wrapped, s.master_key_id
  FROM webhook_endpoint_secrets s
 WHERE s.endpoint_id = %(endpoint_id)s
   AND (s.expires_at IS NULL OR s.expires_at > now())
 ORDER BY s.id DESC;

-- name: disable_endpoint
UPDATE webhook_endpoints
   SET enabled = false, disabled_at = now(), disabled_reason = %(reason)s
 WHERE id = %(endpoint_id)s AND removed_at IS NULL AND enabled;

-- name: enable_endpoint
-- disabled_at and disabled_reason are cleared: the row says why it is off only while it is.
UPDATE webhook_endpoints
   SET enabled = true, disabled_at = NULL, disabled_reason = NULL
 WHERE id = %(endpoint_id)s AND removed_at IS NULL AND NOT enabled;

-- name: requeue_pending_deliveries
-- One delivery job per (endpoint, order) that still has pending deliveries (a job already
-- waiting for a pair is kept: bitloot_defer_webhook_job's queueing lock).
SELECT count(bitloot_defer_webhook_job(p.endpoint_id, p.order_id))
  FROM (SELECT DISTINCT d.endpoint_id, d.order_id
          FROM webhook_deliveries d
         WHERE d.endpoint_id = %(endpoint_id)s AND d.status = 'pending') p;

-- name: expire_current_secret
-- The current secret keeps signing for overlap seconds more, then stops.
UPDATE webhook_endpoint_secrets
   SET expires_at = now() + make_interval(secs => %(overlap)s)
 WHERE endpoint_id = %(endpoint_id)s AND expires_at IS NULL
RETURNING id, expires_at;

-- name: remove_endpoint
UPDATE webhook_endpoints
   SET removed_at = now()
 WHERE id = %(endpoint_id)s AND removed_at IS NULL
RETURNING removed_at;

-- name: expire_all_secrets
-- A removed endpoint signs nothing any more.
UPDATE webhook_endpoint_secrets
   SET expires_at = now()
 WHERE endpoint_id = %(endpoint_id)s AND (expires_at IS NULL OR expires_at > now());

-- name: fail_pending_deliveries
UPDATE webhook_deliveries
   SET status = 'failed', last_error = %(error)s
 WHERE endpoint_id = %(endpoint_id)s AND status = 'pending';

-- name: lock_secrets_to_rewrap
-- Every secret (expired ones too: they are few, and then no stored secret needs an old
-- master key) not wrapped by the active master key. SKIP LOCKED: a secret being rotated
-- right now is left to the next run rather than waited on.
SELECT s.id, s.endpoint_id, s.wrapped, s.master_key_id
  FROM webhook_endpoint_secrets s
 WHERE s.master_key_id <> %(active_id)s
 ORDER BY s.id
   FOR UPDATE SKIP LOCKED;

-- name: rewrap_secret
UPDATE webhook_endpoint_secrets
   SET wrapped = %(wrapped)s, master_key_id = %(new_master_key_id)s
 WHERE id = %(id)s AND master_key_id = %(old_master_key_id)s;

-- ---------------------------------------------------------------------------------------
-- Delivery (bitloot/webhooks/delivery.py): one job per (endpoint, order) drains the pair.
-- ---------------------------------------------------------------------------------------

-- name: delivery_endpoint
-- What the delivery job needs of its endpoint (removed ones too: their pairs fail).
SELECT e.id, e.url, e.enabled, e.removed_at
  FROM webhook_endpoints e
 WHERE e.id = %(endpoint_id)s;

-- name: pair_head
-- The pair's oldest pending delivery with its event, whether it is due, and how many
-- attempts its current round of the schedule has made: those after its last attempt that
-- ended the delivery (delivered or failed); an admin redelivery starts a new round.
SELECT d.message_id, d.attempts, d.next_attempt_at, d.next_attempt_at <= now() AS due,
       m.msg_id, m.event_type, m.data, m.created_at,
       (SELECT count(*)
          FROM webhook_attempts a
         WHERE a.endpoint_id = d.endpoint_id AND a.message_id = d.message_id
           AND a.id > coalesce((SELECT max(f.id)
                                  FROM webhook_attempts f
                                 WHERE f.endpoint_id = d.endpoint_id
                                   AND f.message_id = d.message_id
                                   AND f.outcome IN ('delivered', 'failed')), 0)
       )::int AS round_attempts
  FROM webhook_deliveries d
  JOIN webhook_messages m ON m.id = d.message_id
 WHERE d.endpoint_id = %(endpoint_id)s AND d.order_id = %(order_id)s AND d.status = 'pending'
 ORDER BY d.message_id
 LIMIT 1;

-- name: settle_attempt
-- One attempt: the delivery row moves on (only if it is as the attempt found it) and the
-- attempt's row is appended, numbered by the delivery's new attempt count.
WITH settled AS (
    UPDATE webhook_deliveries
       SET status = %(status)s,
           attempts = attempts + 1,
           next_attempt_at = coalesce(clock_timestamp() + make_interval(secs => %(delay)s),
                                      next_attempt_at),
           last_status_code = %(status_code)s,
           last_error = %(error)s,
           delivered_at = CASE WHEN %(status)s = 'delivered' THEN clock_timestamp()
                               ELSE delivered_at END
     WHERE endpoint_id = %(endpoint_id)s AND message_id = %(message_id)s
       AND status = 'pending' AND attempts = %(attempts)s
 RETURNING endpoint_id, message_id, attempts, next_attempt_at
)
INSERT INTO webhook_attempts (endpoint_id, message_id, attempt, outcome, status_code,
                              latency_ms, error)
SELECT s.endpoint_id, s.message_id, s.attempts, %(outcome)s, %(status_code)s,
       %(latency_ms)s, %(error)s
  FROM settled s
RETURNING attempt, (SELECT next_attempt_at FROM settled) AS next_attempt_at;

-- name: fail_pair_deliveries
-- The pending deliveries of one pair whose endpoint is gone.
UPDATE webhook_deliveries
   SET status = 'failed', last_error = %(error)s
 WHERE endpoint_id = %(endpoint_id)s AND order_id = %(order_id)s AND status = 'pending';

-- name: disable_failing_endpoint
-- After a delivery failed for good at the end of its schedule: if the endpoint accepted
-- nothing since that event happened, it has been failing for days. Disabled, saying since
-- when (its first attempt after its last accepted one) and the last error.
UPDATE webhook_endpoints e
   SET enabled = false,
       disabled_at = now(),
       disabled_reason = left('failing since '
           || to_char(coalesce(f.since, %(event_at)s) AT TIME ZONE 'UTC',
                      'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           || ': ' || %(error)s, 500)
  FROM (SELECT min(a.at) AS since
          FROM webhook_attempts a
         WHERE a.endpoint_id = %(endpoint_id)s
           AND a.id > coalesce((SELECT max(ok.id) FROM webhook_attempts ok
                                 WHERE ok.endpoint_id = %(endpoint_id)s
                                   AND ok.outcome = 'delivered'), 0)) f
 WHERE e.id = %(endpoint_id)s AND e.enabled AND e.removed_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM webhook_attempts ok
                    WHERE ok.endpoint_id = %(endpoint_id)s AND ok.outcome = 'delivered'
                      AND ok.at >= %(event_at)s)
RETURNING e.disabled_reason;

-- name: defer_pair_job
-- The pair's job, due now, unless one is already waiting (bitloot_defer_webhook_job).
SELECT bitloot_defer_webhook_job(%(endpoint_id)s, %(order_id)s);

-- name: hasten_pair_job
-- The pair's waiting job, brought forward to %(at)s (NULL: now) when it was later.
UPDATE procrastinate_jobs
   SET scheduled_at = %(at)s
 WHERE queueing_lock = %(lock)s AND status = 'todo'
   AND scheduled_at > coalesce(%(at)s, now());

-- name: redeliver_message
-- One event of the endpoint back to pending, due now (its attempts are kept).
UPDATE webhook_deliveries d
   SET status = 'pending', next_attempt_at = now()
  FROM webhook_messages m
 WHERE d.endpoint_id = %(endpoint_id)s AND d.message_id = m.id AND m.msg_id = %(msg_id)s
RETURNING d.order_id;

-- name: redeliver_failed_since
-- Every failed delivery to the endpoint of an event that happened at or after %(since)s,
-- back to pending, due now.
UPDATE webhook_deliveries d
   SET status = 'pending', next_attempt_at = now()
  FROM webhook_messages m
 WHERE d.endpoint_id = %(endpoint_id)s AND d.status = 'failed' AND d.message_id = m.id
   AND m.created_at >= %(since)s
RETURNING d.order_id;

-- name: requeue_stranded_pairs
-- Pairs whose head is overdue by a minute with no job waiting or running for them (a job
-- that failed on a database error, an admin's UPDATE): queued again.
SELECT count(bitloot_defer_webhook_job(p.endpoint_id, p.order_id))
  FROM (SELECT DISTINCT d.endpoint_id, d.order_id
          FROM webhook_deliveries d
          JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.status = 'pending' AND e.enabled AND e.removed_at IS NULL
           AND d.next_attempt_at < now() - interval '1 minute'
           AND NOT EXISTS (
               SELECT 1 FROM procrastinate_jobs j
                WHERE j.queueing_lock = 'webhook:' || d.endpoint_id || ':' || d.order_id
                  AND j.status = 'todo')
           AND NOT EXISTS (
               SELECT 1 FROM procrastinate_jobs j
                WHERE j.lock = 'webhook:' || d.endpoint_id || ':' || d.order_id
                  AND j.status = 'doing')) p;

-- name: oldest_pending_age
-- Seconds since the oldest event still pending for an enabled endpoint happened (0: none);
-- a disabled endpoint's backlog waits for a person, not for the queue.
SELECT coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8
  FROM webhook_deliveries d
  JOIN webhook_endpoints e ON e.id = d.endpoint_id
 WHERE d.status = 'pending' AND e.enabled AND e.removed_at IS NULL;
