"""Fulfillment endpoints: status and download links for customers (key replacement is
an admin action: `bitloot.admin.routes`).

Status and download-link answer the order's owner (user JWT `sub`), a token for the order,
or an admin; any other valid token gets the same 404 as a missing order. The download-link
response is a set of capabilities: it is never logged or cached, and each issue is
recorded per key. Only live keys are served: a replaced key's link is 410.
"""

from __future__ import annotations

import structlog
from aiohttp import hdrs, web

from bitloot.fulfillment import access
from bitloot.fulfillment.models import (
    DownloadLinkQuery,
    DownloadLinksOut,
    FulfillmentStatusOut,
    FulfillmentStatusQuery,
)
from bitloot.orders.service import Access
from bitloot.text import is_storable
from bitloot.web import ratelimit
from bitloot.web.context import resources
from bitloot.web.contract import Ok, authenticated, operation
from bitloot.web.errors import NotFound, UnprocessableEntity
from bitloot.web.ids import NO_ORDER, ORDER_ID, parse_order_id
from bitloot.web.problems import RATE_LIMITED

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
MAX_KEY_ID = 200


@routes.get("/fulfillment/{order_id}/status")
@operation(
    "The order's and each key's status",
    tag="fulfillment",
    security="bearer",
    params=(ORDER_ID,),
    query=FulfillmentStatusQuery,
    ok=Ok(
        200,
        "Statuses and what was bought, in words: never a key, a link, a data key or a price.",
        FulfillmentStatusOut,
    ),
    problems={404: NO_ORDER},
)
async def fulfillment_status(request: web.Request) -> web.Response:
    """The order's statuses, its items in words and each key's status; reveals and records
    nothing."""
    ctx = resources(request)
    principal = authenticated(request)
    order_id = parse_order_id(request)
    # Lenient: a language we do not speak (or garbage) gives the order's own language.
    lang = request.query.get("lang")
    async with ctx.pool.connection() as conn:
        status = await access.fulfillment_status(conn, order_id, Access.of(principal), lang)
    if status is None:
        raise NotFound("No such order.")
    return web.json_response(status.model_dump(mode="json"), headers=NO_STORE)


# No HEAD: aiohttp would answer it by running this handler, issuing links and writing an
# access event for a request that must be safe. HEAD gets 405 with `Allow: GET`.
@routes.get("/fulfillment/{order_id}/download-link", allow_head=False)
@operation(
    "Signed URLs and data keys of a fulfilled order's keys",
    tag="fulfillment",
    security="bearer",
    before=(ratelimit.limit_download_by_address,),  # before the token, so guessing costs
    params=(ORDER_ID,),
    query=DownloadLinkQuery,
    ok=Ok(
        200,
        "One link per live key (or the one asked for); each issue is recorded.",
        DownloadLinksOut,
    ),
    problems={
        404: f"{NO_ORDER} With `keyId`: the order has no such key.",
        409: "The order is not fulfilled yet (`orderStatus`, `fulfillmentStatus`).",
        410: "The keys are gone: the order was refunded, or they expired; with `keyId`, "
        "that key was replaced (problem type `key-replaced`, `replacedBy` names the new key) "
        "or revoked.",
        422: "`keyId` is empty, too long or not text.",
        429: RATE_LIMITED,
    },
)
async def download_link(request: web.Request) -> web.Response:
    """Signed URLs and data keys for a fulfilled order's keys, each issue recorded."""
    ctx = resources(request)
    principal = authenticated(request)
    await ratelimit.limit_download_by_principal(request, principal)
    order_id = parse_order_id(request)
    key_id = _key_id_query(request)
    requester = access.Requester.of(
        principal,
        ratelimit.client_address(request, ctx.settings),
        request.headers.get(hdrs.USER_AGENT),
    )
    async with ctx.pool.connection() as conn, conn.transaction():
        links = await access.issue_download_links(
            conn,
            order_id,
            Access.of(principal),
            requester,
            ring=ctx.ring,
            storage=ctx.storage,
            ttl_seconds=ctx.settings.signed_url_ttl,
            key_id=key_id,
        )
    if links is None:
        raise NotFound("No such order." if key_id is None else "No such order or key.")
    if principal.is_admin:
        log.warning(
            "fulfillment.admin_override",
            admin_id=principal.subject,
            order_id=str(order_id),
            keys=len(links.keys),
        )
    else:
        log.info(
            "fulfillment.links_issued",
            order_id=str(order_id),
            actor_kind=principal.kind,
            keys=len(links.keys),
        )
    return web.json_response(links.model_dump(mode="json"), headers=NO_STORE)


def _key_id_query(request: web.Request) -> str | None:
    """The optional `keyId` query parameter: 422 when repeated, empty, too long or not text."""
    values = request.query.getall("keyId", [])
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not 1 <= len(value) <= MAX_KEY_ID or not is_storable(value):
        raise UnprocessableEntity(
            [{"loc": ["query", "keyId"], "msg": "one key id of 1 to 200 characters"}]
        )
    return value
