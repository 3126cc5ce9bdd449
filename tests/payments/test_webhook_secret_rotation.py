"""During a webhook-secret rotation both the old and the new secret are accepted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from harness import serve_app
from ipn_support import ipn_for, post_ipn, signed

from bitloot.config import Settings
from bitloot.server import build_app


async def test_old_and_new_secrets_are_both_accepted(
    make_settings: Callable[..., Settings], api_port: int
) -> None:
    settings = make_settings(
        nowpayments_ipn_secret="new-ipn-secret-2026, old-ipn-secret-2025",
        kinguin_webhook_secret="new-kinguin-secret,old-kinguin-secret",
    )
    served = await serve_app(await build_app(settings), api_port)
    try:
        async with aiohttp.ClientSession() as http:
            for secret, expected in [
                ("new-ipn-secret-2026", 200), ("old-ipn-secret-2025", 200), ("other-secret", 401),
            ]:  # fmt: skip
                raw, sig = signed(ipn_for(uuid.uuid4(), payment_id=str(uuid.uuid4().int)[:10]),
                                  secret)  # fmt: skip
                status, _, body = await post_ipn(http, served.url, raw, sig)
                assert status == expected, (secret, body)
            event: dict[str, Any] = {
                "orderId": "KG1",
                "orderExternalId": str(uuid.uuid4()),
                "status": "processing",
                "updatedAt": "2026-11-29T08:00:00.000+00:00",
            }
            for secret, expected in [
                ("new-kinguin-secret", 204), ("old-kinguin-secret", 204), ("new", 401), ("", 401),
            ]:  # fmt: skip
                headers = {"X-Event-Name": "order.status", "X-Event-Secret": secret}
                async with http.post(
                    f"{served.url}/webhooks/kinguin", json=event, headers=headers
                ) as r:
                    assert r.status == expected, (secret, await r.text())
    finally:
        await served.runner.cleanup()
