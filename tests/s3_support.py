"""An S3 server that says no, for the tests: nanio (docs/tested-facts.md) refuses a bad or
expired SigV4 signature with 403, as R2 does; and a CORS proxy in front of it.

nanio answers no CORS at all (no preflight, no Access-Control-Allow-Origin, and it reads
`GET /bucket?cors` as a listing), so the browser path is proven through `cors_proxy_app`:
it plays the one part of R2 that nanio lacks, the bucket's CORS rule as PRODUCTION.md
documents it, and forwards every request byte for byte (Host header included, so the SigV4
signature nanio checks is the one the client made for the proxy's address).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aioboto3
import aiohttp
from aiohttp import web
from botocore.config import Config
from yarl import URL

from bitloot.processes import free_port
from bitloot.storage import S3ObjectStorage

NANIO_ACCESS = "nanio-test-access"
_HTTP = web.AppKey("http", aiohttp.ClientSession)
NANIO_SECRET = "nanio-test-secret-never-printed"


@dataclass(frozen=True)
class Nanio:
    """A running nanio server and its one pair of credentials."""

    endpoint: str
    access_key: str = NANIO_ACCESS
    secret_key: str = NANIO_SECRET

    def storage(
        self, bucket: str, *, endpoint: str | None = None, secret: str | None = None, **kw: Any
    ) -> S3ObjectStorage:
        """Our S3 backend on `bucket` (through `endpoint`, e.g. a proxy, if given)."""
        return S3ObjectStorage(
            bucket,
            endpoint_url=endpoint or self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=secret or self.secret_key,
            region="auto",
            **kw,
        )

    async def create_bucket(self, bucket: str) -> None:
        session = aioboto3.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key
        )
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
        async with session.client(
            "s3", endpoint_url=self.endpoint, region_name="auto", config=config
        ) as s3:
            await s3.create_bucket(Bucket=bucket)

    async def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        async with self.storage(bucket) as s3:
            page = await s3.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in page.get("Contents", [])]


@contextmanager
def running_nanio() -> Iterator[Nanio]:
    """Start nanio (pinned in the dev extras) on a free port; ready when GET / answers 403."""
    data_dir = Path(tempfile.mkdtemp(prefix="bitloot-test-nanio-"))
    port = free_port()
    env = {
        **os.environ,
        "NANIO_ACCESS_KEY": NANIO_ACCESS,
        "NANIO_SECRET_KEY": NANIO_SECRET,
        "NANIO_DATA_DIR": str(data_dir),
    }
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    # --http h11: with uvicorn's default parser a refused PUT's body poisons the reused
    # connection (docs/tested-facts.md).
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "nanio.app:build_app", "--http", "h11",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for_403(endpoint, proc)
        yield Nanio(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_403(endpoint: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"nanio exited with status {proc.returncode}"
        try:
            urllib.request.urlopen(f"{endpoint}/", timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 403:  # unsigned: refused, so it is up and checking
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nanio did not answer at {endpoint} within {timeout} s")


# --- the bucket's CORS rule, in front of nanio ------------------------------------------------

_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
}  # fmt: skip


def production_cors_rule(origin: str) -> dict[str, Any]:
    """The one rule PRODUCTION.md tells operators to set, for the key page's origin."""
    return {
        "AllowedOrigins": [origin],
        "AllowedMethods": ["GET"],
        "AllowedHeaders": [],
        "MaxAgeSeconds": 3600,
    }


def _rule_for(rules: list[dict[str, Any]], origin: str, method: str) -> dict[str, Any] | None:
    for rule in rules:
        origins = rule["AllowedOrigins"]
        if (origin in origins or "*" in origins) and method in rule["AllowedMethods"]:
            return rule
    return None


def _cors_xml(rules: list[dict[str, Any]]) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?><CORSConfiguration>']
    for rule in rules:
        parts.append("<CORSRule>")
        parts += [f"<AllowedOrigin>{escape(o)}</AllowedOrigin>" for o in rule["AllowedOrigins"]]
        parts += [f"<AllowedMethod>{escape(m)}</AllowedMethod>" for m in rule["AllowedMethods"]]
        parts += [f"<AllowedHeader>{escape(h)}</AllowedHeader>" for h in rule["AllowedHeaders"]]
        parts.append(f"<MaxAgeSeconds>{rule['MaxAgeSeconds']}</MaxAgeSeconds></CORSRule>")
    parts.append("</CORSConfiguration>")
    return "".join(parts).encode()


_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def cors_proxy_app(
    upstream: str, rules: list[dict[str, Any]], *, rule_readable: bool = True
) -> web.Application:
    """R2's CORS behaviour in front of `upstream`: a preflight is answered from `rules`
    (200 with the allow headers, or 403); a GET or HEAD from an allowed origin gets
    ``Access-Control-Allow-Origin``; ``GET /bucket?cors`` returns `rules` once nanio has
    accepted the request's signature (or AccessDenied, as R2 answers an object-scoped
    token, when `rule_readable` is false). Everything else is forwarded untouched."""

    async def preflight(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        method = request.headers.get("Access-Control-Request-Method", "")
        asked = [
            h.strip().lower()
            for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
            if h.strip()
        ]
        rule = _rule_for(rules, origin, method)
        allowed_headers = {h.lower() for h in (rule or {}).get("AllowedHeaders", [])}
        if rule is None or not all(h in allowed_headers or "*" in allowed_headers for h in asked):
            return web.Response(status=403, body=_ACCESS_DENIED, content_type="application/xml")
        return web.Response(
            status=200,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(rule["AllowedMethods"]),
                "Access-Control-Max-Age": str(rule["MaxAgeSeconds"]),
                "Vary": "Origin",
            },
        )

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return await preflight(request)
        http = request.app[_HTTP]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with http.request(
            request.method,
            URL(upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            status = answer.status
        is_bucket_cors = request.method == "GET" and "cors" in request.query
        if is_bucket_cors and status == 200 and request.path.strip("/").count("/") == 0:
            if rule_readable:
                payload = _cors_xml(rules)
            else:
                status, payload = 403, _ACCESS_DENIED
            out = {"Content-Type": "application/xml"}
        origin = request.headers.get("Origin")
        if origin and _rule_for(
            rules, origin, "GET" if request.method == "HEAD" else request.method
        ):
            out["Access-Control-Allow-Origin"] = origin
            out["Vary"] = "Origin"
        response = web.Response(status=status, headers=out)
        if request.method != "HEAD":
            response.body = payload
        return response

    async def session(app: web.Application) -> Any:
        app[_HTTP] = aiohttp.ClientSession()
        yield
        await app[_HTTP].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app
