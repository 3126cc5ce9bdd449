"""`POST /orders` and `GET /orders/{id}` over real HTTP against the in-process API, the
NOWPayments simulator (or a failing stand-in for it) and a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from harness import Served, serve_app

from bitloot.auth.tokens import mint_user_token
from bitloot.config import Settings
from bitloot.server import build_app
from bitloot.web.context import RESOURCES

GAME = "5c9b5f6b2539a4e8f172916a"  # 14.99 eur
DLC = "5c9b5f6b2539a4e8f172916b"  # 4.99 eur
RETIRED = "5c9b5f6b2539a4e8f172916c"  # inactive
IN_USD = "5c9b5f6b2539a4e8f172916d"  # 9.99 usd

Conn = Any


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def catalog(conn: Conn, sim: Served) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost, active) VALUES"
        " (%s, 'Game', 14.99, 'eur', 12, true), (%s, 'DLC', 4.99, 'eur', 4, true),"
        " (%s, 'Old game', 2.99, 'eur', 2, false), (%s, 'US game', 9.99, 'usd', 8, true)",
        (GAME, DLC, RETIRED, IN_USD),
    )
    # POST /orders checks stock and price at Kinguin: GAME is seeded in the simulator, the
    # DLC is added there, in stock under its max_cost.
    dlc = {"product_id": DLC, "name": "DLC", "offers": [{"price": "3.49", "qty": 100}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim.url}/kinguin/sim/products", json=dlc) as resp,
    ):
        assert resp.status == 201, await resp.text()


def order_body(*items: tuple[str, int], email: str = "ada@example.com") -> dict[str, Any]:
    return {"email": email, "items": [{"productId": p, "qty": q} for p, q in items]}


async def post_order(
    http: aiohttp.ClientSession,
    base: str,
    body: Any,
    *,
    key: str | None = None,
    token: str | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(f"{base}/orders", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def get_order(
    http: aiohttp.ClientSession, base: str, order_id: str, token: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{base}/orders/{order_id}", headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def rows(conn: Conn, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, params)
    return list(await cur.fetchall())


def settings_of(api: Served) -> Settings:
    return api.app[RESOURCES].settings


def locs(body: dict[str, Any]) -> list[list[Any]]:
    return [e["loc"] for e in body["errors"]]


# --- validation ----------------------------------------------------------------------------


async def test_shape_problems_are_all_listed_at_once(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 0), (DLC, 10), email="not-an-email")
    status, problem, resp = await post_order(http, api.url, body)
    assert status == 422
    assert resp.content_type == "application/problem+json"
    assert sorted(map(str, locs(problem))) == sorted(
        map(
            str,
            [["body", "email"], ["body", "items", 0, "qty"], ["body", "items", 1, "qty"]],
        )
    )
    assert await rows(conn, "SELECT id FROM orders") == []


async def test_item_count_outside_1_to_10_is_422(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    for count in (0, 11):
        body = {"email": "ada@example.com", "items": [{"productId": GAME, "qty": 1}] * count}
        status, problem, _ = await post_order(http, api.url, body)
        assert status == 422
        assert ["body", "items"] in locs(problem)
    assert await rows(conn, "SELECT id FROM orders") == []


async def test_catalog_problems_are_all_listed_at_once(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 1), ("no-such-product", 1), (RETIRED, 1), (GAME, 2), (IN_USD, 1))
    status, problem, _ = await post_order(http, api.url, body)
    assert status == 422
    assert locs(problem) == [
        ["body", "items", 1, "productId"],  # unknown
        ["body", "items", 2, "productId"],  # inactive
        ["body", "items", 3, "productId"],  # listed twice
        ["body", "items"],  # eur and usd in one order
    ]
    assert await rows(conn, "SELECT id FROM orders") == []


async def test_shape_and_catalog_problems_are_listed_together(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 10), ("no-such-product", 1), email="ada")
    status, problem, _ = await post_order(http, api.url, body)
    assert status == 422
    assert sorted(map(str, locs(problem))) == sorted(
        map(
            str,
            [
                ["body", "email"],
                ["body", "items", 0, "qty"],
                ["body", "items", 1, "productId"],
            ],
        )
    )


async def test_client_cannot_set_an_amount(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = {
        "email": "ada@example.com",
        "items": [{"productId": GAME, "qty": 1, "unitPrice": "0.01"}],
        "totalAmount": "0.01",
        "currency": "usd",
    }
    status, problem, _ = await post_order(http, api.url, body)
    assert status == 422
    assert sorted(map(str, locs(problem))) == sorted(
        map(
            str,
            [["body", "totalAmount"], ["body", "currency"], ["body", "items", 0, "unitPrice"]],
        )
    )
    assert await rows(conn, "SELECT id FROM orders") == []


# --- a created order -----------------------------------------------------------------------


async def test_price_comes_from_products(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    status, created, _ = await post_order(http, api.url, order_body((GAME, 2), (DLC, 3)))
    assert status == 201, created
    assert (created["totalAmount"], created["currency"]) == ("44.95", "eur")
    assert await rows(conn, "SELECT product_id, qty, unit_price FROM order_items ORDER BY 1") == [
        (GAME, 2, Decimal("14.99")),
        (DLC, 3, Decimal("4.99")),
    ]
    async with http.get(created["invoiceUrl"]) as page:  # the simulator's invoice
        assert f"Order {created['id']}: 44.95 EUR" in await page.text()


async def test_created_order_is_waiting_with_its_invoice(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    status, created, resp = await post_order(http, api.url, order_body((GAME, 1)))
    assert status == 201
    assert resp.headers["Location"] == f"/orders/{created['id']}"
    [(order_status, invoice_id, invoice_url, user_id)] = await rows(
        conn, "SELECT status, invoice_id, invoice_url, user_id FROM orders"
    )
    assert (order_status, user_id) == ("waiting", None)
    assert invoice_id is not None
    assert invoice_url == created["invoiceUrl"]
    trail = await rows(conn, "SELECT to_status FROM order_events ORDER BY id")
    assert trail == [("created",), ("waiting",)]


async def test_customer_jwt_links_the_order_to_the_user(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    token = mint_user_token(settings_of(api), sub="user-42", email="ada@example.com")
    status, created, _ = await post_order(http, api.url, order_body((GAME, 1)), token=token)
    assert status == 201
    assert await rows(conn, "SELECT id, user_id FROM orders") == [
        (uuid.UUID(created["id"]), "user-42")
    ]


# --- idempotency ---------------------------------------------------------------------------


async def test_idempotency_key_replay_returns_the_same_order_and_invoice(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 1))
    _, first, _ = await post_order(http, api.url, body, key="checkout-1")
    status, again, _ = await post_order(http, api.url, body, key="checkout-1")
    assert status == 201
    assert (again["id"], again["invoiceUrl"]) == (first["id"], first["invoiceUrl"])
    [(invoice_id,)] = await rows(conn, "SELECT invoice_id FROM orders")
    # The simulator numbers invoices in sequence: no second one was asked for.
    async with http.get(f"{sim_base(first)}/nowpayments/invoice/{int(invoice_id) + 1}") as r:
        assert r.status == 404


def sim_base(created: dict[str, Any]) -> str:
    return str(created["invoiceUrl"]).split("/nowpayments/")[0]


async def test_a_user_reusing_a_key_for_another_request_gets_a_422_that_names_nothing(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    user = mint_user_token(settings_of(api), sub="user-1")
    _, first, _ = await post_order(http, api.url, order_body((GAME, 1)), key="k-2", token=user)
    for other in (order_body((GAME, 1), email="eve@example.com"), order_body((DLC, 2))):
        status, problem, _ = await post_order(http, api.url, other, key="k-2", token=user)
        assert status == 422
        assert locs(problem) == [["header", "Idempotency-Key"]]
        assert first["id"] not in str(problem) and "ada@" not in str(problem)
    assert len(await rows(conn, "SELECT id FROM orders")) == 1


async def test_the_same_request_normalised_is_a_replay(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    # The fingerprint reads the email case-insensitively and the items in any order.
    _, first, _ = await post_order(http, api.url, order_body((GAME, 1), (DLC, 2)), key="k-n")
    same = order_body((DLC, 2), (GAME, 1), email="Ada@Example.COM")
    status, again, _ = await post_order(http, api.url, same, key="k-n")
    assert (status, again["id"]) == (201, first["id"])
    assert len(await rows(conn, "SELECT id FROM orders")) == 1


async def test_a_guest_cannot_get_another_guests_token_by_reusing_their_key(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    _, victim, _ = await post_order(http, api.url, order_body((GAME, 1)), key="checkout-2")
    for other in (order_body((GAME, 1), email="eve@example.com"), order_body((DLC, 2))):
        status, created, _ = await post_order(http, api.url, other, key="checkout-2")
        # Another request under the same key is another guest's: an order of their own.
        assert status == 201, created
        assert created["id"] != victim["id"]
        assert created["accessToken"] != victim["accessToken"]
        status, _ = await get_order(http, api.url, victim["id"], created["accessToken"])
        assert status == 404
    assert len(await rows(conn, "SELECT id FROM orders")) == 3


async def test_two_users_using_the_same_key_get_two_orders(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    made = {}
    for sub in ("user-1", "user-2"):
        token = mint_user_token(settings_of(api), sub=sub)
        status, created, _ = await post_order(
            http, api.url, order_body((GAME, 1)), key="cart-1", token=token
        )
        assert status == 201, created
        made[sub] = created["id"]
    assert made["user-1"] != made["user-2"]
    assert sorted(await rows(conn, "SELECT user_id FROM orders")) == [("user-1",), ("user-2",)]
    assert sorted(await rows(conn, "SELECT scope FROM order_idempotency_keys")) == [
        ("user:user-1",),
        ("user:user-2",),
    ]


async def pay_in_full(http: aiohttp.ClientSession, conn: Conn, created: dict[str, Any]) -> None:
    """Pay the invoice through the simulator; its IPNs make the order `paid`."""
    [(invoice_id,)] = await rows(conn, "SELECT invoice_id FROM orders WHERE id = %s", created["id"])
    url = f"{sim_base(created)}/nowpayments/sim/invoices/{invoice_id}/pay"
    async with http.post(url, json={"wait": True, "interval_ms": 0}) as resp:
        assert resp.status == 201, await resp.text()
    [(order_status,)] = await rows(conn, "SELECT status FROM orders WHERE id = %s", created["id"])
    assert order_status == "paid"


async def test_a_replay_gets_a_token_only_while_the_order_awaits_payment(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 1))
    _, first, _ = await post_order(http, api.url, body, key="checkout-3")
    status, waiting, _ = await post_order(http, api.url, body, key="checkout-3")
    assert (status, waiting["id"], waiting["status"]) == (201, first["id"], "waiting")
    assert (await get_order(http, api.url, first["id"], waiting["accessToken"]))[0] == 200

    await pay_in_full(http, conn, first)
    status, paid, resp = await post_order(http, api.url, body, key="checkout-3")
    # The id and the status: nothing that opens the order, nor its invoice.
    assert status == 201
    assert paid == {
        "id": first["id"],
        "status": "paid",
        "totalAmount": "14.99",
        "currency": "eur",
        "locale": "en",
        "invoiceUrl": None,
        "accessToken": None,
    }
    assert resp.headers["Location"] == f"/orders/{first['id']}"
    assert await rows(conn, "SELECT purpose, count(*) FROM order_access_tokens GROUP BY 1") == [
        ("checkout", 2)
    ]


async def test_a_key_older_than_24_hours_makes_a_new_order(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession
) -> None:
    body = order_body((GAME, 1))
    _, first, _ = await post_order(http, api.url, body, key="monthly")
    await conn.execute(
        "UPDATE order_idempotency_keys SET created_at = now() - interval '24 hours 1 second'"
    )
    status, second, _ = await post_order(http, api.url, body, key="monthly")
    assert status == 201
    assert second["id"] != first["id"]
    assert second["accessToken"] and second["invoiceUrl"] != first["invoiceUrl"]
    # The key now protects retries of the new order, for 24 hours again.
    status, again, _ = await post_order(http, api.url, body, key="monthly")
    assert again["id"] == second["id"]
    assert await rows(conn, "SELECT order_id::text FROM order_idempotency_keys") == [
        (second["id"],)
    ]
    # The old column is no longer written.
    assert await rows(conn, "SELECT count(*) FROM orders WHERE idempotency_key IS NOT NULL") == [
        (0,)
    ]


@pytest.mark.parametrize("signed_in", [False, True])
async def test_concurrent_replays_all_answer_with_the_recorded_invoice(
    api: Served, catalog: None, conn: Conn, http: aiohttp.ClientSession, signed_in: bool
) -> None:
    body = order_body((GAME, 1))
    token = mint_user_token(settings_of(api), sub="user-1") if signed_in else None
    answers = await asyncio.gather(
        *(post_order(http, api.url, body, key="double-click", token=token) for _ in range(5))
    )
    assert [status for status, _, _ in answers] == [201] * 5
    [(order_id, invoice_url)] = await rows(conn, "SELECT id, invoice_url FROM orders")
    assert {(created["id"], created["invoiceUrl"]) for _, created, _ in answers} == {
        (str(order_id), invoice_url)
    }
    assert await rows(conn, "SELECT count(*) FROM order_idempotency_keys") == [(1,)]
    for _, created, _ in answers:  # every answer's token opens the one order
        assert (await get_order(http, api.url, str(order_id), created["accessToken"]))[0] == 200


# --- NOWPayments failing -------------------------------------------------------------------


class FlakyNowPayments:
    """Stands in for NOWPayments: 500 while `down`, else forwards to the simulator."""

    def __init__(self, sim_api: str) -> None:
        self.sim_api = sim_api
        self.down = True

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            # Retry-After: 0 keeps the client's own retries instant in tests.
            return web.json_response(
                {"status": False, "statusCode": 500, "code": "INTERNAL", "message": "boom"},
                status=500,
                headers={"Retry-After": "0"},
            )
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.sim_api + request.match_info["tail"],
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as resp,
        ):
            return web.Response(
                status=resp.status, body=await resp.read(), content_type=resp.content_type
            )


@pytest.fixture
async def flaky_api(
    make_settings: Callable[..., Settings], sim: Served, api_port: int
) -> AsyncIterator[tuple[Served, FlakyNowPayments]]:
    """The API talking to a NOWPayments that fails until told otherwise."""
    flaky = FlakyNowPayments(f"{sim.url}/nowpayments/v1/")
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/v1/{tail:.*}", flaky.handle)
    upstream = await serve_app(upstream_app)
    app = await build_app(make_settings(nowpayments_api_url=f"{upstream.url}/v1"))
    served = await serve_app(app, api_port)
    yield served, flaky
    await served.runner.cleanup()
    await upstream.runner.cleanup()


async def test_nowpayments_failure_is_502_and_leaves_the_order_created_with_the_error(
    flaky_api: tuple[Served, FlakyNowPayments],
    catalog: None,
    conn: Conn,
    http: aiohttp.ClientSession,
) -> None:
    api, _ = flaky_api
    status, problem, resp = await post_order(http, api.url, order_body((GAME, 1)), key="k-1")
    assert status == 502
    assert resp.content_type == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert problem["type"].endswith("/bad-gateway")
    assert "boom" not in str(problem)  # the provider's own words stay in the log
    [(order_status, invoice_id, invoice_url, invoice_error)] = await rows(
        conn, "SELECT status, invoice_id, invoice_url, invoice_error FROM orders"
    )
    assert (order_status, invoice_id, invoice_url) == ("created", None, None)
    assert invoice_error
    assert await rows(conn, "SELECT count(*) FROM order_items") == [(1,)]


async def test_retry_with_the_same_key_after_recovery_moves_the_order_to_waiting(
    flaky_api: tuple[Served, FlakyNowPayments],
    catalog: None,
    conn: Conn,
    http: aiohttp.ClientSession,
) -> None:
    api, flaky = flaky_api
    body = order_body((GAME, 1))
    first_status, _, _ = await post_order(http, api.url, body, key="k-3")
    assert first_status == 502
    flaky.down = False
    status, created, _ = await post_order(http, api.url, body, key="k-3")
    assert status == 201, created
    assert created["status"] == "waiting"
    [(order_id, order_status, invoice_id, invoice_error)] = await rows(
        conn, "SELECT id, status, invoice_id, invoice_error FROM orders"
    )
    assert str(order_id) == created["id"]
    assert (order_status, invoice_error) == ("waiting", None)
    assert invoice_id is not None


# --- reading an order ----------------------------------------------------------------------


@pytest.fixture
async def two_orders(
    api: Served, catalog: None, http: aiohttp.ClientSession
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order of user-1 and one of user-2, as `POST /orders` answered them."""
    made = []
    for sub in ("user-1", "user-2"):
        token = mint_user_token(settings_of(api), sub=sub)
        status, created, _ = await post_order(http, api.url, order_body((GAME, 1)), token=token)
        assert status == 201
        made.append(created)
    return made[0], made[1]


async def test_order_is_readable_by_its_token_its_owner_and_an_admin(
    api: Served, http: aiohttp.ClientSession, two_orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, _ = two_orders
    readers = {
        "order_token": mine["accessToken"],
        "owner": mint_user_token(settings_of(api), sub="user-1"),
        "admin": mint_user_token(settings_of(api), sub="ops", admin=True),
    }
    for reader, token in readers.items():
        status, order = await get_order(http, api.url, mine["id"], token)
        assert status == 200, reader
        assert (order["id"], order["status"], order["totalAmount"]) == (
            mine["id"],
            "waiting",
            "14.99",
        )
        assert [i["productId"] for i in order["items"]] == [GAME]


async def test_order_is_hidden_from_everyone_else(
    api: Served, http: aiohttp.ClientSession, two_orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, theirs = two_orders
    admin = mint_user_token(settings_of(api), sub="ops", admin=True)
    callers: dict[str, tuple[str, str | None, int]] = {
        "another order's token": (mine["id"], theirs["accessToken"], 404),
        "another user": (mine["id"], mint_user_token(settings_of(api), sub="user-2"), 404),
        "no token": (mine["id"], None, 401),
        "a garbage token": (mine["id"], "garbage", 401),
        "an admin, a garbage id": ("not-an-id", admin, 404),
        "an admin, an unknown id": (str(uuid.uuid4()), admin, 404),
    }
    for caller, (order_id, token, expected) in callers.items():
        status, problem = await get_order(http, api.url, order_id, token)
        assert status == expected, caller
        assert "email" not in problem, caller
