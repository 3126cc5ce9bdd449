"""Authentication in handlers: the bearer token, the principal it names, admin checks.

A bearer token with the order-token prefix (`blot_`) is looked up in the database
(`bitloot.auth.order_tokens`); anything else is verified as a user or admin JWT. A
rejected token is logged by its reason code only; the token itself never is.
"""

from __future__ import annotations

import structlog
from aiohttp import hdrs, web

from bitloot.auth import legacy_order_jwt, order_tokens
from bitloot.auth.tokens import InvalidToken, Principal, TokenVerifier
from bitloot.web.errors import Forbidden, Unauthorized

log = structlog.get_logger(__name__)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.strip().partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def _verify(verifier: TokenVerifier, db: order_tokens.Database, token: str) -> Principal:
    try:
        if order_tokens.is_order_token(token):
            return await order_tokens.verify(db, token)
        if verifier.legacy_order_keys and legacy_order_jwt.is_legacy_order_token(token):
            return legacy_order_jwt.verify(token, verifier.legacy_order_keys)
        return verifier.verify(token)
    except InvalidToken as exc:
        log.info("auth.token_rejected", reason=exc.reason)
        # Expiry is worth telling the client (it should fetch a new token); the other
        # reasons would only help someone forging one.
        detail = (
            "The bearer token has expired."
            if exc.reason == "expired"
            else "The bearer token is not valid."
        )
        raise Unauthorized(detail, invalid_token=True) from None


async def authenticate(
    request: web.Request, verifier: TokenVerifier, db: order_tokens.Database
) -> Principal:
    """The principal behind the request's bearer token; 401 when missing or invalid.
    `db` (the request's pool) is where order tokens are looked up."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("A bearer token is required.")
    return await _verify(verifier, db, token)


async def authenticate_optional(
    request: web.Request, verifier: TokenVerifier, db: order_tokens.Database
) -> Principal | None:
    """Like `authenticate`, but None when no token is sent (a bad token is still a 401)."""
    token = bearer_token(request)
    return None if token is None else await _verify(verifier, db, token)


def require_admin(principal: Principal) -> Principal:
    """`principal` if it is an admin; 403 otherwise."""
    if not principal.is_admin:
        raise Forbidden("This needs an admin token.")
    return principal
