"""`POST /orders/recover`: fresh key-page links by email, without telling who has orders.

Every well-formed request gets the same 202, the same body and headers, and takes at
least `RESPONSE_FLOOR_SECONDS`, whether the address has orders (one more INSERT and a job
deferred, in the same transaction), has none, or is over its own rate limit. Both paths
run the same statement (search, audit row, listed orders; `queries.sql`), but the known one
also queues the email: measured over loopback, its median answer came 2 to 3 ms later
(medians of 6 to 7 ms against 4 ms), which enough samples would show. With the floor the two
medians differ by under 0.1 ms; a floor well above the work's p90 (about 12 ms) keeps it
so under load, and the per-client limit keeps anyone from collecting many samples.

Two limits (GCRA, `bitloot.web.ratelimit`): per client address, counted first (bad input
included), answered with 429 and `Retry-After` (it says nothing about any address); and
per email address, answered with the same 202 (a 429 there would tell whether someone
asked for that address before), recorded as `rate_limited`, sending nothing.

Logs name the request id and its outcome, never the address.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiohttp import web

from bitloot.recovery import service
from bitloot.recovery.models import RecoverAcceptedOut, RecoverIn
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.contract import Ok, operation
from bitloot.web.problems import BAD_JSON, RATE_LIMITED, TOO_LARGE
from bitloot.web.ratelimit import client_address, limit_recovery_by_address, recovery_allowed_for

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

# Every accepted request answers no sooner than this after its body was read.
RESPONSE_FLOOR_SECONDS = 0.25

ACCEPTED = RecoverAcceptedOut(
    status="accepted",
    detail="If this address has orders, an email with fresh links is on its way.",
).model_dump(mode="json")


@routes.post("/orders/recover")
@operation(
    "Email fresh key-page links for an address's orders",
    tag="orders",
    security="none",  # anyone; a token would name nobody here
    before=(limit_recovery_by_address,),  # per client, before the body is read
    body=RecoverIn,
    body_description="The address the orders were placed with (matched in any case).",
    ok=Ok(
        202,
        "Always the same answer, whether or not the address has orders. When it has "
        "fulfilled orders whose keys are still kept, one email lists each with a fresh "
        "key-page link, and the links emailed before stop working.",
        RecoverAcceptedOut,
    ),
    problems={
        400: BAD_JSON,
        413: TOO_LARGE,
        422: "The body is not `{email}` with one valid email address.",
        429: RATE_LIMITED + " Counted per client address, not per email address.",
    },
)
async def recover_orders(request: web.Request) -> web.Response:
    """Record the request and, if the address has orders to recover, queue their email."""
    res = resources(request)
    body = await read_model(request, RecoverIn)
    started = time.monotonic()
    email = service.normalised_email(body.email)
    allowed = await recovery_allowed_for(request, service.address_digest(email))
    async with res.pool.connection() as conn, conn.transaction():
        recorded = await service.request_recovery(
            conn,
            email=email,
            client_ip=client_address(request, res.settings),
            rate_limited=not allowed,
        )
    log.info(
        "recovery.requested",
        recovery_request_id=recorded.request_id,
        outcome=recorded.outcome,
        order_count=recorded.order_count,
    )
    await asyncio.sleep(max(0.0, RESPONSE_FLOOR_SECONDS - (time.monotonic() - started)))
    return web.json_response(ACCEPTED, status=202, headers={"Cache-Control": "no-store"})
