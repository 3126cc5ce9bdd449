"""The whole key path on the S3/R2 backend: a real S3 server over HTTP that checks SigV4 and
presigned expiry as R2 does (nanio, tests/s3_support.py), the customer's download link, and
decryption from CONTRACT.md alone."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from harness import Served, serve_app
from s3_support import Nanio
from shop_support import OWNER, Shop

from bitloot.config import Settings

BUCKET = f"bitloot-e2e-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def s3_endpoint(nanio: Nanio) -> str:
    await nanio.create_bucket(BUCKET)
    return nanio.endpoint


@pytest.fixture
async def api(
    make_settings: Callable[..., Settings], api_port: int, s3_endpoint: str, nanio: Nanio
) -> AsyncIterator[Served]:
    """`bitloot serve` with BITLOOT_STORAGE_URL=s3://bucket (overrides the default `api`)."""
    from bitloot.server import build_app

    settings = make_settings(
        storage_url=f"s3://{BUCKET}",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=nanio.access_key,
        s3_secret_access_key=nanio.secret_key,
    )
    served = await serve_app(await build_app(settings), api_port)
    yield served
    await served.runner.cleanup()


async def test_keys_stored_in_s3_come_back_only_through_a_presigned_url_and_data_key(
    shop: Shop, s3_endpoint: str
) -> None:
    order = await shop.fulfilled_order(OWNER)
    reply = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
    assert reply.status == 200, reply.body
    issued = await shop.issued_keys(order)
    async with aiohttp.ClientSession() as plain:
        for key in reply.body["keys"]:
            url = key["signedUrl"]
            assert url.startswith(s3_endpoint)  # straight from the object store, not the API
            query = parse_qs(urlsplit(url).query)
            assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4, as R2 needs
            assert query["X-Amz-Expires"] == ["900"]
            async with plain.get(url) as resp:
                assert resp.status == 200
                blob = await resp.read()
            aad = f"{order.id}:{key['keyId']}".encode()
            plaintext = AESGCM(base64.b64decode(key["dataKey"])).decrypt(blob[1:13], blob[13:], aad)
            assert (key["contentType"], plaintext) == issued[key["keyId"]]
            for secret in issued.values():
                assert secret[1] not in blob  # the stored object is ciphertext
            # Without the signature, or with another one, the object store refuses it.
            async with plain.get(url.split("?", 1)[0]) as resp:
                assert resp.status == 403
            signature = query["X-Amz-Signature"][0]
            forged = url.replace(signature, signature[::-1])
            async with plain.get(forged) as resp:
                assert resp.status == 403
    stored: Any = await shop.scalar(
        "SELECT count(*) FROM key_delivery_logs WHERE order_id = %s", order.id
    )
    assert stored == len(issued)
