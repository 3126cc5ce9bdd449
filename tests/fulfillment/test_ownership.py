"""Who may read an order, its fulfillment status and its download links: exactly the owner,
a token for that order, and an admin. Every other valid token gets the 404 of a missing
order; every token that fails verification, and no token, gets a 401."""

from __future__ import annotations

import uuid

import pytest
from shop_support import ADMIN, OTHER, OWNER, Shop

ENDPOINTS = {
    "order": "/orders/{id}",
    "status": "/fulfillment/{id}/status",
    "download-link": "/fulfillment/{id}/download-link",
}

EXPECTED = {
    "owner": 200,
    "other user": 404,
    "order token": 200,
    "token for another order": 404,
    "expired user token": 401,
    "expired order token": 401,
    "revoked order token": 401,
    "alg none": 401,
    "signed with another key": 401,
    "admin": 200,
    "no token": 401,
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_ownership_matrix(shop: Shop, endpoint: str) -> None:
    mine = await shop.fulfilled_order(OWNER)
    theirs = await shop.create_order(OTHER)
    tokens: dict[str, str | None] = {
        "owner": shop.user_token(OWNER),
        "other user": shop.user_token(OTHER),
        "order token": mine.token,
        "token for another order": theirs.token,
        "expired user token": shop.expired_user_token(OWNER),
        "expired order token": await shop.expired_order_token(mine.id),
        "revoked order token": await shop.revoked_order_token(mine.id),
        "alg none": shop.unsigned_token(OWNER),
        "signed with another key": shop.foreign_token(OWNER),
        "admin": shop.user_token(ADMIN, admin=True),
        "no token": None,
    }
    path = ENDPOINTS[endpoint].format(id=mine.id)
    got = {who: (await shop.get(path, token)).status for who, token in tokens.items()}
    assert got == EXPECTED


async def test_an_order_of_someone_else_looks_exactly_like_a_missing_one(shop: Shop) -> None:
    theirs = await shop.create_order(OTHER)
    token = shop.user_token(OWNER)

    def public(body: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in body.items() if k not in ("requestId", "instance")}

    for path in ENDPOINTS.values():
        not_mine = await shop.get(path.format(id=theirs.id), token)
        missing = await shop.get(path.format(id=uuid.uuid4()), token)
        malformed = await shop.get(path.format(id="not-a-uuid"), token)
        assert not_mine.status == missing.status == malformed.status == 404, path
        assert public(not_mine.body) == public(missing.body) == public(malformed.body), path
        assert not_mine.headers["Content-Type"] == missing.headers["Content-Type"], path
