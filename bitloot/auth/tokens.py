"""User and admin JWTs from the identity provider, and what every bearer token resolves to.

User JWTs are verified with exactly one algorithm and one key, never chosen by the token:
`BITLOOT_JWT_ALGORITHM` if set, else HS256 with `BITLOOT_JWT_SECRET`, else the algorithm
the PEM `BITLOOT_JWT_PUBLIC_KEY` implies (RSA RS256, P-256 ES256, Ed25519/Ed448 EdDSA).
`exp`, `iat` and `sub` are required, `exp - iat` at most `BITLOOT_JWT_MAX_LIFETIME`;
`iss`/`aud` when configured.

Order access tokens are not JWTs: they are random strings that BitLoot stores hashed
(`bitloot.auth.order_tokens`); a bearer token with their prefix goes there, anything else
here. Every failure is an `InvalidToken` with a fixed message that never contains the token.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bitloot.config import ConfigError, Settings

log = structlog.get_logger(__name__)

# A bearer token longer than this is not one of ours or the IdP's; refuse before parsing.
_MAX_TOKEN_CHARS = 8192
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ROLES = frozenset({"customer", "admin"})
# OpenID Connect Core 1.0, section 2: `sub` never exceeds 255 characters; an email, 320.
_MAX_SUB_CHARS = 255
_MAX_EMAIL_CHARS = 320

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


class TokenVerifier:
    """Verifies user and admin JWTs (order tokens: `bitloot.auth.order_tokens`)."""

    def __init__(
        self, settings: Settings, *, leeway: float = 0, legacy_order_keys: list[bytes] | None = None
    ) -> None:
        # Keys of the first release's order JWTs, accepted until they expire
        # (`bitloot.auth.legacy_order_jwt`); empty where no master keys are at hand.
        self.legacy_order_keys = legacy_order_keys or []
        self._user = user_token_key(settings)
        self._issuer = settings.jwt_issuer or None
        self._audience = settings.jwt_audience or None
        self._max_lifetime = settings.jwt_max_lifetime
        self._leeway = leeway

    @property
    def user_algorithm(self) -> str | None:
        """The pinned algorithm for user JWTs (None: user tokens are not accepted)."""
        return self._user[0] if self._user else None

    def verify(self, token: str) -> Principal:
        """The user or admin principal of a JWT, or `InvalidToken`."""
        # A JWT is ASCII; header bytes that are not UTF-8 arrive surrogate-escaped, and
        # PyJWT would fail encoding them (a 500) rather than reject the token.
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken("token is malformed", reason="malformed")
        try:
            # Its structure first, so garbage is "malformed" rather than a bad signature.
            jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _invalid(exc) from None
        return self.verify_user_token(token)

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
                options={"require": ["exp", "iat", "sub"]},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise _invalid(exc) from None
        # A valid signature says who issued the claims, not that they are sane: each is
        # checked for what we do with it (stored, compared, logged).
        lifetime = _numeric_date(claims, "exp") - _numeric_date(claims, "iat")
        if lifetime > self._max_lifetime:
            raise _bad_claim("lifetime", "token lives longer than BITLOOT_JWT_MAX_LIFETIME")
        sub, role, email = claims["sub"], claims.get("role", "customer"), claims.get("email")
        if not _is_text(sub, _MAX_SUB_CHARS):
            raise _bad_claim("sub", "token subject is not a short printable string")
        # A list or an object is unhashable: `in _ROLES` alone would raise TypeError.
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad_claim("role", "token role is not accepted")
        if email is not None and not _is_text(email, _MAX_EMAIL_CHARS):
            raise _bad_claim("email", "token email is not a short printable string")
        return Principal(kind="admin" if role == "admin" else "user", subject=sub, email=email)


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    """RFC 7519 NumericDate: a JSON number (PyJWT also takes "123" and true)."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_claim(name, f"token {name} is not a number")
    if isinstance(value, float) and not math.isfinite(value):  # an int may be any size
        raise _bad_claim(name, f"token {name} is not a number")
    return value


def _is_text(value: object, max_chars: int) -> bool:
    # Printable excludes NUL, control characters and lone surrogates: PostgreSQL refuses
    # the first and cannot encode the last, and none belongs in a log line.
    return isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()


def _bad_claim(claim: str, message: str) -> InvalidToken:
    # Signed by our key or the IdP's, yet malformed: a broken or compromised issuer.
    log.warning("auth.bad_claim", claim=claim)
    return InvalidToken(message, reason="claims")


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
    if ttl > settings.jwt_max_lifetime:
        raise ValueError(
            f"ttl must be at most BITLOOT_JWT_MAX_LIFETIME ({settings.jwt_max_lifetime} s)"
        )
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
