-- Order access tokens: the bearer strings that open one order (POST /orders' accessToken,
-- the #token= of an emailed key-page link). Like a Stripe client secret they are random
-- (32 bytes), not signed: nothing about them derives from a master key, so rotating the
-- master keys leaves every link working. Only a SHA-256 of each token is stored, so this
-- table (a backup, a replica, a DBA's screen) holds nothing that opens an order. A token
-- is revoked by setting revoked_at (an admin resend revokes the order's earlier email
-- links); the application never deletes a row. bitloot/auth/order_tokens.py is the code.

CREATE TABLE order_access_tokens (
    token_hash     bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    order_id       uuid NOT NULL REFERENCES orders (id),
    purpose        text NOT NULL CHECK (purpose IN ('checkout', 'email', 'recovery')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    CONSTRAINT order_access_tokens_expire_after_creation CHECK (expires_at > created_at),
    CONSTRAINT order_access_tokens_revocation_has_reason CHECK
        ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
COMMENT ON TABLE order_access_tokens IS
    'Order access tokens BitLoot issued (accessToken of POST /orders, emailed key-page links), '
    'by the SHA-256 of the token, never the token. Revoked by setting revoked_at; never '
    'deleted by the application.';
COMMENT ON COLUMN order_access_tokens.token_hash IS
    'SHA-256 of the whole token string (blot_...): a 256-bit random secret needs no slow hash.';
COMMENT ON COLUMN order_access_tokens.order_id IS 'The one order the token opens.';
COMMENT ON COLUMN order_access_tokens.purpose IS
    'Why it was issued: checkout (POST /orders), email (a delivery email), recovery '
    '(a recovery email).';
COMMENT ON COLUMN order_access_tokens.created_at IS 'When it was issued.';
COMMENT ON COLUMN order_access_tokens.expires_at IS
    'After this the token answers 401 (issued with BITLOOT_ORDER_TOKEN_TTL).';
COMMENT ON COLUMN order_access_tokens.revoked_at IS
    'When it was revoked (it answers 401 from then on); NULL while it is not.';
COMMENT ON COLUMN order_access_tokens.revoked_reason IS
    'Why it was revoked, e.g. resend (an admin sent the delivery email again).';
CREATE INDEX order_access_tokens_order_idx ON order_access_tokens (order_id);
