"""`/admin/webhook-endpoints`: the outbound webhook endpoints, for admins (role=admin).

Thin handlers over `service` (each change audited there, like `bitloot webhooks ...`).
A signing secret is in two answers only, once each: the registration's and a rotation's.
Every answer is marked `Cache-Control: no-store`; an id that is malformed, unknown or of a
removed endpoint is the same 404.
"""

from __future__ import annotations

import uuid
from functools import partial

import structlog
from aiohttp import web
from pydantic import BaseModel

from bitloot.admin import service
from bitloot.web.bodies import read_model
from bitloot.web.context import resources
from bitloot.web.contract import Ok, authenticated, operation, uuid_path
from bitloot.web.errors import NotFound, UnprocessableEntity
from bitloot.web.problems import BAD_JSON, TOO_LARGE
from bitloot.webhooks import service as webhooks
from bitloot.webhooks.service import (
    CreatedEndpointOut,
    DisableIn,
    EndpointIn,
    EndpointListOut,
    EndpointOut,
    RemovedEndpointOut,
    RotatedSecretOut,
)

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}
# The audit log's reason for the changes whose request carries none.
API_REASON = "api"
NO_ENDPOINT = "No such webhook endpoint (or it was removed)."
ENDPOINT_ID = uuid_path("endpoint_id", "webhook endpoint")
BASE = "/admin/webhook-endpoints"
_INVALID_ENDPOINT = (
    "Invalid body; a URL that is not https or whose host is, or resolves to, a private, "
    "loopback, link-local or metadata address; an unknown event type. `errors` says which."
)

endpoint_operation = partial(operation, tag="admin", security="admin")


@routes.post(BASE)
@endpoint_operation(
    "Register an outbound webhook endpoint; its signing secret is in this answer only",
    body=EndpointIn,
    ok=Ok(
        201,
        "Registered: the endpoint, and its signing secret (shown only now).",
        CreatedEndpointOut,
        headers={"Location": "The endpoint's URL in this API."},
    ),
    problems={400: "The body is not JSON.", 413: "The body is too large.", 422: _INVALID_ENDPOINT},
)
async def add_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint (audited) and answer with its secret, once."""
    admin = authenticated(request)
    body = await read_model(request, EndpointIn)
    res = resources(request)
    async with res.pool.connection() as conn, conn.transaction():
        try:
            new = await service.add_webhook_endpoint(
                conn,
                res.ring,
                admin_id=admin.subject,
                reason=API_REASON,
                url=body.url,
                events=body.events,
                description=body.description,
                allow_private=res.settings.webhook_allow_private_urls,
            )
        except webhooks.InvalidEndpoint as exc:
            raise _invalid(exc) from None
    out = CreatedEndpointOut(**webhooks.endpoint_out(new.endpoint).model_dump(), secret=new.secret)
    log.info("admin.webhook_endpoint_added", endpoint_id=str(out.id), admin_id=admin.subject)
    headers = {**_NO_STORE, "Location": f"{BASE}/{out.id}"}
    return web.json_response(out.model_dump(mode="json"), status=201, headers=headers)


@routes.get(BASE)
@endpoint_operation(
    "The outbound webhook endpoints",
    ok=Ok(200, "Every registered endpoint, oldest first (never a secret).", EndpointListOut),
)
async def list_endpoints(request: web.Request) -> web.Response:
    """Every registered (not removed) endpoint, with the ages of the secrets that sign."""
    async with resources(request).pool.connection() as conn:
        found = await webhooks.list_endpoints(conn)
    return _json(EndpointListOut(items=[webhooks.endpoint_out(e) for e in found]))


@routes.get(BASE + "/{endpoint_id}")
@endpoint_operation(
    "An outbound webhook endpoint",
    params=(ENDPOINT_ID,),
    ok=Ok(200, "The endpoint (never a secret).", EndpointOut),
    problems={404: NO_ENDPOINT},
)
async def get_endpoint(request: web.Request) -> web.Response:
    """One registered endpoint."""
    endpoint_id = _endpoint_id(request)
    async with resources(request).pool.connection() as conn:
        try:
            found = await webhooks.get_endpoint(conn, endpoint_id)
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
    return _json(webhooks.endpoint_out(found))


@routes.post(BASE + "/{endpoint_id}/disable")
@endpoint_operation(
    "Disable an outbound webhook endpoint (audited)",
    params=(ENDPOINT_ID,),
    body=DisableIn,
    ok=Ok(200, "Disabled (or it already was: nothing changed).", EndpointOut),
    problems={
        400: "The body is not JSON.",
        404: NO_ENDPOINT,
        413: "The body is too large.",
        422: "Invalid body; `errors` lists each problem.",
    },
)
async def disable_endpoint(request: web.Request) -> web.Response:
    """Stop new deliveries to an endpoint, with the admin's reason."""
    admin = authenticated(request)
    endpoint_id = _endpoint_id(request)
    body = await read_model(request, DisableIn)
    async with resources(request).pool.connection() as conn, conn.transaction():
        try:
            found = await service.disable_webhook_endpoint(
                conn, endpoint_id, admin_id=admin.subject, reason=body.reason
            )
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
        except webhooks.InvalidEndpoint as exc:
            raise _invalid(exc) from None
    log.info(
        "admin.webhook_endpoint_disabled", endpoint_id=str(endpoint_id), admin_id=admin.subject
    )
    return _json(webhooks.endpoint_out(found))


@routes.post(BASE + "/{endpoint_id}/enable")
@endpoint_operation(
    "Enable an outbound webhook endpoint again (audited)",
    params=(ENDPOINT_ID,),
    ok=Ok(
        200,
        "Enabled (or it already was); its pending deliveries are queued. Failed ones need "
        "a redelivery.",
        EndpointOut,
    ),
    problems={404: NO_ENDPOINT},
)
async def enable_endpoint(request: web.Request) -> web.Response:
    """Enable an endpoint again."""
    admin = authenticated(request)
    endpoint_id = _endpoint_id(request)
    async with resources(request).pool.connection() as conn, conn.transaction():
        try:
            found = await service.enable_webhook_endpoint(
                conn, endpoint_id, admin_id=admin.subject, reason=API_REASON
            )
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
    log.info("admin.webhook_endpoint_enabled", endpoint_id=str(endpoint_id), admin_id=admin.subject)
    return _json(webhooks.endpoint_out(found))


@routes.post(BASE + "/{endpoint_id}/rotate-secret")
@endpoint_operation(
    "Give an outbound webhook endpoint a new signing secret (audited)",
    params=(ENDPOINT_ID,),
    ok=Ok(
        200,
        "The new secret (shown only now); the previous one signs too until "
        "`previousSecretExpiresAt`.",
        RotatedSecretOut,
    ),
    problems={404: NO_ENDPOINT},
)
async def rotate_secret(request: web.Request) -> web.Response:
    """Make a new current secret; the old one keeps signing for the configured overlap."""
    admin = authenticated(request)
    endpoint_id = _endpoint_id(request)
    res = resources(request)
    async with res.pool.connection() as conn, conn.transaction():
        try:
            rotated = await service.rotate_webhook_secret(
                conn,
                res.ring,
                endpoint_id,
                admin_id=admin.subject,
                reason=API_REASON,
                overlap_seconds=res.settings.webhook_secret_overlap,
            )
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
    log.info("admin.webhook_secret_rotated", endpoint_id=str(endpoint_id), admin_id=admin.subject)
    out = RotatedSecretOut(
        endpointId=endpoint_id,
        secret=rotated.secret,
        previousSecretExpiresAt=rotated.previous_expires_at,
    )
    return _json(out)


@routes.delete(BASE + "/{endpoint_id}")
@endpoint_operation(
    "Remove an outbound webhook endpoint (audited)",
    params=(ENDPOINT_ID,),
    ok=Ok(
        200,
        "Removed: nothing more is sent to it; its pending deliveries failed ('endpoint removed').",
        RemovedEndpointOut,
    ),
    problems={404: NO_ENDPOINT},
)
async def remove_endpoint(request: web.Request) -> web.Response:
    """Remove an endpoint (its row stays, for the audit of its deliveries)."""
    admin = authenticated(request)
    endpoint_id = _endpoint_id(request)
    async with resources(request).pool.connection() as conn, conn.transaction():
        try:
            removed = await service.remove_webhook_endpoint(
                conn, endpoint_id, admin_id=admin.subject, reason=API_REASON
            )
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
    log.info("admin.webhook_endpoint_removed", endpoint_id=str(endpoint_id), admin_id=admin.subject)
    out = RemovedEndpointOut(
        id=endpoint_id, removedAt=removed.removed_at, failedDeliveries=removed.failed_deliveries
    )
    return _json(out)


@routes.post(BASE + "/{endpoint_id}/redeliver")
@endpoint_operation(
    "Send an endpoint one event again, or every event it failed since a time (audited)",
    params=(ENDPOINT_ID,),
    body=webhooks.RedeliverIn,
    ok=Ok(
        202,
        "The deliveries are pending again, due now (their earlier attempts are kept), and "
        "their jobs queued; a disabled endpoint gets them once enabled.",
        webhooks.RedeliveredOut,
    ),
    problems={
        400: BAD_JSON,
        404: "No such webhook endpoint, or (messageId) no such event for it.",
        413: TOO_LARGE,
        422: "Invalid body: exactly one of messageId and since is required.",
    },
)
async def redeliver_webhooks(request: web.Request) -> web.Response:
    """Put the endpoint's delivery of one event, or its failed deliveries since a time, back
    to pending and queue them, audited."""
    admin = authenticated(request)
    endpoint_id = _endpoint_id(request)
    body = await read_model(request, webhooks.RedeliverIn)
    reason = body.reason or "webhook redelivery"
    async with resources(request).pool.connection() as conn, conn.transaction():
        try:
            count = await service.redeliver_webhooks(
                conn,
                endpoint_id,
                admin_id=admin.subject,
                reason=reason,
                msg_id=body.messageId,
                since=body.since,
            )
        except webhooks.EndpointNotFound:
            raise NotFound(NO_ENDPOINT) from None
        except webhooks.DeliveryNotFound:
            raise NotFound("The endpoint was never sent this event.") from None
    log.info("admin.webhooks_redelivered", endpoint_id=str(endpoint_id), admin_id=admin.subject,
             redelivered=count)  # fmt: skip
    out = webhooks.RedeliveredOut(endpointId=endpoint_id, redelivered=count)
    return _json(out, status=202)


def _endpoint_id(request: web.Request) -> uuid.UUID:
    """The `{endpoint_id}` path segment; a malformed id is the same 404 as a missing one."""
    try:
        return uuid.UUID(request.match_info["endpoint_id"])
    except ValueError:
        raise NotFound(NO_ENDPOINT) from None


def _invalid(exc: webhooks.InvalidEndpoint) -> UnprocessableEntity:
    return UnprocessableEntity([{"loc": ["body", exc.field], "msg": str(exc)}])


def _json(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers=_NO_STORE)
