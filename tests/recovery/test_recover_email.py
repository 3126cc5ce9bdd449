"""The whole path: recover for a known and an unknown address look the same from outside;
only the known one gets mail, its links work (the key opens), and the old link no longer
does. The email is sent by the worker's task (`deliver`) into the mail folder."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from recovery_support import (
    ACCEPTED_BODY,
    KEY,
    Conn,
    fulfilled_order,
    recover,
    recovery_emails,
    rows,
    served_api,
)

from bitloot.auth.order_tokens import mint_order_token
from bitloot.config import Settings
from bitloot.delivery.tasks import deliver
from bitloot.resources import open_resources
from bitloot.vault.crypto import DataKey, MasterKeyRing, open_blob
from bitloot.web.context import RESOURCES

LINK = re.compile(r"/orders/([0-9a-f-]{36})/key\?lang=en#token=(blot_[A-Za-z0-9_-]{43})")
NO_LIMITS = {
    "rate_limit_recover_per_email_per_hour": 0,
    "rate_limit_recover_per_address_per_hour": 0,
}


def mails(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_only_the_known_address_gets_mail_with_working_links(
    make_settings: Callable[..., Settings],
    api_port: int,
    conn: Conn,
    ring: MasterKeyRing,
    http: aiohttp.ClientSession,
) -> None:
    settings = make_settings(**NO_LIMITS)
    mail_dir = settings.effective_mail_dir
    async with served_api(make_settings, api_port, **NO_LIMITS) as api, AsyncExitStack() as stack:
        res = api.app[RESOURCES]
        first = await fulfilled_order(conn, ring, "ada@example.com", storage=res.storage)
        second = await fulfilled_order(conn, ring, "Ada@Example.com", storage=res.storage)
        await fulfilled_order(conn, ring, "bob@example.com", storage=res.storage)
        # The link of the first delivery email, working until the recovery email is sent.
        old_link = await mint_order_token(res.pool, first, purpose="email")
        status_url = f"{api.url}/fulfillment/{first}/status"
        assert (await get(http, status_url, old_link))[0] == 200

        known = await recover(http, api.url, {"email": "ada@example.com"})
        unknown = await recover(http, api.url, {"email": "nobody@example.com"})
        assert known.status == unknown.status == 202
        assert known.body == unknown.body == ACCEPTED_BODY

        # The worker sends what was queued: one email, for the known address only.
        worker = await open_resources(settings, stack, pool_size=2, mail=True)
        ((outbox_id, _, _),) = await recovery_emails(conn)
        assert await deliver(outbox_id, worker)
        assert not await deliver(outbox_id, worker)  # sent once
        (message,) = mails(mail_dir)
        assert message["To"].lower() == "ada@example.com"
        text = text_of(message)
        assert KEY not in text and KEY not in message.as_string()
        links = {uuid.UUID(order): token for order, token in LINK.findall(text)}
        assert set(links) == {first, second}
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        assert {uuid.UUID(o) for o, _ in LINK.findall(str(html.get_content()))} == {first, second}

        # The old link no longer works; each fresh one opens its order and its key.
        status, problem = await get(http, status_url, old_link)
        assert status == 401, problem
        for order_id, token in links.items():
            status, body = await get(http, f"{api.url}/fulfillment/{order_id}/status", token)
            assert status == 200, body
            assert body["orderStatus"] == "fulfilled"
            status, body = await get(http, f"{api.url}/fulfillment/{order_id}/download-link", token)
            assert status == 200, body
            (entry,) = body["keys"]
            async with http.get(entry["signedUrl"]) as resp:
                assert resp.status == 200
                blob = await resp.read()
            data_key = DataKey(base64.b64decode(entry["dataKey"]))
            assert open_blob(blob, data_key, order_id=order_id, key_id="key-1") == KEY.encode()

    purposes = await rows(
        conn,
        "SELECT purpose, revoked_at IS NOT NULL FROM order_access_tokens WHERE order_id = %s"
        " ORDER BY created_at",
        first,
    )
    assert purposes == [("email", True), ("recovery", False)]
