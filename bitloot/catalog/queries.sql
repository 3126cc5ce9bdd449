-- name: stored_answers
-- What Kinguin last said about these products, and whether that answer is still fresh
-- (younger than the cache TTL) or usable when Kinguin cannot be reached (the stale TTL).
SELECT product_id, kinguin_price, kinguin_qty, kinguin_text_qty,
       coalesce(checked_at > now() - make_interval(secs => %(fresh_seconds)s), false) AS fresh,
       coalesce(checked_at > now() - make_interval(secs => %(usable_seconds)s), false) AS usable
  FROM products
 WHERE product_id = ANY(%(ids)s);

-- name: record_answer
-- A read of GET /v2/products/{productId}: always the newest word, so it is applied whatever
-- the watermark, which only moves forward.
UPDATE products
   SET kinguin_price = %(price)s, kinguin_qty = %(qty)s, kinguin_text_qty = %(text_qty)s,
       kinguin_updated_at = greatest(kinguin_updated_at, %(updated_at)s::timestamptz),
       checked_at = now()
 WHERE product_id = %(product_id)s;

-- name: record_facts
-- What the same read says the customer is told about the key (bitloot.catalog.facts), in
-- place of what an earlier read said: the next order copies it onto its lines.
UPDATE products
   SET platform = %(platform)s, regional_limitations = %(regional_limitations)s,
       excluded_countries = %(excluded_countries)s, image_url = %(image_url)s,
       is_preorder = %(is_preorder)s, release_date = %(release_date)s
 WHERE product_id = %(product_id)s;

-- name: lock_watermark
SELECT kinguin_updated_at FROM products WHERE product_id = %(product_id)s FOR UPDATE;

-- name: apply_update
-- A product.update webhook newer than the watermark. Without a price the stored answer is
-- no longer complete: checked_at NULL makes the next order read the product again.
UPDATE products
   SET kinguin_qty = %(qty)s, kinguin_text_qty = %(text_qty)s,
       kinguin_price = coalesce(%(price)s, kinguin_price),
       kinguin_updated_at = %(updated_at)s,
       checked_at = CASE WHEN %(price)s::numeric IS NULL THEN NULL ELSE now() END
 WHERE product_id = %(product_id)s;

-- name: mark_unchecked
UPDATE products SET checked_at = NULL WHERE product_id = %(product_id)s;

-- name: active_product_ids
SELECT product_id FROM products WHERE active ORDER BY checked_at NULLS FIRST, product_id;

-- name: catalog_rows
SELECT product_id, name, price, currency, max_cost, text_only, active,
       kinguin_price, kinguin_qty, kinguin_text_qty, checked_at,
       platform, regional_limitations, excluded_countries, image_url, is_preorder,
       release_date
  FROM products
 WHERE active OR NOT %(active_only)s
 ORDER BY CASE WHEN %(active_only)s THEN name END, product_id;
