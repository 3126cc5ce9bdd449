"""The customer endpoints' test client: orders made through the in-process API, paid through
the NOWPayments simulator and fulfilled by one `run_fulfillment` pass (no worker), and
tokens of every kind, good and bad."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import jwt
import psycopg

from bitloot.auth.order_tokens import Purpose, mint_order_token, revoke, token_hash
from bitloot.auth.tokens import mint_user_token
from bitloot.fulfillment.service import run_fulfillment
from bitloot.resources import Resources
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID

Conn = psycopg.AsyncConnection[Any]

OWNER = "user-owner"
OTHER = "user-other"
ADMIN = "admin-1"


@dataclass
class Reply:
    """An HTTP answer, read."""

    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Order:
    """An order made through the API, with the access token it came with."""

    id: uuid.UUID
    token: str


@dataclass
class Shop:
    """The API, the simulators and the database of one test, driven like a client would."""

    api_url: str
    sim_url: str
    http: aiohttp.ClientSession
    conn: Conn
    ctx: Resources
    runtime: Resources

    # --- tokens ---------------------------------------------------------------------

    def user_token(self, sub: str = OWNER, *, admin: bool = False) -> str:
        return mint_user_token(self.ctx.settings, sub=sub, admin=admin)

    async def order_token(self, order_id: uuid.UUID, purpose: Purpose = "checkout") -> str:
        return await mint_order_token(self.conn, order_id, purpose=purpose)

    async def expired_order_token(self, order_id: uuid.UUID) -> str:
        token = await self.order_token(order_id)
        await self.conn.execute(
            "UPDATE order_access_tokens SET created_at = now() - interval '2 hours',"
            " expires_at = now() - interval '1 hour' WHERE token_hash = %s",
            (token_hash(token),),
        )
        return token

    async def revoked_order_token(self, order_id: uuid.UUID) -> str:
        token = await self.order_token(order_id, purpose="email")
        await revoke(self.conn, order_id, purpose="email", reason="resend")
        return token

    def expired_user_token(self, sub: str = OWNER) -> str:
        now = int(time.time())
        claims = {"sub": sub, "role": "customer", "iat": now - 120, "exp": now - 60}
        secret = self.ctx.settings.jwt_secret
        assert secret is not None
        return jwt.encode(claims, secret.get_secret_value(), algorithm="HS256")

    @staticmethod
    def unsigned_token(sub: str = OWNER, *, admin: bool = True) -> str:
        """`alg: none`, no signature: the oldest JWT trick."""

        def part(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        claims = {"sub": sub, "role": "admin" if admin else "customer", "exp": time.time() + 600}
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."

    @staticmethod
    def foreign_token(sub: str = OWNER) -> str:
        """Well-formed and unexpired, signed with a key that is not ours."""
        claims = {"sub": sub, "role": "customer", "exp": int(time.time()) + 600}
        return jwt.encode(claims, "not-our-secret-but-long-enough-for-hs256!!", algorithm="HS256")

    # --- HTTP -----------------------------------------------------------------------

    async def get(self, path: str, token: str | None = None, **headers: str) -> Reply:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.get(f"{self.api_url}{path}", headers=headers) as resp:
            body = await resp.json(content_type=None)
            return Reply(resp.status, body, dict(resp.headers))

    # --- orders ---------------------------------------------------------------------

    async def create_order(
        self, owner: str | None = OWNER, items: list[dict[str, Any]] | None = None
    ) -> Order:
        """`POST /orders` (with `owner`'s JWT, or as a guest); the order is `waiting`."""
        headers = {} if owner is None else {"Authorization": f"Bearer {self.user_token(owner)}"}
        body = {
            "email": "ada@example.com",
            "items": items or [{"productId": TEXT_PRODUCT_ID, "qty": 1}],
        }
        async with self.http.post(f"{self.api_url}/orders", json=body, headers=headers) as resp:
            data = await resp.json()
        assert resp.status == 201, data
        return Order(uuid.UUID(data["id"]), data["accessToken"])

    async def pay(self, order: Order) -> None:
        """Pay the invoice in full through the simulator; the IPNs make the order `paid`."""
        cur = await self.conn.execute("SELECT invoice_id FROM orders WHERE id = %s", (order.id,))
        row = await cur.fetchone()
        assert row is not None and row[0]
        url = f"{self.sim_url}/nowpayments/sim/invoices/{row[0]}/pay"
        async with self.http.post(url, json={"wait": True, "interval_ms": 0}) as resp:
            assert resp.status == 201, await resp.text()
        assert await self.statuses(order) == ("paid", "pending")

    async def fulfil(self, order: Order) -> None:
        """One pass of the fulfillment job: buy, seal, store, record."""
        await run_fulfillment(self.runtime, order.id)
        assert await self.statuses(order) == ("fulfilled", "fulfilled")

    async def fulfilled_order(
        self, owner: str | None = OWNER, items: list[dict[str, Any]] | None = None
    ) -> Order:
        order = await self.create_order(owner, items)
        await self.pay(order)
        await self.fulfil(order)
        return order

    async def statuses(self, order: Order) -> tuple[str, str]:
        cur = await self.conn.execute(
            "SELECT status, fulfillment_status FROM orders WHERE id = %s", (order.id,)
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]

    async def issued_keys(self, order: Order) -> dict[str, tuple[str, bytes]]:
        """What the Kinguin simulator issued for the order: key id -> (type, plaintext)."""
        async with self.http.get(f"{self.sim_url}/kinguin/sim/orders?include_keys=1") as resp:
            orders = (await resp.json())["orders"]
        out: dict[str, tuple[str, bytes]] = {}
        for placed in orders:
            if placed.get("orderExternalId") != str(order.id):
                continue
            for product in placed["products"]:
                for key in product.get("keys", []):
                    kind, serial = key.get("type", "text/plain"), key["serial"]
                    text = kind == "text/plain"
                    out[key["id"]] = (kind, serial.encode() if text else base64.b64decode(serial))
        return out

    async def scalar(self, sql: str, *params: Any) -> Any:
        cur = await self.conn.execute(sql, params)
        row = await cur.fetchone()
        assert row is not None
        return row[0]


async def seed_products(conn: Conn) -> None:
    for product_id, name, price, max_cost, text_only in [
        (TEXT_PRODUCT_ID, "Text Game", "14.99", "12.00", True),
        (IMAGE_PRODUCT_ID, "Image Game", "29.99", "25.00", False),
    ]:
        await conn.execute(
            "INSERT INTO products (product_id, name, price, currency, max_cost, text_only)"
            " VALUES (%s, %s, %s, 'eur', %s, %s) ON CONFLICT DO NOTHING",
            (product_id, name, Decimal(price), Decimal(max_cost), text_only),
        )
