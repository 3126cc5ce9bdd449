"""`GET /fulfillment/{id}/status`: what was bought, in words and in the customer's language
(from the order's snapshot in order_items), and which product each key is for."""

from __future__ import annotations

import json
from datetime import date

from harness import COVERING_PAYMENT
from shop_support import Order, Shop

from bitloot.i18n.products import ProductFacts, describe
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID

STEAM_FACTS = ProductFacts(
    product_id=TEXT_PRODUCT_ID,
    name="Stardew Valley",
    qty=2,
    platform="Steam",
    regional_limitations="EUROPE",
    excluded_countries=("CH", "NO"),
)


async def sql_order(shop: Shop, lines: list[tuple[str, int]], *, paid: bool) -> Order:
    """An order written in SQL (POST /orders' own tests cover how one is made), `waiting`
    or `paid`, with a token for it."""
    cur = await shop.conn.execute(
        "INSERT INTO orders (email, currency, total_amount)"
        " VALUES ('ada@example.com', 'eur', 44.97) RETURNING id"
    )
    row = await cur.fetchone()
    assert row is not None
    order_id = row[0]
    for product_id, qty in lines:
        await shop.conn.execute(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price, max_cost, name)"
            " SELECT %s, product_id, %s, price, max_cost, name FROM products"
            " WHERE product_id = %s",
            (order_id, qty, product_id),
        )
    await shop.conn.execute("UPDATE orders SET status = 'waiting' WHERE id = %s", (order_id,))
    if paid:
        await shop.conn.execute(COVERING_PAYMENT, (order_id,))
        await shop.conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
    return Order(order_id, await shop.order_token(order_id))


async def snapshot(shop: Shop, order: Order, facts: ProductFacts, locale: str) -> None:
    """Write the order line's snapshot and the order's language, as POST /orders would."""
    await shop.conn.execute(
        "UPDATE order_items SET name = %s, platform = %s, regional_limitations = %s,"
        " excluded_countries = %s, is_preorder = %s, release_date = %s"
        " WHERE order_id = %s AND product_id = %s",
        (
            facts.name,
            facts.platform,
            facts.regional_limitations,
            list(facts.excluded_countries),
            facts.is_preorder,
            facts.release_date,
            order.id,
            facts.product_id,
        ),
    )
    await shop.conn.execute("UPDATE orders SET locale = %s WHERE id = %s", (locale, order.id))


def expected_item(facts: ProductFacts, locale: str) -> dict[str, object]:
    view = describe(facts, locale)
    return {
        "productId": view.product_id,
        "name": view.name,
        "qty": view.qty,
        "platform": view.platform,
        "platformCode": view.platform_code,
        "region": view.region,
        "excluded": view.excluded,
        "steps": view.steps,
        "redeemUrl": view.redeem_url,
        "redeemLabel": view.redeem_label,
        "preorder": view.preorder,
    }


async def test_items_are_described_in_the_orders_language_and_keys_name_their_product(
    shop: Shop,
) -> None:
    order = await sql_order(shop, [(TEXT_PRODUCT_ID, 2), (IMAGE_PRODUCT_ID, 1)], paid=True)
    await snapshot(shop, order, STEAM_FACTS, "de")
    await shop.fulfil(order)

    reply = await shop.get(f"/fulfillment/{order.id}/status", order.token)
    assert reply.status == 200
    body = reply.body
    assert body["locale"] == "de"
    items = {item["productId"]: item for item in body["items"]}
    assert items[TEXT_PRODUCT_ID] == expected_item(STEAM_FACTS, "de")
    assert items[TEXT_PRODUCT_ID]["region"] == "Funktioniert in Europa."
    assert "Schweiz" in items[TEXT_PRODUCT_ID]["excluded"]
    assert (
        items[TEXT_PRODUCT_ID]["redeemUrl"] == "https://store.steampowered.com/account/registerkey"
    )
    # Never a price or a cost, under any name.
    for item in body["items"]:
        assert set(item) == set(expected_item(STEAM_FACTS, "de"))
    assert "14.99" not in json.dumps(body) and "12.00" not in json.dumps(body)

    # Every key names the product it is for: two keys of the text product, one image key.
    products = sorted(key["productId"] for key in body["keys"])
    assert products == sorted([TEXT_PRODUCT_ID, TEXT_PRODUCT_ID, IMAGE_PRODUCT_ID])

    # The download links say it too.
    links = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert links.status == 200
    by_key = {key["keyId"]: key["productId"] for key in body["keys"]}
    assert {key["keyId"]: key["productId"] for key in links.body["keys"]} == by_key


async def test_lang_asks_for_another_language_and_an_unknown_one_gives_the_orders(
    shop: Shop,
) -> None:
    order = await sql_order(shop, [(TEXT_PRODUCT_ID, 1)], paid=False)
    facts = ProductFacts(
        product_id=TEXT_PRODUCT_ID,
        name="Hollow Knight: Silksong",
        platform="Steam",
        regional_limitations="REGION FREE",
        is_preorder=True,
        release_date=date(2027, 3, 1),
    )
    await snapshot(shop, order, facts, "de")
    path = f"/fulfillment/{order.id}/status"

    spanish = await shop.get(f"{path}?lang=es-MX", order.token)
    assert spanish.status == 200
    assert spanish.body["locale"] == "de"  # the order's language does not change
    assert spanish.body["items"] == [expected_item(facts, "es")]
    assert "2027" in spanish.body["items"][0]["preorder"]
    assert spanish.body["keys"] == []

    for lang in ("xx", "", "de\u0000", "x" * 300):
        reply = await shop.get(f"{path}?lang={lang}", order.token)
        assert reply.status == 200, lang
        assert reply.body["items"] == [expected_item(facts, "de")], lang
