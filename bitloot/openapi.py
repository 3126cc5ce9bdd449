"""`GET /openapi.json`: the OpenAPI 3.1 document of the API, built from the pydantic models.

`OPERATIONS` is the one hand-written part: per route (method and path template as the
router spells it) the summary, tag, who may call it, its parameters, request body and the
answers it gives. Every schema comes from a pydantic model (`models_json_schema`, whose
`$defs` become `components.schemas`); each operation's description is its handler's
docstring, read from the application's router. Errors are one shared `Problem` schema
(RFC 9457), specialised for 422 (`errors`) and for 429/502 (`retryAfter`).

Not documented, because they are not API: the key page's `/static/...` assets and the
local object store's `/objects/...` signed URLs (those only exist with file storage, and
clients get them whole from download-link). HEAD is implied by every GET.
"""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bitloot.admin.models import (
    FulfillmentTimelineOut,
    PaymentDetailOut,
    PaymentListQuery,
    PaymentPageOut,
    ReasonIn,
    ResendOut,
    RetryOut,
)
from bitloot.fulfillment.models import DownloadLinksOut, FulfillmentStatusOut
from bitloot.kinguin.models import OrderStatusEvent
from bitloot.nowpayments.models import Ipn
from bitloot.orders.models import CreatedOrderOut, CreateOrderIn, OrderOut, OrderPageOut
from bitloot.orders.service import DEFAULT_PAGE as DEFAULT_LIMIT
from bitloot.orders.service import MAX_PAGE as MAX_LIMIT
from bitloot.web.app import SETTINGS
from bitloot.web.errors import PROBLEM_CONTENT_TYPE

routes = web.RouteTableDef()

OPENAPI_PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
# Routes that are served but are not API (see the module docstring).
UNDOCUMENTED_PREFIXES = ("/static/", "/objects/")

REF = "#/components/schemas/{model}"
JSON = "application/json"


# --- models of answers that have no model in their handler's module ----------------------


class FieldError(BaseModel):
    """One invalid input: where it is (`["body", "items", 0, "qty"]`) and which rule failed."""

    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error answer.

    `type` is stable per kind of problem; `detail` is for people. Some problems carry more
    members (`allowed` on 405, `maxBytes` on 413, the order's statuses on an admin 409).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(default="", description="The request path.")
    requestId: str | None = Field(
        default=None, description="The `X-Request-Id` of the request; quote it when reporting."
    )


class ValidationProblem(Problem):
    """A 422: every invalid input at once, never the input values themselves."""

    errors: list[FieldError]


class RetryableProblem(Problem):
    """A 429 or 502: how long to wait before retrying (also the `Retry-After` header)."""

    retryAfter: int = Field(ge=0, description="Seconds to wait before retrying.")


class HealthOut(BaseModel):
    """`GET /healthz`: the process answers."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """`GET /readyz`: the database answers and no migration is pending."""

    status: Literal["ready"]
    database: Literal["ok"]
    migrations: Literal["current"]


class IpnAnswer(BaseModel):
    """`POST /webhooks/nowpayments`: the IPN was applied, or it is one already received."""

    status: Literal["accepted", "duplicate"]
    outcome: str = Field(description="What applying the IPN did (`paid`, `ignored`, ...).")


# --- the declarative table ----------------------------------------------------------------

SecurityScheme = Literal["userToken", "orderToken", "adminToken", "ipnSignature", "kinguinSecret"]

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user JWT (`sub`, `email`, `role` customer or admin).",
    },
    "orderToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An order access token (claim `order_id`): `accessToken` of "
        "`POST /orders`, or the `#token=` of the emailed key-page link.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user JWT with `role` admin.",
    },
    "ipnSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "x-nowpayments-sig",
        "description": "HMAC-SHA512 (hex) of the key-sorted IPN body with the IPN secret.",
    },
    "kinguinSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Event-Secret",
        "description": "The webhook secret configured at Kinguin.",
    },
}

HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "The request's id (the caller's own when it sent a sane one).",
        "required": True,
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "WwwAuthenticate": {
        "description": "The Bearer challenge (RFC 6750).",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The new order's URL.",
        "required": True,
        "schema": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """One documented answer: a model, a problem, a raw media type, or no body."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = JSON
    raw_schema: Mapping[str, Any] | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One route: `method` and `path` exactly as the router has them."""

    method: str
    path: str
    summary: str
    tag: str
    responses: Mapping[int, Reply]
    # Alternatives (any one suffices); () is public, None inside means "or no token".
    security: tuple[SecurityScheme | None, ...] = ()
    body: type[BaseModel] | None = None
    body_description: str = ""
    params: tuple[Param, ...] = ()
    query_model: type[BaseModel] | None = None
    # Documented only when the application serves it (metrics are off the API port by default).
    only_when_routed: bool = False


def problem(description: str) -> Reply:
    """A problem+json answer; the schema depends on the status (see `_problem_schema`)."""
    return Reply(description, media_type=PROBLEM_CONTENT_TYPE)


UUID_SCHEMA = {"type": "string", "format": "uuid"}


def uuid_path(name: str, what: str) -> Param:
    return Param(name, "path", UUID_SCHEMA, f"The {what}'s id.", required=True)


ORDER_ID = uuid_path("order_id", "order")
ANY_TOKEN: tuple[SecurityScheme, ...] = ("userToken", "orderToken", "adminToken")
ADMIN: tuple[SecurityScheme, ...] = ("adminToken",)

UNAUTHORIZED = problem("No bearer token, or one that fails verification.")
FORBIDDEN = problem("A valid token without the admin role.")
NO_ORDER = problem("No such order, or one this token may not see (the same answer).")
BAD_JSON = problem("The body is not JSON.")
TOO_LARGE = problem("The body is over the configured limit.")
INVALID = problem("Invalid input; `errors` lists each problem.")
RATE_LIMITED = problem("Over the rate limit; retry after `Retry-After` seconds.")
NOT_REPAIRABLE = problem("The order is not in a state this repair applies to.")

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/orders",
        "Create an order and its NOWPayments invoice",
        "orders",
        security=(None, "userToken"),
        body=CreateOrderIn,
        params=(
            Param(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 200},
                "Retrying with the same key returns the same order.",
            ),
        ),
        responses={
            201: Reply("The order, priced on the server.", CreatedOrderOut, headers=("Location",)),
            400: BAD_JSON,
            401: problem("A bearer token was sent and fails verification."),
            413: TOO_LARGE,
            422: problem("Invalid body, unknown or inactive products, or a reused key."),
            429: RATE_LIMITED,
            502: problem("NOWPayments did not create the invoice; retry with the same key."),
        },
    ),
    Operation(
        "GET",
        "/orders",
        "The caller's own orders, newest first",
        "orders",
        security=("userToken",),
        params=(
            Param(
                "cursor",
                "query",
                {"type": "string", "maxLength": 200},
                "`nextCursor` of the previous page.",
            ),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "Page size.",
            ),
        ),
        responses={
            200: Reply("One page of orders.", OrderPageOut),
            400: problem("The cursor is not one this API issued."),
            401: problem("No user token (an order token cannot list), or an invalid one."),
            422: INVALID,
        },
    ),
    Operation(
        "GET",
        "/orders/{order_id}",
        "An order and its statuses",
        "orders",
        security=ANY_TOKEN,
        params=(ORDER_ID,),
        responses={200: Reply("The order.", OrderOut), 401: UNAUTHORIZED, 404: NO_ORDER},
    ),
    Operation(
        "GET",
        "/orders/{order_id}/key",
        "The key page (HTML)",
        "key page",
        params=(ORDER_ID,),
        responses={
            200: Reply(
                "The page; its script reads the order token from the URL fragment.",
                media_type="text/html",
                raw_schema={"type": "string"},
            ),
            404: problem("The path does not hold a UUID."),
        },
    ),
    Operation(
        "POST",
        "/webhooks/nowpayments",
        "NOWPayments IPN",
        "webhooks",
        security=("ipnSignature",),
        body=Ipn,
        body_description="The IPN exactly as NOWPayments signs it.",
        responses={
            200: Reply("Accepted, or a duplicate of one already received.", IpnAnswer),
            400: problem("Not a JSON object, or not shaped like an IPN."),
            401: problem("Missing or invalid `x-nowpayments-sig`."),
            413: TOO_LARGE,
            429: problem("Too many bad signatures from this address."),
        },
    ),
    Operation(
        "POST",
        "/webhooks/kinguin",
        "Kinguin webhook",
        "webhooks",
        security=("kinguinSecret",),
        body=OrderStatusEvent,
        body_description=(
            "A JSON object; `order.status` and `order.complete` events are read as "
            "`OrderStatusEvent`, other events are acknowledged and ignored."
        ),
        params=(
            Param(
                "X-Event-Name",
                "header",
                {
                    "anyOf": [
                        {"enum": ["order.status", "order.complete", "product.update"]},
                        {"type": "string"},
                    ]
                },
                "The event; unknown events are acknowledged and ignored.",
            ),
        ),
        responses={
            204: Reply("Accepted, ignored, or a duplicate.", media_type=None),
            400: problem("Not a JSON object, or an order event with invalid fields."),
            401: problem("Missing or invalid `X-Event-Secret`."),
            413: TOO_LARGE,
            429: problem("Too many bad secrets from this address."),
        },
    ),
    Operation(
        "GET",
        "/fulfillment/{order_id}/status",
        "The order's and each key's status",
        "fulfillment",
        security=ANY_TOKEN,
        params=(ORDER_ID,),
        responses={
            200: Reply("Statuses only: never a key, a link or a data key.", FulfillmentStatusOut),
            401: UNAUTHORIZED,
            404: NO_ORDER,
        },
    ),
    Operation(
        "GET",
        "/fulfillment/{order_id}/download-link",
        "Signed URLs and data keys of a fulfilled order's keys",
        "fulfillment",
        security=ANY_TOKEN,
        params=(ORDER_ID,),
        responses={
            200: Reply("One link per key; each issue is recorded.", DownloadLinksOut),
            401: UNAUTHORIZED,
            404: NO_ORDER,
            409: problem("The order is not fulfilled yet (`orderStatus`, `fulfillmentStatus`)."),
            410: problem("The keys are gone: the order was refunded, or they expired."),
            429: RATE_LIMITED,
        },
    ),
    Operation(
        "GET",
        "/admin/payments",
        "Payments, newest first, filtered",
        "admin",
        security=ADMIN,
        query_model=PaymentListQuery,
        responses={
            200: Reply("One page of payments.", PaymentPageOut),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            422: problem("An unknown, repeated or invalid parameter, or a foreign cursor."),
        },
    ),
    Operation(
        "GET",
        "/admin/payments/{payment_id}",
        "A payment with its IPN history",
        "admin",
        security=ADMIN,
        params=(
            Param(
                "payment_id",
                "path",
                {"type": "string", "minLength": 1, "maxLength": 200},
                "The NOWPayments payment id.",
                required=True,
            ),
        ),
        responses={
            200: Reply("The payment and every IPN for it.", PaymentDetailOut),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: problem("No such payment."),
        },
    ),
    Operation(
        "GET",
        "/admin/orders/{order_id}/fulfillment",
        "The order's fulfillment timeline",
        "admin",
        security=ADMIN,
        params=(ORDER_ID,),
        responses={
            200: Reply("Everything that happened to the order.", FulfillmentTimelineOut),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: problem("No such order."),
        },
    ),
    Operation(
        "POST",
        "/admin/orders/{order_id}/fulfillment/retry",
        "Queue a failed fulfillment again (audited)",
        "admin",
        security=ADMIN,
        params=(ORDER_ID,),
        body=ReasonIn,
        responses={
            202: Reply("Queued again.", RetryOut),
            400: BAD_JSON,
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: problem("No such order."),
            409: NOT_REPAIRABLE,
            413: TOO_LARGE,
            422: INVALID,
        },
    ),
    Operation(
        "POST",
        "/admin/orders/{order_id}/delivery-email/resend",
        "Queue the delivery email again (audited)",
        "admin",
        security=ADMIN,
        params=(ORDER_ID,),
        body=ReasonIn,
        responses={
            202: Reply("The next generation of the email is queued.", ResendOut),
            400: BAD_JSON,
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: problem("No such order."),
            409: NOT_REPAIRABLE,
            413: TOO_LARGE,
            422: INVALID,
        },
    ),
    Operation(
        "GET",
        "/healthz",
        "Liveness",
        "operations",
        responses={200: Reply("The process is up.", HealthOut)},
    ),
    Operation(
        "GET",
        "/readyz",
        "Readiness",
        "operations",
        responses={
            200: Reply("The database answers and the schema is current.", ReadyOut),
            503: problem("The database is unreachable, or a migration is pending."),
        },
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics",
        "operations",
        only_when_routed=True,
        responses={
            200: Reply(
                "Prometheus text exposition.",
                media_type="text/plain",
                raw_schema={"type": "string"},
            )
        },
    ),
    Operation(
        "GET",
        OPENAPI_PATH,
        "This document",
        "operations",
        responses={
            200: Reply("The OpenAPI 3.1 document.", raw_schema={"type": "object"}),
        },
    ),
)


# --- building the document ----------------------------------------------------------------


def served_routes(app: web.Application) -> dict[tuple[str, str], web.AbstractRoute]:
    """The API routes `app` serves, by (method, canonical path): no HEAD, no assets."""
    served: dict[tuple[str, str], web.AbstractRoute] = {}
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        if resource.canonical.startswith(UNDOCUMENTED_PREFIXES):
            continue
        served[(route.method, resource.canonical)] = route
    return served


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (see the module docstring)."""
    served = served_routes(app)
    operations = [
        op for op in OPERATIONS if not op.only_when_routed or (op.method, op.path) in served
    ]
    schemas, refs = _component_schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        route = served.get((op.method, op.path))
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, route, refs)
    settings = app.get(SETTINGS)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "BitLoot API",
            "version": _version(),
            "description": (
                "Crypto-paid digital-key delivery. Errors are `application/problem+json` "
                "(RFC 9457) with `type`, `title`, `status` and `detail`."
            ),
        },
        "servers": [{"url": settings.public_url}] if settings is not None else [],
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in operations)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }


_Key = tuple[type[BaseModel], JsonSchemaMode]


def _component_schemas(
    operations: list[Operation],
) -> tuple[dict[str, Any], dict[_Key, dict[str, Any]]]:
    """`components.schemas` for every model in `operations`, and each model's `$ref`."""
    wanted: dict[_Key, None] = {
        (Problem, "validation"): None,
        (ValidationProblem, "validation"): None,
        (RetryableProblem, "validation"): None,
    }
    for op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for reply in op.responses.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    by_model = {(model, mode): refs[(model, mode)] for model, mode in wanted}
    return dict(sorted(top.get("$defs", {}).items())), by_model


def _operation(
    op: Operation, route: web.AbstractRoute | None, refs: Mapping[_Key, dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": route.handler.__name__ if route is not None else _fallback_id(op),
        "summary": op.summary,
        "tags": [op.tag],
    }
    description = inspect.getdoc(route.handler) if route is not None else None
    if description:
        doc["description"] = description
    params = [_parameter(p) for p in op.params]
    if op.query_model is not None:
        params.extend(_query_parameters(op.query_model))
    if params:
        doc["parameters"] = params
    if op.body is not None:
        body: dict[str, Any] = {
            "required": True,
            "content": {JSON: {"schema": refs[(op.body, "validation")]}},
        }
        if op.body_description:
            body["description"] = op.body_description
        doc["requestBody"] = body
    doc["security"] = [{} if s is None else {s: []} for s in op.security]
    doc["responses"] = {
        str(status): _response(status, reply, refs) for status, reply in op.responses.items()
    }
    return doc


def _fallback_id(op: Operation) -> str:
    words = "".join(c if c.isalnum() else "_" for c in op.path).strip("_")
    return f"{op.method.lower()}_{words}"


def _parameter(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.location,
        "required": p.required or p.location == "path",
        "description": p.description,
        "schema": dict(p.schema),
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One optional query parameter per field of `model`, named by its alias."""
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    params = []
    for name, field_schema in schema["properties"].items():
        prop = dict(field_schema)
        prop.pop("title", None)
        prop.pop("description", None)  # the parameter's own
        if prop.get("default", 0) is None:
            del prop["default"]
        # Optional means "leave it out": a query string cannot carry null.
        alternatives = prop.pop("anyOf", None)
        if alternatives is not None:
            rest = [alt for alt in alternatives if alt.get("type") != "null"]
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": _field_description(model, name),
                "schema": prop,
            }
        )
    return params


def _field_description(model: type[BaseModel], alias: str) -> str:
    for name, info in model.model_fields.items():
        if alias in (name, info.alias):
            return info.description or alias
    return alias


def _response(status: int, reply: Reply, refs: Mapping[_Key, dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": reply.description}
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
    for name in reply.headers:
        headers[name] = {"$ref": f"#/components/headers/{name}"}
    if reply.media_type == PROBLEM_CONTENT_TYPE:
        schema: Mapping[str, Any] = {"$ref": REF.format(model=_problem_schema(status))}
        if status == 401:
            headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WwwAuthenticate"}
        if status in (429, 502):
            headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        if status == 503:
            headers["Retry-After"] = {
                "description": "Seconds to wait, when known.",
                "schema": {"type": "integer", "minimum": 0},
            }
    elif reply.model is not None:
        schema = refs[(reply.model, "serialization")]
    else:
        schema = reply.raw_schema or {}
    if reply.media_type is not None:
        doc["content"] = {reply.media_type: {"schema": dict(schema)}}
    doc["headers"] = headers
    return doc


def _problem_schema(status: int) -> str:
    if status == 422:
        return ValidationProblem.__name__
    if status in (429, 502):
        return RetryableProblem.__name__
    return Problem.__name__


def _version() -> str:
    try:
        return metadata.version("bitloot")
    except metadata.PackageNotFoundError:
        return "0.0.0"


# --- serving it ---------------------------------------------------------------------------

_DOCUMENTS: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


def openapi_document(app: web.Application) -> bytes:
    """The document of `app` as JSON bytes, built on first use and kept for the app's life."""
    document = _DOCUMENTS.get(app)
    if document is None:
        document = json.dumps(build_document(app), separators=(",", ":")).encode()
        _DOCUMENTS[app] = document
    return document


@routes.get(OPENAPI_PATH)
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this server: every endpoint, schema and error."""
    return web.Response(body=openapi_document(request.app), content_type=JSON)
