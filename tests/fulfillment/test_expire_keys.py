"""Key expiry (`fulfillment.service.expire_keys`, the periodic `expire_keys` job): keys past
their retention are marked expired, their ciphertexts deleted from storage, then marked
deleted; the download link is then 410. Orders fulfilled for real through the in-process
API and simulators, local file storage in the test's data directory, retention moved back
with SQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop_support import OWNER, Order, Shop

from bitloot.fulfillment.service import expire_keys
from bitloot.sim.kinguin_catalog import TEXT_PRODUCT_ID


async def key_rows(shop: Shop, order: Order) -> list[tuple[str, str, str]]:
    """(key id, status, object key) of the order's keys."""
    cur = await shop.conn.execute(
        "SELECT key_id, status, object_key FROM key_delivery_logs WHERE order_id = %s"
        " ORDER BY key_id",
        (order.id,),
    )
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


def object_file(shop: Shop, object_key: str) -> Path:
    """Where local storage keeps the object: under the test's data directory."""
    path = shop.ctx.settings.data_dir / "objects" / object_key
    assert path.is_relative_to(shop.ctx.settings.data_dir)
    return path


async def expire_now(shop: Shop, order: Order) -> None:
    await shop.conn.execute(
        "UPDATE key_delivery_logs SET expires_at = now() - interval '1 second' WHERE order_id = %s",
        (order.id,),
    )


async def test_expired_keys_are_deleted_from_storage_and_links_are_gone(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await shop.fulfilled_order(OWNER, [{"productId": TEXT_PRODUCT_ID, "qty": 2}])
    kept = await shop.fulfilled_order(OWNER)
    # One of the old order's keys has been downloaded (`accessed`): it expires all the same.
    assert (await shop.get(f"/fulfillment/{old.id}/download-link", old.token)).status == 200
    old_keys, kept_keys = await key_rows(shop, old), await key_rows(shop, kept)
    assert [status for _, status, _ in old_keys] == ["accessed", "accessed"]
    assert [status for _, status, _ in kept_keys] == ["stored"]
    for _, _, object_key in old_keys + kept_keys:
        assert object_file(shop, object_key).is_file()
    cur = await shop.conn.execute(
        "SELECT expires_at FROM key_delivery_logs WHERE order_id = %s", (kept.id,)
    )
    kept_expiry = await cur.fetchall()
    await expire_now(shop, old)

    # What the row says while its object is deleted: `expired`, so that a crash before the
    # row is marked `deleted` leaves work the next run finds.
    storage = shop.runtime.storage
    delete = storage.delete
    seen: list[tuple[str, str]] = []

    async def observed_delete(object_key: str) -> None:
        cur = await shop.conn.execute(
            "SELECT status FROM key_delivery_logs WHERE object_key = %s", (object_key,)
        )
        row = await cur.fetchone()
        assert row is not None
        seen.append((object_key, row[0]))
        await delete(object_key)

    monkeypatch.setattr(storage, "delete", observed_delete)

    assert await expire_keys(shop.runtime) == 2

    assert sorted(seen) == sorted((object_key, "expired") for _, _, object_key in old_keys)
    assert [status for _, status, _ in await key_rows(shop, old)] == ["deleted", "deleted"]
    for _, _, object_key in old_keys:
        assert not object_file(shop, object_key).exists()
    # The key not yet expired: untouched, row and file.
    assert await key_rows(shop, kept) == kept_keys
    assert object_file(shop, kept_keys[0][2]).is_file()
    cur = await shop.conn.execute(
        "SELECT expires_at FROM key_delivery_logs WHERE order_id = %s", (kept.id,)
    )
    assert await cur.fetchall() == kept_expiry

    gone = await shop.get(f"/fulfillment/{old.id}/download-link", old.token)
    assert gone.status == 410, gone.body
    assert gone.body["type"].endswith("/keys-gone")
    assert sorted(gone.body["keys"], key=lambda k: k["keyId"]) == [
        {"keyId": key_id, "status": "deleted"} for key_id, _, _ in old_keys
    ]
    assert (await shop.get(f"/fulfillment/{kept.id}/download-link", kept.token)).status == 200

    # A second run has nothing left to do.
    seen.clear()
    assert await expire_keys(shop.runtime) == 0
    assert seen == []
    assert object_file(shop, kept_keys[0][2]).is_file()


async def test_a_run_interrupted_between_steps_is_completed_by_the_next(shop: Shop) -> None:
    # Crashed after deleting the object, before marking the row deleted.
    after_delete = await shop.fulfilled_order(OWNER)
    # Crashed after marking the row expired, before deleting the object.
    after_mark = await shop.fulfilled_order(OWNER)
    for order in (after_delete, after_mark):
        await expire_now(shop, order)
        await shop.conn.execute(
            "UPDATE key_delivery_logs SET status = 'expired' WHERE order_id = %s", (order.id,)
        )
    [(_, _, deleted_key)] = await key_rows(shop, after_delete)
    object_file(shop, deleted_key).unlink()
    [(_, _, left_key)] = await key_rows(shop, after_mark)
    assert object_file(shop, left_key).is_file()

    assert await expire_keys(shop.runtime) == 2

    for order in (after_delete, after_mark):
        assert [status for _, status, _ in await key_rows(shop, order)] == ["deleted"]
        reply = await shop.get(f"/fulfillment/{order.id}/download-link", order.token)
        assert reply.status == 410
    assert not object_file(shop, deleted_key).exists()
    assert not object_file(shop, left_key).exists()
    assert await expire_keys(shop.runtime) == 0


async def test_nothing_expires_before_its_time(shop: Shop) -> None:
    order = await shop.fulfilled_order(OWNER)
    await shop.conn.execute(
        "UPDATE key_delivery_logs SET expires_at = now() + interval '1 minute' WHERE order_id = %s",
        (order.id,),
    )
    before = await key_rows(shop, order)

    assert await expire_keys(shop.runtime) == 0

    assert await key_rows(shop, order) == before
    assert object_file(shop, before[0][2]).is_file()
    assert (await shop.get(f"/fulfillment/{order.id}/download-link", order.token)).status == 200
