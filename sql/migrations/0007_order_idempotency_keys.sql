-- Idempotency-Key of POST /orders, scoped to the caller and kept for 24 hours (as Stripe
-- does), instead of one namespace shared by every caller forever (orders.idempotency_key).
-- The scope is `user:<sub>` for a signed-in user; for a guest it is `guest:` and the hex
-- of the request's fingerprint (SHA-256 of the normalised email and the sorted items), so
-- a guest who reuses another guest's key with another email gets an order of their own,
-- never the other one. A key older than 24 hours is taken over by the next request that
-- uses it (ON CONFLICT ... DO UPDATE ... WHERE created_at < now() - interval '24 hours'),
-- which then makes a new order. bitloot/orders/service.py (`create_order`) is the code.
--
-- Nothing is copied from orders.idempotency_key: a key only protects a retry for 24 hours,
-- so the worst a key used just before this migration can do is make one more order when
-- retried after it, which an unpaid order's expiry then cleans up. The old column stays,
-- readable, and is no longer written.

CREATE TABLE order_idempotency_keys (
    scope               text NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
    key                 text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_fingerprint bytea NOT NULL CHECK (length(request_fingerprint) = 32),
    -- Deferred: the key is claimed first, with the id the new order is then inserted under,
    -- so a concurrent replay waits on the key's row rather than making a second order.
    order_id            uuid NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
COMMENT ON TABLE order_idempotency_keys IS
    'The Idempotency-Key headers of POST /orders, per caller, for 24 hours: a retry within '
    'them answers with the order the key made; after them the key makes a new order.';
COMMENT ON COLUMN order_idempotency_keys.scope IS
    'Whose key: user:<JWT sub> for a signed-in user, guest:<hex of request_fingerprint> for a '
    'guest.';
COMMENT ON COLUMN order_idempotency_keys.key IS 'The Idempotency-Key header as sent.';
COMMENT ON COLUMN order_idempotency_keys.request_fingerprint IS
    'SHA-256 of the normalised email and the sorted items: a signed-in user who reuses the key '
    'for another request gets a 422.';
COMMENT ON COLUMN order_idempotency_keys.order_id IS 'The order the key made.';
COMMENT ON COLUMN order_idempotency_keys.created_at IS
    'When the key made its order; 24 hours later it no longer protects a retry.';

COMMENT ON COLUMN orders.idempotency_key IS
    'The Idempotency-Key of POST /orders for orders made before migration 0007; no longer '
    'written (order_idempotency_keys holds the keys now, per caller and for 24 hours).';
