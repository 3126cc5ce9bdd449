-- Stock and price before payment (issue 15, item 1): what Kinguin last said about each
-- catalog product, kept on its row.
--
-- POST /orders reads GET /v2/products/{productId} for each item of a new order unless the
-- stored answer is younger than BITLOOT_PRODUCT_CACHE_TTL, and refuses an item without
-- stock or whose cheapest offer costs more than max_cost (409) before any order row or
-- invoice exists. The answer is refreshed by the periodic refresh_catalog job and by
-- Kinguin's product.update webhook (ignored when older than kinguin_updated_at). The rules
-- live in bitloot/catalog/service.py.

ALTER TABLE products
    ADD COLUMN kinguin_price      numeric CHECK (kinguin_price > 0),
    ADD COLUMN kinguin_qty        integer CHECK (kinguin_qty >= 0),
    ADD COLUMN kinguin_text_qty   integer CHECK (kinguin_text_qty >= 0),
    ADD COLUMN kinguin_updated_at timestamptz,
    ADD COLUMN checked_at         timestamptz;

COMMENT ON COLUMN products.kinguin_price IS
    'The price (EUR) of Kinguin''s cheapest offer when last read; NULL: never read, or no '
    'offer in stock (Kinguin answered 404 ProductUnavailable).';
COMMENT ON COLUMN products.kinguin_qty IS
    'Keys in stock across Kinguin''s cheapest offers (any key type) when last told, by a read '
    'or a product.update webhook; NULL: never told.';
COMMENT ON COLUMN products.kinguin_text_qty IS
    'Text keys in stock across Kinguin''s cheapest offers (what a text_only product can buy); '
    'NULL: never told, or Kinguin did not say.';
COMMENT ON COLUMN products.kinguin_updated_at IS
    'Kinguin''s updatedAt of the newest answer applied (a read or a product.update webhook): '
    'a webhook dated at or before it is stale and ignored.';
COMMENT ON COLUMN products.checked_at IS
    'When the stored answer (price and stock) was last read from Kinguin, or came with a '
    'price in a product.update webhook. POST /orders reuses it while younger than '
    'BITLOOT_PRODUCT_CACHE_TTL; NULL: never read, or a webhook without a price changed the '
    'stock, so the next order reads the product again.';
COMMENT ON COLUMN products.updated_at IS
    'When the row last changed: by bitloot products add, or by a new answer from Kinguin '
    '(see checked_at).';

INSERT INTO webhook_outcomes (outcome, provider, meaning) VALUES
    ('product_updated', 'kinguin',
     'A product we sell: its Kinguin stock (and price, when sent) stored; without a price the'
     ' next order reads the product again.'),
    ('unknown_product', 'kinguin',
     'A product.update for a product we do not sell: recorded, nothing applied.');

-- New columns: the auditor's column grants are per column, so apply them again.
-- PERFORM, not SELECT: yoyo prints the rows a migration's SELECT returns.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
