"""A handler's API contract, declared next to it, and the security it declares, enforced.

    @routes.get("/things/{thing_id}")
    @operation("A thing", tag="things", security="bearer", params=(THING_ID,),
               ok=Ok(200, "The thing.", ThingOut), problems={404: "No such thing."})
    async def get_thing(request: web.Request) -> web.Response:
        principal = authenticated(request)  # whom the token names

`bitloot.openapi` assembles the API's document from these contracts, one per routed
handler (`contract_of`), so a route is documented exactly as declared here. `security`:

- `"none"`: anyone.
- `"optional"`: no token, or a valid one (a bad one is a 401): `authenticated_or_none(request)`.
- `"bearer"`: any valid token: a user's, an order's or an admin's; 401 otherwise.
- `"user"`: a user token (a customer's or an admin's); an order token is a 401 too.
- `"admin"`: an admin's token; 401 without a valid token, 403 with anyone else's.

For those the decorator authenticates (`bitloot.web.auth`) before the handler runs, after
the contract's `before` hooks (a per-address rate limit that must count every guess, tokens
or none), and `authenticated(request)` gives the handler whom the token names.

An `ApiKey` (a webhook's signature or shared secret in a header) is declared for the
document only: its handler checks it, because only the handler can (the signature covers
the body it reads; failures count against a rate limit), and the decorator enforces nothing.

Each security brings its own 401/403 problems; `problems` declares the others, and may
reword those.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bitloot.auth.tokens import Principal
from bitloot.web.auth import authenticate, authenticate_optional, require_admin
from bitloot.web.context import resources
from bitloot.web.errors import Unauthorized
from bitloot.web.problems import FORBIDDEN, UNAUTHORIZED

JSON = "application/json"

Access = Literal["none", "optional", "bearer", "user", "admin"]
Hook = Callable[[web.Request], Awaitable[None]]
ResponseT = TypeVar("ResponseT", bound=web.StreamResponse)
Handler = Callable[[web.Request], Awaitable[ResponseT]]

# The bearer tokens, as OpenAPI security schemes.
BEARER_SCHEMES: dict[str, dict[str, Any]] = {
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user JWT (`sub`, `email`, `role` customer or admin).",
    },
    "orderToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "opaque (blot_...)",
        "description": "An order access token: an opaque string (`blot_` and 43 base64url "
        "characters) that opens one order, the `accessToken` of `POST /orders` or the "
        "`#token=` of an emailed key-page link. BitLoot stores only its hash; it expires "
        "after `BITLOOT_ORDER_TOKEN_TTL`, can be revoked (an admin resend of the delivery "
        "email revokes the earlier emails' links), and stays valid through master-key "
        "rotations.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user JWT with `role` admin.",
    },
}

# Per access level: the schemes that satisfy it (any one; None: no credentials at all)...
_ACCEPTS: dict[Access, tuple[str | None, ...]] = {
    "none": (),
    "optional": (None, "userToken"),
    "bearer": ("userToken", "orderToken", "adminToken"),
    "user": ("userToken",),
    "admin": ("adminToken",),
}
# ... and the problems of a request that does not satisfy it.
_REFUSALS: dict[Access, dict[int, str]] = {
    "none": {},
    "optional": {401: "A bearer token was sent and fails verification."},
    "bearer": {401: UNAUTHORIZED},
    "user": {401: "No user token (an order token is not one), or an invalid one."},
    "admin": {401: UNAUTHORIZED, 403: FORBIDDEN},
}

PRINCIPAL = web.RequestKey[Principal | None]("principal")
_CONTRACT_ATTRIBUTE = "__bitloot_contract__"


@dataclass(frozen=True)
class ApiKey:
    """A credential in a header that the handler checks itself: declared, never enforced
    by `operation` (see the module docstring)."""

    scheme: str  # the OpenAPI security scheme's name
    header: str
    description: str

    def security_scheme(self) -> dict[str, Any]:
        """The OpenAPI security scheme."""
        return {
            "type": "apiKey",
            "in": "header",
            "name": self.header,
            "description": self.description,
        }


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter (a path parameter is always required)."""

    name: str
    location: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


def uuid_path(name: str, what: str) -> Param:
    """The path parameter `name`, the id (a UUID) of a `what`."""
    return Param(name, "path", {"type": "string", "format": "uuid"}, f"The {what}'s id.", True)


@dataclass(frozen=True)
class Ok:
    """The success answer: a `model` (JSON), a raw `schema` of `media_type`, or no body
    (`media_type=None`); `headers` it always carries, by name, with their descriptions.
    `also`: other success statuses with the same body, each with what it means (e.g. 200
    for a repeated request that found what the first one created)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = JSON
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    also: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """What `operation` declared about one handler."""

    summary: str
    tag: str
    security: Access | ApiKey
    ok: Ok
    problems: Mapping[int, str]  # every error status, the security's included, ascending
    params: tuple[Param, ...]
    query: type[BaseModel] | None  # one optional query parameter per field
    body: type[BaseModel] | None
    body_description: str
    before: tuple[Hook, ...]

    @property
    def accepts(self) -> tuple[str | None, ...]:
        """The security schemes that satisfy it (any one); None: no credentials at all."""
        if isinstance(self.security, ApiKey):
            return (self.security.scheme,)
        return _ACCEPTS[self.security]


def operation(
    summary: str,
    *,
    tag: str,
    security: Access | ApiKey,
    ok: Ok,
    problems: Mapping[int, str] | None = None,
    params: tuple[Param, ...] = (),
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_description: str = "",
    before: tuple[Hook, ...] = (),
) -> Callable[[Handler[ResponseT]], Handler[ResponseT]]:
    """Declare a handler's contract and enforce its security (see the module docstring).

    `before` runs, in order, ahead of authentication; the handler runs after both.
    """
    declared = {**_refusals(security), **(problems or {})}
    contract = Contract(
        summary=summary,
        tag=tag,
        security=security,
        ok=ok,
        problems=dict(sorted(declared.items())),
        params=params,
        query=query,
        body=body,
        body_description=body_description,
        before=before,
    )

    def decorate(handler: Handler[ResponseT]) -> Handler[ResponseT]:
        @functools.wraps(handler)
        async def enforced(request: web.Request) -> ResponseT:
            for hook in contract.before:
                await hook(request)
            if not isinstance(contract.security, ApiKey):
                await _authenticate(request, contract.security)
            return await handler(request)

        setattr(enforced, _CONTRACT_ATTRIBUTE, contract)
        return enforced

    return decorate


def contract_of(handler: object) -> Contract | None:
    """The contract `operation` attached to `handler`, if any."""
    contract = getattr(handler, _CONTRACT_ATTRIBUTE, None)
    return contract if isinstance(contract, Contract) else None


def authenticated(request: web.Request) -> Principal:
    """Whom the request's token names, in an operation declared "bearer", "user" or "admin"."""
    found = authenticated_or_none(request)
    if found is None:
        raise RuntimeError("authenticated() needs an operation declaring bearer, user or admin")
    return found


def authenticated_or_none(request: web.Request) -> Principal | None:
    """Whom the request's token names, or None without one, in an "optional" operation."""
    if PRINCIPAL not in request:
        raise RuntimeError("the operation declares no bearer security: nobody is authenticated")
    return request[PRINCIPAL]


async def _authenticate(request: web.Request, access: Access) -> None:
    if access == "none":
        return
    res = resources(request)
    if access == "optional":
        request[PRINCIPAL] = await authenticate_optional(request, res.tokens, res.pool)
        return
    who = await authenticate(request, res.tokens, res.pool)
    if access == "user" and who.kind == "order_token":
        # An order token opens one order; a user's resources need to know who the user is.
        raise Unauthorized("This needs a user token, not an order token.", invalid_token=True)
    request[PRINCIPAL] = require_admin(who) if access == "admin" else who


def _refusals(security: Access | ApiKey) -> dict[int, str]:
    if isinstance(security, ApiKey):
        return {401: f"Missing or invalid `{security.header}`."}
    return _REFUSALS[security]
