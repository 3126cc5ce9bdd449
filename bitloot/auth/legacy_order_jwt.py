"""Order tokens of the first release, accepted read-only until the last of them expires.

Before migration 0006, an order token was an HS256 JWT (`kid` `bitloot-order-v1`) signed
with a key derived from the active master key. Links emailed then carry such a token for
up to `BITLOOT_ORDER_TOKEN_TTL` (30 days by default). Refusing them at once would break
every recent customer's link on the day of the upgrade, the very failure the stored,
revocable tokens (`order_tokens`) were introduced to end. So they are still verified, with
the key derived from EVERY master key in the ring (a rotation during the transition
breaks nothing), but never minted, and never revocable (a resend revokes only stored
tokens; the legacy link lives out its `exp`).

Remove this module (and `LEGACY_ORDER_TOKEN_PURPOSE` in the vault) one token lifetime
after the release that added migration 0006.
"""

from __future__ import annotations

import uuid

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bitloot.auth.tokens import InvalidToken, Principal
from bitloot.vault.crypto import LEGACY_ORDER_TOKEN_PURPOSE, MasterKeyRing

KID = "bitloot-order-v1"
_TYP = "bitloot-order"
_ISSUER = "bitloot"
_AUDIENCE = "bitloot-order"
_INFO = b"bitloot/order-access-token/v1"


def signing_keys(ring: MasterKeyRing) -> list[bytes]:
    """The first release's order-token key under each master key of the ring."""
    return [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
        for secret in ring.derived_keys(LEGACY_ORDER_TOKEN_PURPOSE)
    ]


def is_legacy_order_token(token: str) -> bool:
    """Whether `token` names itself a first-release order token (routing only)."""
    # A JWT is ASCII: header bytes that are not UTF-8 arrive surrogate-escaped, which
    # PyJWT would fail to encode (a 500) rather than reject.
    if not token.isascii() or len(token) > 8192:
        return False
    try:
        return bool(jwt.get_unverified_header(token).get("kid") == KID)
    except jwt.PyJWTError:
        return False


def verify(token: str, keys: list[bytes]) -> Principal:
    """The order principal of a first-release token, or `InvalidToken`."""
    for key in keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                options={"require": ["exp", "iat", "typ", "order_id", "iss", "aud"]},
                issuer=_ISSUER,
                audience=_AUDIENCE,
            )
        except jwt.InvalidSignatureError:
            continue  # signed under another master key of the ring, perhaps
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired", reason="expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is invalid", reason="claims") from None
        if claims.get("typ") != _TYP:
            raise InvalidToken("not an order token", reason="wrong_kind")
        try:
            order_id = uuid.UUID(str(claims["order_id"]))
        except ValueError:
            raise InvalidToken("token order_id is not a UUID", reason="claims") from None
        return Principal(kind="order_token", subject=str(order_id), order_id=order_id)
    raise InvalidToken("token signature is invalid", reason="bad_signature")
