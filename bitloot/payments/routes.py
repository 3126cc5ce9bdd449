"""`POST /webhooks/nowpayments`: verify, store once, apply, answer within NOWPayments' 3 s.

No outbound call happens here: the fulfillment is a job enqueued in the same transaction.
"""

from __future__ import annotations

from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from bitloot.config import secret_values
from bitloot.metrics import IPN_OUTCOMES
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import MalformedIpn, parse_ipn_json, verify_parsed_ipn_signature
from bitloot.payments.service import apply_ipn
from bitloot.web.context import resources
from bitloot.web.contract import ApiKey, Ok, operation
from bitloot.web.errors import BadRequest, Unauthorized
from bitloot.web.middleware import add_log_fields
from bitloot.web.problems import TOO_LARGE
from bitloot.web.ratelimit import limit_failed_signature

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

# Checked by the handler (declared for the document): the signature covers the body.
IPN_SIGNATURE = ApiKey(
    "ipnSignature",
    "x-nowpayments-sig",
    "HMAC-SHA512 (hex) of the key-sorted IPN body with the IPN secret.",
)


class IpnAnswer(BaseModel):
    """`POST /webhooks/nowpayments`: the IPN was applied, or it is one already received."""

    status: Literal["accepted", "duplicate"]
    outcome: str = Field(description="What applying the IPN did (`paid`, `ignored`, ...).")


@routes.post("/webhooks/nowpayments")
@operation(
    "NOWPayments IPN",
    tag="webhooks",
    security=IPN_SIGNATURE,
    body=Ipn,
    body_description="The IPN exactly as NOWPayments signs it.",
    ok=Ok(200, "Accepted, or a duplicate of one already received.", IpnAnswer),
    problems={
        400: "Not a JSON object, or not shaped like an IPN.",
        413: TOO_LARGE,
        429: "Too many bad signatures from this address.",
    },
)
async def nowpayments_ipn(request: web.Request) -> web.Response:
    """Accept a NOWPayments IPN: 200 accepted or duplicate, 401 unsigned, 400 malformed."""
    ctx = resources(request)
    raw = await request.read()
    secrets = secret_values(ctx.settings.nowpayments_ipn_secret)
    signature = request.headers.get("x-nowpayments-sig")
    try:
        # Parsed once, for both the signature and the model (only when a check is possible:
        # an unsigned body is a 401 whatever it holds).
        obj = parse_ipn_json(raw) if (signature or "").strip() and secrets else None
        variant = None
        for secret in secrets if obj is not None else []:  # more than one while rotating
            variant = verify_parsed_ipn_signature(obj, signature, secret)
            if variant is not None:
                break
        if variant is None:
            IPN_OUTCOMES.labels(outcome="bad_signature").inc()
            log.warning("ipn.rejected", reason="signature" if signature else "no_signature")
            await limit_failed_signature(request, "nowpayments")  # 429 past the limit
            raise Unauthorized("Missing or invalid x-nowpayments-sig.")
        ipn = Ipn.from_parsed(obj)  # MalformedIpn too for what the database cannot store
    except MalformedIpn as exc:
        IPN_OUTCOMES.labels(outcome="malformed").inc()
        raise BadRequest(str(exc)) from None

    async with ctx.pool.connection() as conn, conn.transaction():
        result = await apply_ipn(
            conn,
            ipn,
            raw_body=raw.decode("utf-8"),
            signature_variant=variant,
            actor="nowpayments",
            actor_reason=f"IPN {ipn.payment_status} for {ipn.payment_id}",
        )
    IPN_OUTCOMES.labels(outcome="duplicate" if result.duplicate else "accepted").inc()
    # The request's one log line (`http.request`) carries what the IPN did.
    add_log_fields(
        request,
        ipn="duplicate" if result.duplicate else "accepted",
        order_id=str(result.order_id) if result.order_id else None,
        payment_id=ipn.payment_id,
        payment_status=ipn.payment_status,
        outcome=str(result.outcome),
        variant=variant,
    )
    return web.json_response(
        {"status": "duplicate" if result.duplicate else "accepted", "outcome": result.outcome}
    )
