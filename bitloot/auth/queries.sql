-- name: insert_order_token
INSERT INTO order_access_tokens (token_hash, order_id, purpose, expires_at)
VALUES (%(token_hash)s, %(order_id)s, %(purpose)s,
        now() + make_interval(secs => %(ttl_seconds)s));

-- name: find_order_token
-- The database's clock decides expiry, as it set expires_at.
SELECT order_id, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired
  FROM order_access_tokens
 WHERE token_hash = %(token_hash)s;

-- name: revoke_order_tokens
-- Every live token of the order (of one purpose, or all when purpose is NULL).
UPDATE order_access_tokens
   SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE order_id = %(order_id)s
   AND (%(purpose)s::text IS NULL OR purpose = %(purpose)s::text)
   AND revoked_at IS NULL
   AND expires_at > now()
RETURNING token_hash;
