-- Who may see an order, written once: every customer-facing query (the order, its
-- fulfillment status, its download links) filters with this function, so the ownership
-- rule cannot drift between them. An admin sees every order; a signed-in customer the
-- orders placed under their user id; an order token exactly its own order. Anyone else
-- gets no row, which the API answers with the same 404 as a missing order.
-- A single-expression SQL function marked IMMUTABLE is inlined by the planner, so the
-- queries keep their primary-key lookups.
CREATE FUNCTION bitloot_order_visible(
    order_id uuid, order_user_id text,
    is_admin boolean, user_id text, token_order_id uuid
) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(is_admin, false)
        OR coalesce(order_user_id = user_id, false)
        OR coalesce(order_id = token_order_id, false)
$$;

COMMENT ON FUNCTION bitloot_order_visible(uuid, text, boolean, text, uuid) IS
    'The one ownership rule of customer queries: true for an admin, the order''s signed-in '
    'owner (user_id), or an order token for this very order (token_order_id).';
