"""User/admin JWT verification: pinned algorithms, claims, and the rule that an order
token (opaque, `bitloot.auth.order_tokens`) never passes as a user token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bitloot.auth.order_tokens import new_token
from bitloot.auth.tokens import (
    InvalidToken,
    Principal,
    TokenVerifier,
    mint_user_token,
)
from bitloot.config import ConfigError, Settings

SECRET = "hs256-test-secret-that-is-long-enough!!"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": None,
        "jwt_public_key": None,
        "jwt_algorithm": None,
        "jwt_issuer": None,
        "jwt_audience": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(settings(**overrides))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "user-1", "email": "a@example.com", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def public_pem(private_key: Any) -> str:
    pem: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def reject(v: TokenVerifier, token: str, reason: str | None = None) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        v.verify(token)
    if reason is not None:
        assert info.value.reason == reason
    assert token not in str(info.value)
    assert token not in repr(info.value)
    return info.value


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- user tokens: the good paths ------------------------------------------------------


def test_hs256_user_token_is_accepted() -> None:
    token = mint_user_token(settings(jwt_secret=SECRET), sub="user-1", email="a@example.com")
    principal = verifier(jwt_secret=SECRET).verify(token)
    assert principal == Principal(kind="user", subject="user-1", email="a@example.com")
    assert not principal.is_admin


def test_admin_role_gives_an_admin_principal() -> None:
    token = mint_user_token(settings(jwt_secret=SECRET), sub="root", admin=True)
    principal = verifier(jwt_secret=SECRET).verify(token)
    assert principal.kind == "admin"
    assert principal.is_admin


def test_missing_role_means_customer_and_unknown_role_is_rejected() -> None:
    v = verifier(jwt_secret=SECRET)
    assert v.verify(jwt.encode(claims(), SECRET, algorithm="HS256")).kind == "user"
    reject(v, jwt.encode(claims(role="superuser"), SECRET, algorithm="HS256"), "claims")


def test_rs256_token_is_accepted_with_the_inferred_algorithm(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(jwt_public_key=public_pem(rsa_key))
    assert v.user_algorithm == "RS256"
    token = jwt.encode(claims(role="admin"), rsa_key, algorithm="RS256")
    assert v.verify(token).is_admin


def test_es256_token_is_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    v = verifier(jwt_public_key=public_pem(key))
    assert v.user_algorithm == "ES256"
    assert v.verify(jwt.encode(claims(), key, algorithm="ES256")).subject == "user-1"


def test_eddsa_token_is_accepted() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    v = verifier(jwt_public_key=public_pem(key))
    assert v.user_algorithm == "EdDSA"
    assert v.verify(jwt.encode(claims(), key, algorithm="EdDSA")).subject == "user-1"


def test_pem_with_escaped_newlines_is_accepted() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    v = verifier(jwt_public_key=public_pem(key).replace("\n", "\\n"))
    assert v.verify(jwt.encode(claims(), key, algorithm="EdDSA")).subject == "user-1"


def test_issuer_and_audience_are_accepted_when_they_match() -> None:
    v = verifier(jwt_secret=SECRET, jwt_issuer="https://idp.example", jwt_audience="bitloot-api")
    token = mint_user_token(
        settings(jwt_secret=SECRET, jwt_issuer="https://idp.example", jwt_audience="bitloot-api"),
        sub="user-1",
    )
    assert v.verify(token).subject == "user-1"


# -- user tokens: rejections ----------------------------------------------------------


def test_alg_none_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    reject(verifier(jwt_secret=SECRET), unsigned, "algorithm")
    reject(verifier(jwt_public_key=public_pem(rsa_key)), unsigned, "algorithm")


def test_hs256_signed_with_the_public_key_is_rejected_when_rs256_is_pinned(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    # The classic confusion attack: HMAC keyed with the public PEM the server holds.
    pem = public_pem(rsa_key)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(role="admin")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64url(hmac.new(pem.encode(), signing_input, hashlib.sha256).digest())
    forged = f"{header}.{payload}.{signature}"
    reject(verifier(jwt_public_key=pem, jwt_algorithm="RS256"), forged, "algorithm")


def test_other_hmac_algorithm_than_the_pinned_one_is_rejected() -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    reject(verifier(jwt_secret=SECRET * 2, jwt_algorithm="HS256"), token, "algorithm")


def test_expired_token_is_rejected() -> None:
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 7200, exp=now - 3600), SECRET, algorithm="HS256")
    err = reject(verifier(jwt_secret=SECRET), token, "expired")
    assert str(err) == "token has expired"


def test_token_without_exp_is_rejected() -> None:
    token = jwt.encode(claims(exp=None), SECRET, algorithm="HS256")
    err = reject(verifier(jwt_secret=SECRET), token, "claims")
    assert "exp" in str(err)


def test_token_without_sub_is_rejected() -> None:
    reject(verifier(jwt_secret=SECRET), jwt.encode(claims(sub=None), SECRET), "claims")


def test_wrong_issuer_is_rejected() -> None:
    v = verifier(jwt_secret=SECRET, jwt_issuer="https://idp.example")
    reject(v, jwt.encode(claims(iss="https://evil.example"), SECRET), "issuer")
    reject(v, jwt.encode(claims(), SECRET), "claims")  # no iss at all


def test_wrong_audience_is_rejected() -> None:
    v = verifier(jwt_secret=SECRET, jwt_audience="bitloot-api")
    reject(v, jwt.encode(claims(aud="another-api"), SECRET), "audience")


def test_wrong_hmac_key_is_rejected() -> None:
    token = jwt.encode(claims(), "another-secret-that-is-also-long-enough", algorithm="HS256")
    reject(verifier(jwt_secret=SECRET), token, "bad_signature")


def test_wrong_rsa_key_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    reject(verifier(jwt_public_key=public_pem(rsa_key)), token, "bad_signature")


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "x" * 9000])
def test_garbage_is_rejected_as_malformed(garbage: str) -> None:
    reject(verifier(jwt_secret=SECRET), garbage, "malformed")


def test_user_tokens_are_refused_when_no_key_is_configured() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    reject(verifier(), token, "not_configured")


def test_rejections_never_chain_the_library_error() -> None:
    token = jwt.encode(claims(), "another-secret-that-is-also-long-enough", algorithm="HS256")
    err = reject(verifier(jwt_secret=SECRET), token)
    # A chained PyJWT exception would put its own text (and traceback) next to ours.
    assert err.__cause__ is None and err.__suppress_context__


# -- configuration --------------------------------------------------------------------


def test_key_that_does_not_fit_the_pinned_algorithm_is_a_config_error() -> None:
    ec_pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="BITLOOT_JWT_PUBLIC_KEY"):
        verifier(jwt_public_key=ec_pem, jwt_algorithm="RS256")
    with pytest.raises(ConfigError, match="BITLOOT_JWT_PUBLIC_KEY"):
        verifier(jwt_public_key=public_pem(ec.generate_private_key(ec.SECP384R1())))


def test_hmac_algorithm_without_secret_is_a_config_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_JWT_SECRET"):
        verifier(jwt_public_key=public_pem(rsa_key), jwt_algorithm="HS256")


def test_short_hmac_secret_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError, match="BITLOOT_JWT_SECRET") as info:
        verifier(jwt_secret="short-s3cret")
    assert "short-s3cret" not in str(info.value)


def test_garbage_public_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BITLOOT_JWT_PUBLIC_KEY"):
        verifier(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")


def test_minting_needs_a_secret(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_JWT_SECRET"):
        mint_user_token(settings(jwt_public_key=public_pem(rsa_key)), sub="u")
    with pytest.raises(ConfigError, match="BITLOOT_JWT_SECRET"):
        mint_user_token(settings(), sub="u")


# -- order tokens are not JWTs -------------------------------------------------------


def test_an_order_token_is_never_a_user_token() -> None:
    # Order tokens are opaque strings looked up in the database (test_order_tokens.py);
    # the JWT verifier, even with a secret configured, finds one malformed.
    reject(verifier(jwt_secret=SECRET), new_token(), "malformed")


def test_an_order_jwt_of_the_old_kind_is_refused() -> None:
    # Order tokens used to be HS256 JWTs (kid bitloot-order-v1) under a key derived from
    # the master key; such a token, or a forgery of one, is now a JWT we did not sign.
    legacy = jwt.encode(
        {**claims(), "typ": "bitloot-order", "order_id": str(uuid.uuid4())},
        "a-derived-order-key-of-32-bytes!",
        algorithm="HS256",
        headers={"kid": "bitloot-order-v1"},
    )
    reject(verifier(jwt_secret=SECRET), legacy, "bad_signature")
