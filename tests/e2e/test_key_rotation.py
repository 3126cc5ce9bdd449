"""Master-key rotation, exactly as the README's runbook says, with real processes: the links
emailed before it still reveal the keys after it, and an admin resend revokes the old link.

The runbook: put a new key first in BITLOOT_MASTER_KEYS and restart every process, run
`bitloot keys rotate`, remove the old key and restart again."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import psycopg
from mail import SmtpSink, text_of
from stack import JWT_SECRET, Stack, issued_serials, reveal
from waiting import wait_until

from bitloot.auth.tokens import mint_user_token
from bitloot.config import load_settings
from bitloot.sim.kinguin_catalog import IMAGE_PRODUCT_ID, TEXT_PRODUCT_ID
from bitloot.vault.crypto import generate_master_key


def emailed_tokens(smtp: SmtpSink, order_id: str) -> list[str]:
    """The `#token=` of each delivery email of the order, oldest first."""
    tokens = []
    for message in smtp.for_order(order_id):
        link = re.search(
            r"/orders/" + order_id + r"/key(?:\?lang=[a-z]{2})?#token=([\w-]+)", text_of(message)
        )
        assert link, text_of(message)
        tokens.append(link[1])
    return tokens


async def wait_for_emails(smtp: SmtpSink, order_ids: list[str], count: int = 1) -> None:
    await wait_until(
        lambda: all(len(smtp.for_order(oid)) >= count for oid in order_ids),
        60,
        f"{count} delivery email(s) for each order",
        interval=0.1,
    )


async def restart(stack: Stack, master_keys: str) -> None:
    """Every API and worker process stopped, then started with `master_keys` (what an
    operator's rolling restart amounts to)."""
    stack.stop_children("api", "worker")
    stack.master_keys = master_keys
    await stack.start_api()
    stack.start_worker()


def master_key_ids(stack: Stack) -> set[str]:
    with psycopg.connect(stack.db_url) as conn:
        rows = conn.execute("SELECT DISTINCT master_key_id FROM key_delivery_logs").fetchall()
    return {row[0] for row in rows}


async def fulfil(
    stack: Stack, http: aiohttp.ClientSession, smtp: SmtpSink, product: str
) -> tuple[str, str]:
    """An order paid, fulfilled and emailed; (its id, the emailed link's token)."""
    order = await stack.create_order(http, [{"productId": product, "qty": 1}])
    await stack.pay(http, order["id"])
    rows = await stack.wait_until([order["id"]])
    assert rows[order["id"]][:2] == ("fulfilled", "fulfilled"), rows
    await wait_for_emails(smtp, [order["id"]])
    [token] = emailed_tokens(smtp, order["id"])
    return order["id"], token


async def test_emailed_links_survive_the_rotation_runbook(stack: Stack, smtp: SmtpSink) -> None:
    k1 = stack.master_keys
    k2 = generate_master_key("k2")
    stack.extra_env["BITLOOT_SMTP_URL"] = smtp.url
    await stack.start_sim()
    await stack.start_api()
    stack.start_worker()
    async with aiohttp.ClientSession() as http:
        links = dict(
            [await fulfil(stack, http, smtp, p) for p in (TEXT_PRODUCT_ID, IMAGE_PRODUCT_ID)]
        )
        issued = {oid: await issued_serials(stack, http, oid) for oid in links}
        assert all(issued.values())
        assert master_key_ids(stack) == {"k1"}

        # 1. The new key first, every process restarted.
        await restart(stack, f"{k2},{k1}")
        for oid, token in links.items():
            assert await reveal(http, stack.api, oid, token) == (200, issued[oid])
        # An order fulfilled mid-rotation has its data key wrapped by k2.
        mid_id, mid_token = await fulfil(stack, http, smtp, TEXT_PRODUCT_ID)
        links[mid_id] = mid_token
        issued[mid_id] = await issued_serials(stack, http, mid_id)
        assert master_key_ids(stack) == {"k1", "k2"}

        # 2. `bitloot keys rotate`, while the service runs.
        rotation = stack.spawn("rotate", "keys", "rotate")
        status = await asyncio.to_thread(rotation.wait, 120)
        assert status == 0, stack.log_text("rotate")[-3000:]
        assert master_key_ids(stack) == {"k2"}

        # 3. The old key removed, every process restarted with the new key only.
        await restart(stack, k2)
        assert "k1" not in stack.child_env()["BITLOOT_MASTER_KEYS"]

        # The links emailed before the rotation reveal the very keys Kinguin issued:
        # nothing had to be re-sent.
        for oid, token in links.items():
            assert await reveal(http, stack.api, oid, token) == (200, issued[oid]), oid

        # An admin resend revokes the earlier email's link; the new email's link works.
        first_id = next(iter(links))
        settings = load_settings(jwt_secret=JWT_SECRET)
        admin = {"Authorization": f"Bearer {mint_user_token(settings, sub='ops-1', admin=True)}"}
        url = f"{stack.api}/admin/orders/{first_id}/delivery-email/resend"
        async with http.post(url, json={"reason": "customer lost the email"}, headers=admin) as r:
            body = await r.json()
            assert r.status == 202, body
            # The delivery email's link and the payment receipt's link.
            assert body["revokedLinks"] == 2
        await wait_for_emails(smtp, [first_id], count=2)
        old, new = emailed_tokens(smtp, first_id)
        assert old == links[first_id] != new
        assert await reveal(http, stack.api, first_id, old) == (401, {})
        assert await reveal(http, stack.api, first_id, new) == (200, issued[first_id])
