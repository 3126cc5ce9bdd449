-- The customer knows what they bought and how to use it (issue 19).
--
-- Products keep what Kinguin says about each product beyond price and stock: the platform
-- the key activates on, where it works (Kinguin's `regionalLimitations` and the countries
-- of `countryLimitation`, where it will not activate), a cover image and the pre-order
-- facts. They are refreshed with the catalog (every read of GET /v2/products/{productId}).
--
-- POST /orders copies them, with the name, onto its order_items: the snapshot shown to the
-- customer on the key page and in every email is what they were shown when they ordered,
-- whatever Kinguin says later. orders.locale is the customer's language, chosen at
-- POST /orders (an explicit `locale`, else Accept-Language); emails and the emailed key
-- page link use it.

-- Each element a two-letter upper-case ISO 3166-1 code; an empty array: no exclusions.
CREATE FUNCTION bitloot_country_codes_valid(codes text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN array_to_string(codes, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'
           AND array_position(codes, NULL) IS NULL;

COMMENT ON FUNCTION bitloot_country_codes_valid(text[]) IS
    'True when every element is a two-letter upper-case country code (ISO 3166-1 alpha-2).';

-- image_url's length is its own test: PostgreSQL refuses a regex bound over 255 ({1,2000}).
ALTER TABLE products
    ADD COLUMN platform             text CHECK (length(platform) BETWEEN 1 AND 100),
    ADD COLUMN regional_limitations text CHECK (length(regional_limitations) BETWEEN 1 AND 200),
    ADD COLUMN excluded_countries   text[] NOT NULL DEFAULT '{}'
        CHECK (bitloot_country_codes_valid(excluded_countries)),
    ADD COLUMN image_url            text CHECK (image_url ~ '^https://[^\s"<>]+$' AND length(image_url) <= 2000),
    ADD COLUMN is_preorder          boolean NOT NULL DEFAULT false,
    ADD COLUMN release_date         date;

COMMENT ON COLUMN products.platform IS
    'Kinguin''s `platform` when last read (Steam, GOG COM, Xbox Series X|S, ...): where the '
    'key is activated; NULL: not read yet.';
COMMENT ON COLUMN products.regional_limitations IS
    'Kinguin''s `regionalLimitations` when last read (REGION FREE, EUROPE, ...): where the key '
    'works; NULL: not read yet.';
COMMENT ON COLUMN products.excluded_countries IS
    'Kinguin''s `countryLimitation` when last read: ISO country codes where the key will not '
    'activate; empty: none named.';
COMMENT ON COLUMN products.image_url IS
    'The https URL of Kinguin''s cover image when last read (shown in emails and by '
    'storefronts); NULL: none.';
COMMENT ON COLUMN products.is_preorder IS
    'Kinguin''s `isPreorder` when last read: keys come on or after release_date.';
COMMENT ON COLUMN products.release_date IS
    'Kinguin''s `releaseDate` when last read (a date); NULL: unknown.';

ALTER TABLE order_items
    ADD COLUMN name                 text CHECK (length(name) BETWEEN 1 AND 200),
    ADD COLUMN platform             text CHECK (length(platform) BETWEEN 1 AND 100),
    ADD COLUMN regional_limitations text CHECK (length(regional_limitations) BETWEEN 1 AND 200),
    ADD COLUMN excluded_countries   text[] NOT NULL DEFAULT '{}'
        CHECK (bitloot_country_codes_valid(excluded_countries)),
    ADD COLUMN image_url            text CHECK (image_url ~ '^https://[^\s"<>]+$' AND length(image_url) <= 2000),
    ADD COLUMN is_preorder          boolean NOT NULL DEFAULT false,
    ADD COLUMN release_date         date;

-- Orders made before this migration show the product as it is now.
UPDATE order_items i
   SET name = p.name, platform = p.platform, regional_limitations = p.regional_limitations,
       excluded_countries = p.excluded_countries, image_url = p.image_url,
       is_preorder = p.is_preorder, release_date = p.release_date
  FROM products p
 WHERE p.product_id = i.product_id;

ALTER TABLE order_items ALTER COLUMN name SET NOT NULL;

COMMENT ON COLUMN order_items.name IS
    'The product name shown to the customer when the order was made (copied from products).';
COMMENT ON COLUMN order_items.platform IS
    'products.platform when the order was made: the activation steps shown to the customer.';
COMMENT ON COLUMN order_items.regional_limitations IS
    'products.regional_limitations when the order was made: where the customer was told '
    'the key works.';
COMMENT ON COLUMN order_items.excluded_countries IS
    'products.excluded_countries when the order was made: where the customer was told the '
    'key will not activate.';
COMMENT ON COLUMN order_items.image_url IS
    'products.image_url when the order was made.';
COMMENT ON COLUMN order_items.is_preorder IS
    'products.is_preorder when the order was made: the customer was told the key comes on '
    'release.';
COMMENT ON COLUMN order_items.release_date IS
    'products.release_date when the order was made.';

ALTER TABLE orders
    ADD COLUMN locale text NOT NULL DEFAULT 'en' CHECK (locale ~ '^[a-z]{2}$');

COMMENT ON COLUMN orders.locale IS
    'The customer''s language (ISO 639-1: en, de, es), chosen at POST /orders from its '
    '`locale` field or Accept-Language: the language of every email and of the emailed key '
    'page link.';

-- New columns: the auditor's column grants are per column, so apply them again.
DO $$ BEGIN PERFORM bitloot_grant_roles(); END; $$;
