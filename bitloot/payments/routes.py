"""`POST /webhooks/nowpayments`: verify, store once, apply, answer within NOWPayments' 3 s.

No outbound call happens here: the fulfillment is a job enqueued in the same transaction.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from bitloot.api.context import context
from bitloot.api.errors import BadRequest, Unauthorized
from bitloot.api.ratelimit import limit_failed_signature
from bitloot.db.connect import set_actor
from bitloot.fulfillment.tasks import defer_fulfillment
from bitloot.metrics import IPN_OUTCOMES
from bitloot.payments.ipn import apply_ipn
from bitloot.payments.models import Ipn
from bitloot.payments.signature import MalformedIpn, parse_ipn_json, verify_ipn_signature

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)


@routes.post("/webhooks/nowpayments")
async def nowpayments_ipn(request: web.Request) -> web.Response:
    """Accept a NOWPayments IPN: 200 accepted or duplicate, 401 unsigned, 400 malformed."""
    ctx = context(request)
    raw = await request.read()
    secret = ctx.settings.nowpayments_ipn_secret
    signature = request.headers.get("x-nowpayments-sig")
    try:
        variant = verify_ipn_signature(raw, signature, secret.get_secret_value() if secret else "")
        if variant is None:
            IPN_OUTCOMES.labels(outcome="bad_signature").inc()
            log.warning("ipn.rejected", reason="signature" if signature else "no_signature")
            await limit_failed_signature(request, "nowpayments")  # 429 past the limit
            raise Unauthorized("Missing or invalid x-nowpayments-sig.")
        ipn = Ipn.from_parsed(parse_ipn_json(raw))
    except MalformedIpn as exc:
        IPN_OUTCOMES.labels(outcome="malformed").inc()
        raise BadRequest(str(exc)) from None

    async with ctx.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "nowpayments", f"IPN {ipn.payment_status} for {ipn.payment_id}")
        result = await apply_ipn(
            conn,
            ipn,
            raw_body=raw.decode("utf-8"),
            signature_variant=variant,
            policy=ctx.policy,
            enqueue_fulfillment=defer_fulfillment,
        )
    IPN_OUTCOMES.labels(outcome="duplicate" if result.duplicate else "accepted").inc()
    log.info(
        "ipn.accepted",
        payment_id=ipn.payment_id,
        payment_status=ipn.payment_status,
        outcome=result.outcome,
        duplicate=result.duplicate,
        variant=variant,
    )
    return web.json_response(
        {"status": "duplicate" if result.duplicate else "accepted", "outcome": result.outcome}
    )
