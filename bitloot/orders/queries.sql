-- name: upsert_product
INSERT INTO products (product_id, name, price, currency, max_cost, text_only, active)
VALUES (%(product_id)s, %(name)s, %(price)s, %(currency)s, %(max_cost)s, %(text_only)s, %(active)s)
ON CONFLICT (product_id) DO UPDATE
   SET name = EXCLUDED.name, price = EXCLUDED.price, currency = EXCLUDED.currency,
       max_cost = EXCLUDED.max_cost, text_only = EXCLUDED.text_only, active = EXCLUDED.active
RETURNING product_id, name, price, currency, max_cost, text_only, active;

-- name: list_products
SELECT product_id, name, price, currency, max_cost, text_only, active
  FROM products ORDER BY product_id;

-- name: products_by_ids
SELECT product_id, name, price, currency, max_cost, text_only, active
  FROM products WHERE product_id = ANY(%(ids)s);
