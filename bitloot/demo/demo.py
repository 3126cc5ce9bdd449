"""The scripted demo: one order from creation to the revealed key, step by step.

It drives the stack the way its users would: a customer (`POST /orders`, the emailed link,
download-link, decryption as the browser does it), NOWPayments (the simulator's signed
IPNs) and Kinguin (the simulator); it watches progress in the audit tables.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import sys
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bitloot.demo.stack import LocalStack, StackError
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID

T = TypeVar("T")
STEP_TIMEOUT = 60.0


class Progress:
    """One line per finished step, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.step = "start"

    def begin(self, step: str) -> None:
        self.step = step

    def done(self, what: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.start
        print(f"[{elapsed:6.1f}s] ok  {what:<22} {detail}", flush=True)


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str, stack: LocalStack) -> T:
    """Poll `check` until it returns something (at most STEP_TIMEOUT), watching the children."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        for name in list(stack.procs):
            stack.check_alive(name)
        value = await check()
        if value is not None:
            return value
        await asyncio.sleep(0.1)
    raise StackError(f"timed out waiting for {what}")


def _query(stack: LocalStack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.db_url) as conn:
        return conn.execute(sql, params).fetchall()


async def run_demo(stack: LocalStack, progress: Progress) -> int:
    """The order's journey; returns the number of keys revealed."""
    roles = _query(
        stack,
        "SELECT string_agg(rolname, ', ' ORDER BY rolname) FROM pg_roles"
        " WHERE rolname IN ('bitloot_app', 'bitloot_auditor')",
    )[0][0]
    progress.done("database roles", f"{roles or 'missing'} (the demo itself logs in as owner)")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        order_id = await _create_order(http, stack, progress)
        await _pay(http, stack, progress, order_id)
        await _wait_for_fulfillment(stack, progress, order_id)
        return await _email_and_reveal(http, stack, progress, order_id)


async def _create_order(http: aiohttp.ClientSession, stack: LocalStack, progress: Progress) -> str:
    progress.begin("order")
    async with http.post(
        f"{stack.api}/orders",
        json={"email": "ada@example.com", "items": [{"productId": TEXT_PRODUCT_ID, "qty": 1}]},
    ) as resp:
        order = await resp.json()
        if resp.status != 201:
            raise StackError(f"POST /orders answered {resp.status}: {order.get('title')}")
    progress.done("order created", f"{order['id']} ({order['totalAmount']} {order['currency']})")
    progress.done("invoice", order["invoiceUrl"])
    return str(order["id"])


async def _pay(
    http: aiohttp.ClientSession, stack: LocalStack, progress: Progress, order_id: str
) -> None:
    """Drive the payment through the NOWPayments simulator and watch each signed IPN land."""
    progress.begin("payment")
    [(invoice_id,)] = _query(stack, "SELECT invoice_id FROM orders WHERE id = %s", order_id)
    statuses = ["waiting", "confirming", "confirmed", "sending", "finished"]
    async with http.post(
        f"{stack.sim}/nowpayments/sim/invoices/{invoice_id}/pay",
        json={"statuses": statuses, "interval_ms": 250, "wait": False},
    ) as resp:
        if resp.status != 201:
            raise StackError(f"the NOWPayments simulator refused the payment ({resp.status})")
    for status in statuses:

        async def ipn_seen(status: str = status) -> bool | None:
            rows = _query(
                stack,
                "SELECT 1 FROM webhook_events WHERE provider = 'nowpayments' AND order_id = %s"
                " AND event_type = %s AND processed_at IS NOT NULL",
                order_id,
                status,
            )
            return True if rows else None

        await wait_for(ipn_seen, f"the signed IPN '{status}'", stack)
        progress.done(f"payment {status}", "signed IPN verified and applied")


async def _wait_for_fulfillment(stack: LocalStack, progress: Progress, order_id: str) -> None:
    progress.begin("kinguin order")

    async def kinguin_order() -> tuple[Any, ...] | None:
        rows = _query(
            stack, "SELECT kinguin_order_id FROM kinguin_orders WHERE order_id = %s", order_id
        )
        return rows[0] if rows else None

    (kinguin_id,) = await wait_for(kinguin_order, "the Kinguin order", stack)
    progress.done("kinguin order", f"{kinguin_id} (orderExternalId = our order id)")

    progress.begin("keys stored")

    async def fulfilled() -> list[tuple[Any, ...]] | None:
        rows = _query(stack, "SELECT status FROM orders WHERE id = %s", order_id)
        if rows and rows[0][0] == "fulfilled":
            return _query(
                stack,
                "SELECT key_id, object_key, master_key_id FROM key_delivery_logs"
                " WHERE order_id = %s",
                order_id,
            )
        return None

    keys = await wait_for(fulfilled, "fulfillment", stack)
    for _key_id, object_key, master_key_id in keys:
        progress.done("key encrypted+stored", f"{object_key} (data key wrapped by {master_key_id})")
    progress.done("order fulfilled", "delivery log written, email queued, same transaction")


async def _email_and_reveal(
    http: aiohttp.ClientSession, stack: LocalStack, progress: Progress, order_id: str
) -> int:
    """Follow the emailed link the way the key page does; print the keys."""
    progress.begin("email")
    mail_dir = stack.settings.effective_mail_dir

    async def delivery_email() -> EmailMessage | None:
        return _find_email(mail_dir, order_id)

    message = await wait_for(delivery_email, "the delivery email in " + str(mail_dir), stack)
    link = _key_page_link(message, order_id)
    progress.done("email", f"{message['Subject']!r} -> {mail_dir}")

    progress.begin("reveal")
    token = link.split("#token=", 1)[1]
    revealed = await _reveal(http, stack, order_id, token)
    issued = await _issued_by_kinguin(http, stack, order_id)
    if {k: v for k, (_, v) in revealed.items()} != issued:
        raise StackError("the revealed keys differ from what the Kinguin simulator issued")
    progress.done("download link", "signed URL + data key, decrypted here as the browser does")
    for key_id, (content_type, plaintext) in revealed.items():
        shown = (
            plaintext.decode()
            if content_type == "text/plain"
            else f"<{content_type}, {len(plaintext)} bytes>"
        )
        print(f"\n    revealed key {key_id}: {shown}")
    print(f"\n    key page: {link}")
    print("    (the demo stops its servers when it exits; `bitloot up` keeps them running)\n")
    return len(revealed)


def _find_email(mail_dir: Path, order_id: str) -> EmailMessage | None:
    if not mail_dir.exists():
        return None
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if not str(message["Message-ID"]).strip().startswith("<delivery-"):
            continue  # a notice (the payment receipt): the demo wants the key-page link
        body = message.get_body(preferencelist=("plain",))
        if body is not None and order_id in body.get_content():
            return message
    return None


def _key_page_link(message: EmailMessage, order_id: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(
        r"https?://\S+/orders/" + re.escape(order_id) + r"/key(?:\?lang=[a-z]{2})?#token=[\w.-]+",
        body.get_content(),
    )
    if match is None:
        raise StackError("the delivery email has no key-page link")
    return match.group(0)


async def _reveal(
    http: aiohttp.ClientSession, stack: LocalStack, order_id: str, token: str
) -> dict[str, tuple[str, bytes]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(
        f"{stack.api}/fulfillment/{order_id}/download-link", headers=headers
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise StackError(f"download-link answered {resp.status}: {body.get('title')}")
    out: dict[str, tuple[str, bytes]] = {}
    for key in body["keys"]:
        async with http.get(key["signedUrl"]) as obj:
            if obj.status != 200:
                raise StackError(f"the signed URL answered {obj.status}")
            blob = await obj.read()
        if blob[0] != 1:
            raise StackError("unknown ciphertext version")
        plaintext = AESGCM(base64.b64decode(key["dataKey"])).decrypt(
            blob[1:13], blob[13:], f"{order_id}:{key['keyId']}".encode()
        )
        out[key["keyId"]] = (key["contentType"], plaintext)
    return out


async def _issued_by_kinguin(
    http: aiohttp.ClientSession, stack: LocalStack, order_id: str
) -> dict[str, bytes]:
    async with http.get(f"{stack.sim}/kinguin/sim/orders?include_keys=1") as resp:
        orders = (await resp.json())["orders"]
    issued: dict[str, bytes] = {}
    for order in orders:
        if order.get("orderExternalId") != order_id:
            continue
        for product in order["products"]:
            for key in product.get("keys", []):
                if "serial" in key:
                    serial = key["serial"]
                    issued[key["id"]] = (
                        serial.encode() if key["type"] == "text/plain" else base64.b64decode(serial)
                    )
    return issued


def print_failure(progress: Progress, exc: BaseException) -> None:
    """The failed step and where to look, on stderr."""
    print(f"\nbitloot demo: step '{progress.step}' failed: {exc}", file=sys.stderr)
