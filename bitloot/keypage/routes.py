"""`GET /orders/{id}/key` and its static assets.

The key page is static: the same HTML for every order, whose script reads the order id from
the path and the order token from the URL fragment (never sent to a server). Serving it
reads no database and changes nothing, so a mail scanner that prefetches the link reveals
and consumes nothing; only the Reveal button (download-link) is logged.

It is rendered once per language (`templates/keypage.html.j2`) and kept: `?lang=` (the
emailed link carries the order's language) if we speak it, else the browser's
Accept-Language. Everything the script says is in the page, translated (a JSON data block);
what was bought comes, in the page's language, from `GET /fulfillment/{id}/status?lang=`.

A malformed order id does not match the route, so it gets the API's 404: every emailed
link carries a real UUID, and the page then never has to handle garbage in its path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from bitloot import i18n
from bitloot.config import Settings
from bitloot.i18n import templates
from bitloot.web.app import SETTINGS
from bitloot.web.contract import Ok, Param, operation
from bitloot.web.ids import ORDER_ID

routes = web.RouteTableDef()

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PAGE_PATH = "/orders/{order_id:" + _UUID + "}/key"
SCRIPT_PATH = "/static/keypage.js"
STYLE_PATH = "/static/keypage.css"

# A year, for asset URLs that carry the current content hash (`?v=`); anything else must
# revalidate, so an old page never runs with a new script or the other way round.
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"

# Host names and IP literals only: a value that could break out of the header is refused.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]|\*\.[A-Za-z0-9.-]{1,250}")
_AWS_S3_ORIGIN = "https://*.amazonaws.com"


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str
    version: str


@dataclass(frozen=True)
class _Assets:
    script: _Asset
    style: _Asset


def _read(name: str) -> bytes:
    return (resources.files("bitloot.keypage") / "static" / name).read_bytes()


def _asset(name: str, content_type: str) -> _Asset:
    body = _read(name)
    digest = hashlib.sha256(body).hexdigest()
    return _Asset(
        body=body, content_type=content_type, etag=f'"{digest[:32]}"', version=digest[:16]
    )


@cache
def _assets() -> _Assets:
    """The script and the style sheet, read from the package once; the page links each by
    its content hash, so browsers may cache them for a year."""
    return _Assets(
        script=_asset("keypage.js", "text/javascript"),
        style=_asset("keypage.css", "text/css"),
    )


@cache
def page(locale: str) -> bytes:
    """The page in `locale`, rendered once (it is the same for every order)."""
    assets = _assets()
    html = templates.render(
        "bitloot.keypage",
        "keypage.html.j2",
        locale,
        script_url=f"{SCRIPT_PATH}?v={assets.script.version}",
        style_url=f"{STYLE_PATH}?v={assets.style.version}",
        languages=[(code, i18n.language_name(code)) for code in i18n.LOCALES],
    )
    return html.encode()


def page_locale(lang: str | None, accept_language: str | None) -> str:
    """The page's language: `?lang=` if we speak it, else the best for Accept-Language."""
    return i18n.supported(lang) or i18n.negotiate(accept_language)


def _origin(url: str | None) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, or None when it is not one."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def storage_origins(settings: Settings) -> list[str]:
    """Origins the page downloads ciphertext from.

    S3/R2: the endpoint's origin (the store signs path-style URLs, so the bucket is in the
    path), or AWS's S3 hosts when no endpoint is set. Local objects: `BITLOOT_PUBLIC_URL`,
    whose `/objects/...` this server answers; usually that is the page's own origin
    ('self'), but naming it too keeps the page working when it is opened under another
    host name than the public one.
    """
    scheme = settings.effective_storage_url.partition("://")[0].lower()
    if scheme == "s3":
        if not settings.s3_endpoint_url:
            return [_AWS_S3_ORIGIN]
        origin = _origin(settings.s3_endpoint_url)
    else:
        origin = _origin(settings.public_url)
    return [origin] if origin else []


def content_security_policy(settings: Settings) -> str:
    """The page's policy: its own script and style only, no inline code, no framing, and
    connections only to this API and the object store."""
    connect = " ".join(["'self'", *storage_origins(settings)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(settings: Settings) -> dict[str, str]:
    """Every security header the key page carries."""
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "X-Robots-Tag": "noindex, nofollow",
    }


LANG = Param(
    "lang",
    "query",
    {"type": "string"},
    "The page's language (a language tag: `de`, `es-MX`); one we do not speak, or none: "
    "the best for Accept-Language, else English. Emailed links carry the order's language.",
)


@routes.get(PAGE_PATH)  # HEAD too (aiohttp adds it to every GET route)
@operation(
    "The key page (HTML)",
    tag="key page",
    security="none",
    params=(ORDER_ID, LANG),
    ok=Ok(
        200,
        "The page; its script reads the order token from the URL fragment.",
        media_type="text/html",
        schema={"type": "string"},
        headers={"Content-Language": "The page's language (en, de or es)."},
    ),
    problems={404: "The path does not hold a UUID."},
)
async def key_page(request: web.Request) -> web.Response:
    """The key page in the customer's language; it reveals nothing by itself and touches
    no database."""
    locale = page_locale(request.query.get("lang"), request.headers.get(hdrs.ACCEPT_LANGUAGE))
    return web.Response(
        body=page(locale),
        content_type="text/html",
        charset="utf-8",
        headers={
            **page_headers(request.app[SETTINGS]),
            "Content-Language": locale,
            # The language may come from Accept-Language: a shared cache must key on it
            # (none may keep the page anyway: Cache-Control is no-store).
            "Vary": "Accept-Language",
        },
    )


def _serve(request: web.Request, asset: _Asset) -> web.Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": _IMMUTABLE if request.query.get("v") == asset.version else _REVALIDATE,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )


@routes.get(SCRIPT_PATH)
async def key_page_script(request: web.Request) -> web.Response:
    """The page's one script."""
    return _serve(request, _assets().script)


@routes.get(STYLE_PATH)
async def key_page_style(request: web.Request) -> web.Response:
    """The page's style sheet."""
    return _serve(request, _assets().style)
