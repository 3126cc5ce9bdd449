"""Authentication in handlers: the bearer token, the principal it names, admin checks.

A rejected token is logged by its reason code only; the token itself never is.
"""

from __future__ import annotations

import structlog
from aiohttp import hdrs, web

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


def _verify(verifier: TokenVerifier, token: str) -> Principal:
    try:
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


async def authenticate(request: web.Request, verifier: TokenVerifier) -> Principal:
    """The principal behind the request's bearer token; 401 when missing or invalid."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("A bearer token is required.")
    return _verify(verifier, token)


async def authenticate_optional(request: web.Request, verifier: TokenVerifier) -> Principal | None:
    """Like `authenticate`, but None when no token is sent (a bad token is still a 401)."""
    token = bearer_token(request)
    return None if token is None else _verify(verifier, token)


def require_admin(principal: Principal) -> Principal:
    """`principal` if it is an admin; 403 otherwise."""
    if not principal.is_admin:
        raise Forbidden("This needs an admin token.")
    return principal
