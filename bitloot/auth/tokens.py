"""Bearer tokens: user/admin JWTs from the identity provider and BitLoot's order tokens.

Two verifiers, each with exactly one algorithm and one key, neither chosen by the token:

- user JWTs: `BITLOOT_JWT_ALGORITHM` if set, else HS256 with `BITLOOT_JWT_SECRET`, else
  the algorithm the PEM `BITLOOT_JWT_PUBLIC_KEY` implies (RSA RS256, P-256 ES256,
  Ed25519/Ed448 EdDSA). `exp` and `sub` are required; `iss`/`aud` when configured.
- order tokens: HS256 under a key derived (HKDF) from the `order_token_secret` the caller
  passes, with `typ`, `iss` and `aud` of their own, so one kind never passes as the other.

The token's header only routes it to a verifier; every failure is an `InvalidToken` with
a fixed message that never contains the token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bitloot.config import ConfigError, Settings

log = structlog.get_logger(__name__)

ORDER_JWT_TYP = "bitloot-order"
ORDER_JWT_ISSUER = "bitloot"
ORDER_JWT_AUDIENCE = "bitloot-order"
ORDER_JWT_KID = "bitloot-order-v1"
ORDER_JWT_ALGORITHM = "HS256"
# HKDF `info`: the derived key signs order tokens and nothing else, whatever secret the
# caller hands us (a master key, or the JWT secret itself).
_ORDER_KEY_INFO = b"bitloot/order-access-token/v1"
_MIN_ORDER_SECRET_BYTES = 16
# A bearer token longer than this is not one of ours or the IdP's; refuse before parsing.
_MAX_TOKEN_CHARS = 8192
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ROLES = frozenset({"customer", "admin"})

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for. For an order token, `subject` is the order id."""

    kind: Literal["user", "admin", "order_token"]
    subject: str
    email: str | None = None
    order_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        """True for an admin user token."""
        return self.kind == "admin"


class InvalidToken(Exception):
    """A token we do not accept. The message is safe to log; `reason` is a short code."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _invalid(exc: jwt.PyJWTError) -> InvalidToken:
    # Fixed messages per class: PyJWT's own texts are not promised to stay token-free.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return InvalidToken("token has expired", reason="expired")
    if isinstance(exc, jwt.InvalidSignatureError):
        return InvalidToken("token signature is invalid", reason="bad_signature")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return InvalidToken("token algorithm is not accepted", reason="algorithm")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return InvalidToken(f"token lacks the required {exc.claim!r} claim", reason="claims")
    if isinstance(exc, jwt.InvalidIssuerError):
        return InvalidToken("token issuer is not accepted", reason="issuer")
    if isinstance(exc, jwt.InvalidAudienceError):
        return InvalidToken("token audience is not accepted", reason="audience")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return InvalidToken("token is not valid yet", reason="not_yet_valid")
    if isinstance(exc, jwt.DecodeError):
        return InvalidToken("token is malformed", reason="malformed")
    return InvalidToken("token is invalid", reason="claims")


def _load_public_key(pem: str) -> PublicKey:
    # Environment files often carry a PEM on one line with literal `\n`s.
    data = pem.replace("\\n", "\n").strip().encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError:
        raise ConfigError("BITLOOT_JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, PublicKey):
        raise ConfigError("BITLOOT_JWT_PUBLIC_KEY must be an RSA, EC P-256 or Ed25519 key")
    return key


def _algorithm_for(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    return "EdDSA"


def _check_key_matches(alg: str, key: PublicKey) -> None:
    ok = (
        (alg == "RS256" and isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)
        or (
            alg == "ES256"
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1)
        )
        or (alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey))
    )
    if not ok:
        raise ConfigError(
            f"BITLOOT_JWT_PUBLIC_KEY does not fit BITLOOT_JWT_ALGORITHM={alg} "
            "(RS256 needs RSA >= 2048 bits, ES256 an EC P-256 key, EdDSA an Ed25519 key)"
        )


def _hmac_key(settings: Settings, alg: str) -> bytes:
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if not secret:
        raise ConfigError(f"BITLOOT_JWT_SECRET is required for {alg} tokens but is not set")
    key = secret.encode()
    # RFC 7518 section 3.2: an HMAC key shorter than the hash output is guessable.
    if len(key) < _HMAC_MIN_BYTES[alg]:
        raise ConfigError(f"BITLOOT_JWT_SECRET must be at least {_HMAC_MIN_BYTES[alg]} bytes")
    return key


def user_token_key(settings: Settings) -> tuple[str, bytes | PublicKey] | None:
    """The one algorithm and key that user JWTs must use, or None when none is configured."""
    alg: str | None = settings.jwt_algorithm
    has_secret = bool(settings.jwt_secret and settings.jwt_secret.get_secret_value())
    if alg is None:
        if has_secret:
            if settings.jwt_public_key:
                log.warning("auth.public_key_ignored", why="BITLOOT_JWT_SECRET takes precedence")
            alg = "HS256"
        elif settings.jwt_public_key:
            public = _load_public_key(settings.jwt_public_key)
            alg = _algorithm_for(public)
            _check_key_matches(alg, public)
            return alg, public
        else:
            return None
    if alg.startswith("HS"):
        return alg, _hmac_key(settings, alg)
    if not settings.jwt_public_key:
        raise ConfigError(f"BITLOOT_JWT_PUBLIC_KEY is required for {alg} tokens but is not set")
    public = _load_public_key(settings.jwt_public_key)
    _check_key_matches(alg, public)
    return alg, public


def derive_order_token_key(secret: bytes) -> bytes:
    """The HS256 key for order tokens, derived from `secret` (never `secret` itself)."""
    if len(secret) < _MIN_ORDER_SECRET_BYTES:
        raise ValueError(f"order_token_secret must be at least {_MIN_ORDER_SECRET_BYTES} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_ORDER_KEY_INFO).derive(
        secret
    )


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


class TokenVerifier:
    """Verifies bearer tokens of both kinds and mints order tokens."""

    def __init__(self, settings: Settings, *, order_token_secret: bytes, leeway: float = 0) -> None:
        self._user = user_token_key(settings)
        self._issuer = settings.jwt_issuer or None
        self._audience = settings.jwt_audience or None
        self._order_key = derive_order_token_key(order_token_secret)
        self._order_ttl = settings.order_token_ttl
        self._leeway = leeway

    @property
    def user_algorithm(self) -> str | None:
        """The pinned algorithm for user JWTs (None: user tokens are not accepted)."""
        return self._user[0] if self._user else None

    def verify(self, token: str) -> Principal:
        """The principal `token` speaks for, or `InvalidToken`."""
        # A JWT is ASCII; header bytes that are not UTF-8 arrive surrogate-escaped, and
        # PyJWT would fail encoding them (a 500) rather than reject the token.
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken("token is malformed", reason="malformed")
        if self._is_order_token(token):
            return self.verify_order_token(token)
        return self.verify_user_token(token)

    def _is_order_token(self, token: str) -> bool:
        # Routing only: the chosen verifier still checks everything with its own key.
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") == ORDER_JWT_KID:
                return True
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _invalid(exc) from None
        return claims.get("typ") == ORDER_JWT_TYP

    def verify_user_token(self, token: str) -> Principal:
        """A customer or admin principal from an identity-provider JWT."""
        if self._user is None:
            raise InvalidToken(
                "user tokens are not accepted: no JWT key is configured", reason="not_configured"
            )
        alg, key = self._user
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={"require": ["exp", "sub"]},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise _invalid(exc) from None
        # Belt and braces: even if someone configured the order-token key as the JWT
        # secret, an order token still names itself and is refused here.
        if claims.get("typ") == ORDER_JWT_TYP or ORDER_JWT_AUDIENCE in _audiences(claims):
            raise InvalidToken("an order token is not a user token", reason="wrong_kind")
        sub, role, email = claims["sub"], claims.get("role", "customer"), claims.get("email")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("token subject is not a string", reason="claims")
        if role not in _ROLES:
            raise InvalidToken("token role is not accepted", reason="claims")
        if email is not None and not isinstance(email, str):
            raise InvalidToken("token email is not a string", reason="claims")
        return Principal(kind="admin" if role == "admin" else "user", subject=sub, email=email)

    def verify_order_token(self, token: str) -> Principal:
        """An order-scoped principal from a token minted by `mint_order_token`."""
        try:
            claims = jwt.decode(
                token,
                self._order_key,
                algorithms=[ORDER_JWT_ALGORITHM],
                options={"require": ["exp", "iat", "typ", "order_id", "iss", "aud"]},
                issuer=ORDER_JWT_ISSUER,
                audience=ORDER_JWT_AUDIENCE,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise _invalid(exc) from None
        if claims.get("typ") != ORDER_JWT_TYP:
            raise InvalidToken("not an order token", reason="wrong_kind")
        try:
            order_id = uuid.UUID(str(claims["order_id"]))
        except ValueError:
            raise InvalidToken("token order_id is not a UUID", reason="claims") from None
        return Principal(kind="order_token", subject=str(order_id), order_id=order_id)

    def mint_order_token(
        self, order_id: uuid.UUID, ttl_seconds: int | None = None, *, now: float | None = None
    ) -> str:
        """A token that grants access to `order_id` only, for `ttl_seconds`
        (default `BITLOOT_ORDER_TOKEN_TTL`)."""
        ttl = self._order_ttl if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ValueError("ttl_seconds must be positive")
        issued = int(time.time() if now is None else now)
        claims = {
            "typ": ORDER_JWT_TYP,
            "order_id": str(order_id),
            "iat": issued,
            "exp": issued + ttl,
            "iss": ORDER_JWT_ISSUER,
            "aud": ORDER_JWT_AUDIENCE,
        }
        return jwt.encode(
            claims,
            self._order_key,
            algorithm=ORDER_JWT_ALGORITHM,
            headers={"kid": ORDER_JWT_KID},
        )


def mint_user_token(
    settings: Settings, *, sub: str, email: str | None = None, admin: bool = False, ttl: int = 3600
) -> str:
    """A user JWT signed with `BITLOOT_JWT_SECRET` (for ops and tests).

    With a public key only, BitLoot can verify but not sign: that is a `ConfigError`.
    """
    alg = settings.jwt_algorithm or "HS256"
    if not alg.startswith("HS"):
        raise ConfigError(
            f"BITLOOT_JWT_ALGORITHM={alg} verifies with a public key only; "
            "minting a token needs BITLOOT_JWT_SECRET and an HS algorithm"
        )
    if not (settings.jwt_secret and settings.jwt_secret.get_secret_value()):
        raise ConfigError("minting a token needs BITLOOT_JWT_SECRET, which is not set")
    if not sub:
        raise ValueError("sub must not be empty")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": "admin" if admin else "customer",
        "iat": now,
        "exp": now + ttl,
    }
    if email:
        claims["email"] = email
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, _hmac_key(settings, alg), algorithm=alg)
