"""`POST /webhooks/nowpayments`: verify, store once, apply, answer within NOWPayments' 3 s.

No outbound call happens here: the fulfillment is a job enqueued in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import structlog
from aiohttp import web

from bitloot.config import secret_values
from bitloot.db.connect import set_actor
from bitloot.metrics import IPN_OUTCOMES
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import MalformedIpn, parse_ipn_json, verify_parsed_ipn_signature
from bitloot.payments.service import PaymentPolicy, apply_ipn
from bitloot.web.context import resources
from bitloot.web.errors import BadRequest, Unauthorized
from bitloot.web.ratelimit import limit_failed_signature

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)


@routes.post("/webhooks/nowpayments")
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
        ipn = Ipn.from_parsed(obj)
        if invalid := _unstorable_fields(ipn):
            raise MalformedIpn(f"IPN body has invalid fields: {', '.join(invalid)}")
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
            policy=PaymentPolicy.of(ctx.settings),
        )
    IPN_OUTCOMES.labels(outcome="duplicate" if result.duplicate else "accepted").inc()
    log.info(
        "ipn.accepted",
        order_id=str(result.order_id) if result.order_id else None,
        payment_id=ipn.payment_id,
        payment_status=ipn.payment_status,
        outcome=result.outcome,
        duplicate=result.duplicate,
        variant=variant,
    )
    return web.json_response(
        {"status": "duplicate" if result.duplicate else "accepted", "outcome": result.outcome}
    )


# PostgreSQL cannot index text much over 2 kB, and NOWPayments ids are short numbers.
MAX_ID_CHARS = 200
ID_FIELDS = (
    "payment_id",
    "parent_payment_id",
    "invoice_id",
    "purchase_id",
    "order_id",
    "payment_extra_ids",
)
# The amount columns hold less than 10^18; below 10^-30 an amount is noise that would only
# make the arithmetic on it overflow.
SMALLEST_AMOUNT, AMOUNT_LIMIT = Decimal("1e-30"), Decimal("1e18")


def _unstorable_fields(ipn: Ipn) -> list[str]:
    """Names of the fields a signed IPN could carry that the database cannot store (which
    would fail the request with a 500): NUL or lone surrogates in text, ids too long to
    index, amounts out of range."""
    data = ipn.model_dump()
    bad = set(_bad_values(data))
    for name in ID_FIELDS:
        values = data[name] if isinstance(data[name], list) else [data[name]]
        if any(v is not None and len(v) > MAX_ID_CHARS for v in values):
            bad.add(name)
    return sorted(bad)


def _bad_values(value: Any, name: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _bad_values(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _bad_values(item, name)
    elif isinstance(value, Decimal):
        if value and not SMALLEST_AMOUNT <= abs(value) < AMOUNT_LIMIT:
            yield name
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield name
        else:
            if "\x00" in value:
                yield name
