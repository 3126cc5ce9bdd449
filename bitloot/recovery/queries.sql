-- name: record_request
-- A whole recovery request in one statement, whatever it finds, so that an address with
-- orders and one without cost the same round trip: the search (orders_email_idx), the
-- audit row, and the orders it lists. The search runs even for a rate-limited request (the
-- same cost), which then lists nothing.
--
-- An order qualifies when it is fulfilled (a refunded order is 'refunded') and still has a
-- live key: not expired or deleted by the retention rule, not past expires_at, not
-- revoked. Newest first, at most max_orders. `to_address` is the newest listed order's
-- address as the customer typed it (it received the first email); NULL when none qualifies.
WITH found AS (
    SELECT o.id, o.email, o.created_at
      FROM orders o
     WHERE lower(o.email) = %(email)s
       AND o.status = 'fulfilled'
       AND EXISTS (SELECT 1
                     FROM key_delivery_logs k
                    WHERE k.order_id = o.id
                      AND k.status IN ('stored', 'accessed')
                      AND k.revoked_at IS NULL
                      AND k.expires_at > now())
     ORDER BY o.created_at DESC, o.id
     LIMIT %(max_orders)s
),
request AS (
    INSERT INTO recovery_requests (email, client_ip, outcome, order_count)
    SELECT %(email)s, %(client_ip)s::inet,
           CASE WHEN %(rate_limited)s THEN 'rate_limited'
                WHEN count(*) = 0 THEN 'no_orders'
                ELSE 'sent' END,
           CASE WHEN %(rate_limited)s THEN 0 ELSE count(*) END
      FROM found
    RETURNING id, outcome, order_count
),
listed AS (
    INSERT INTO recovery_request_orders (request_id, order_id)
    SELECT request.id, found.id
      FROM request, found
     WHERE request.outcome = 'sent'
)
SELECT r.id AS request_id, r.outcome, r.order_count,
       (SELECT f.email FROM found f ORDER BY f.created_at DESC, f.id LIMIT 1) AS to_address
  FROM request r;
