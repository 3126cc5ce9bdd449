"""`POST /webhooks/kinguin`: a shared secret in `X-Event-Secret`, compared in constant time."""

from __future__ import annotations

import hmac
import json

import structlog
from aiohttp import web
from pydantic import ValidationError

from bitloot.catalog import service as catalog
from bitloot.config import secret_values
from bitloot.db.connect import set_actor
from bitloot.fulfillment.kinguin_webhook import receive_order_event
from bitloot.kinguin.models import OrderStatusEvent, load_json
from bitloot.metrics import KINGUIN_WEBHOOK_OUTCOMES
from bitloot.text import nests_too_deeply
from bitloot.web.bodies import too_deep
from bitloot.web.context import resources
from bitloot.web.contract import ApiKey, Ok, Param, operation
from bitloot.web.errors import BadRequest, Unauthorized
from bitloot.web.problems import TOO_LARGE
from bitloot.web.ratelimit import limit_failed_signature

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

ORDER_EVENTS = ("order.status", "order.complete")  # order.complete is deprecated but still sent
KNOWN_EVENTS = (*ORDER_EVENTS, "product.update")
# Checked by the handler (declared for the document), before anything else.
EVENT_SECRET = ApiKey(
    "kinguinSecret", "X-Event-Secret", "The webhook secret configured at Kinguin."
)


@routes.post("/webhooks/kinguin")
@operation(
    "Kinguin webhook",
    tag="webhooks",
    security=EVENT_SECRET,
    body=OrderStatusEvent,
    body_description=(
        "A JSON object; `order.status` and `order.complete` events are read as "
        "`OrderStatusEvent`, `product.update` as `{kinguinId, productId, qty, textQty, "
        "cheapestOfferId, updatedAt, price?}` (stock and price of a product we sell; older "
        "than what we hold, or for a product we do not sell: stored and ignored), other "
        "events are acknowledged and ignored."
    ),
    params=(
        Param(
            "X-Event-Name",
            "header",
            {"anyOf": [{"enum": list(KNOWN_EVENTS)}, {"type": "string"}]},
            "The event; unknown events are acknowledged and ignored.",
        ),
    ),
    ok=Ok(204, "Accepted, ignored, or a duplicate.", media_type=None),
    problems={
        400: "Not a JSON object (or nested too deeply), or an order or product event with "
        "invalid fields (named in `detail`).",
        413: TOO_LARGE,
        429: "Too many bad secrets from this address.",
    },
)
async def kinguin_webhook(request: web.Request) -> web.Response:
    """204 when accepted or a duplicate; 401 for a missing or wrong secret; 400 malformed."""
    accepted = secret_values(resources(request).settings.kinguin_webhook_secret)
    given = request.headers.get("X-Event-Secret", "")
    # Header bytes that are not UTF-8 arrive surrogate-escaped: encode them back, never crash.
    given_bytes = given.encode("utf-8", "surrogateescape")
    # Every configured secret is compared (constant time each), so timing says nothing.
    matches = [hmac.compare_digest(given_bytes, secret.encode()) for secret in accepted]
    if not given or not any(matches):
        KINGUIN_WEBHOOK_OUTCOMES.labels(outcome="bad_secret").inc()
        log.warning("kinguin_webhook.rejected", reason="secret" if given else "no_secret")
        await limit_failed_signature(request, "kinguin")  # 429 past the limit
        raise Unauthorized("Missing or invalid X-Event-Secret.")
    event_name = request.headers.get("X-Event-Name", "")
    raw = await request.read()
    if nests_too_deeply(raw):
        raise too_deep()
    try:
        # Strictly UTF-8 (RFC 8259): json.loads(bytes) would also take UTF-16/32.
        raw_text = raw.decode("utf-8")
        body = json.loads(raw_text)
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The body is not a JSON object.") from None
    if event_name not in KNOWN_EVENTS:
        KINGUIN_WEBHOOK_OUTCOMES.labels(outcome="ignored").inc()
        log.info("kinguin_webhook.ignored", event_name=event_name[:40])
        return web.Response(status=204)
    if event_name == "product.update":
        return await _product_update(request, raw_text)

    try:
        event = OrderStatusEvent.model_validate(
            body if event_name == "order.status" else {**body, "status": "completed"}
        )
    except ValidationError as exc:
        # Also ids the database could not store (NUL, lone surrogates, too long to index),
        # and times out of range. Named, never quoted.
        fields = sorted({".".join(map(str, err["loc"])) or "body" for err in exc.errors()})
        raise BadRequest(
            f"The order event has missing or invalid fields: {', '.join(fields)}."
        ) from None
    res = resources(request)
    async with res.pool.connection() as conn, conn.transaction():
        await set_actor(conn, "kinguin", f"webhook {event_name} {event.status}")
        result = await receive_order_event(conn, event_name, event, raw_text)
    KINGUIN_WEBHOOK_OUTCOMES.labels(outcome="duplicate" if result.duplicate else "accepted").inc()
    log.info(
        "kinguin_webhook.accepted",
        order_id=str(result.order_id) if result.order_id else None,
        kinguin_order_id=event.order_id,
        status=event.status,
        outcome=result.outcome,
    )
    return web.Response(status=204)


async def _product_update(request: web.Request, raw_text: str) -> web.Response:
    """Store Kinguin's new stock (and price) of a product we sell (`catalog`)."""
    try:
        # Parsed again keeping numbers exact: `price` is money.
        event = catalog.ProductUpdateEvent.model_validate(load_json(raw_text))
    except ValidationError as exc:
        fields = sorted({".".join(map(str, err["loc"])) or "body" for err in exc.errors()})
        raise BadRequest(
            f"The product event has missing or invalid fields: {', '.join(fields)}."
        ) from None
    async with resources(request).pool.connection() as conn, conn.transaction():
        await set_actor(conn, "kinguin", "webhook product.update")
        result = await catalog.receive_product_update(conn, event, raw_text)
    KINGUIN_WEBHOOK_OUTCOMES.labels(
        outcome="duplicate" if result.duplicate else "product_update"
    ).inc()
    log.info(
        "kinguin_webhook.product_update",
        product_id=event.product_id,
        qty=event.qty,
        text_qty=event.text_qty,
        outcome=result.outcome,
    )
    return web.Response(status=204)
