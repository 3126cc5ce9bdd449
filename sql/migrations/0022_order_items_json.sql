-- An order's lines as the API shows them (GET /orders/{id} and GET /orders), in one place:
-- both queries used to build the same json_agg each, and the snapshot of issue 19 made it
-- ten fields long. Read from order_items only (the snapshot), never from products.

CREATE FUNCTION bitloot_order_items_json(p_order_id uuid) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce(
        (SELECT json_agg(json_build_object(
                    'productId', i.product_id, 'name', i.name, 'qty', i.qty,
                    'unitPrice', i.unit_price::text, 'platform', i.platform,
                    'regionalLimitations', i.regional_limitations,
                    'excludedCountries', i.excluded_countries, 'imageUrl', i.image_url,
                    'isPreorder', i.is_preorder, 'releaseDate', i.release_date)
                    ORDER BY i.product_id)
           FROM order_items i
          WHERE i.order_id = p_order_id),
        '[]'::json);

COMMENT ON FUNCTION bitloot_order_items_json(uuid) IS
    'The order''s lines as the orders API returns them (OrderItemOut: the snapshot copied at '
    'POST /orders, with the price charged), ordered by product id; [] when none.';

DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
