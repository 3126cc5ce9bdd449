"""`bitloot storage check`: the key's whole path through the configured store, proven
against the real bucket before go-live and after a credential change.

It writes a canary object (``bitloot-storage-check/<random>.txt``, holding nothing but its
own name and the time), reads it back, presigns a GET and fetches it as a browser would
(no credentials), makes sure an expired and a tampered URL are refused, reads the bucket's
CORS rule, asks the store what it answers a GET from the key page's origin, and deletes the
canary. Every step is one line: ``ok  <step>``, or ``FAIL <step>: <what happened> -> <what
to change>``, or ``warn``/``skip`` with what could not be decided and what to check by hand.

The run passes when no step failed. A token scoped to "Object Read & Write" on one bucket
(what PRODUCTION.md asks for) may not read the CORS rule: that step is then a ``skip``,
and the decisive CORS evidence is the store's answer to the GET with an ``Origin`` header,
which needs no bucket-level right.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from bitloot.storage.base import ObjectStorage, StorageError
from bitloot.storage.golive_s3 import check_s3, origin_of
from bitloot.storage.local import LocalObjectStorage
from bitloot.storage.s3 import S3ObjectStorage
from bitloot.storage.steps import Report, Run, Step, canary_body, canary_key, flip, passed

__all__ = ["Step", "check_storage", "passed"]


async def check_storage(
    storage: ObjectStorage, *, public_url: str, ttl_seconds: int, report: Report
) -> list[Step]:
    """Run every step against `storage` (opened and closed here), reporting each as it
    ends; the result passes when `passed()` says so."""
    async with storage:
        if isinstance(storage, S3ObjectStorage):
            return await check_s3(storage, origin_of(public_url), ttl_seconds, report)
        if isinstance(storage, LocalObjectStorage):
            return await _check_local(storage, public_url, ttl_seconds, report)
    raise TypeError(f"no storage check for {type(storage).__name__}")


# --- the local disk --------------------------------------------------------------------------


async def _check_local(
    storage: LocalObjectStorage, public_url: str, ttl: int, report: Report
) -> list[Step]:
    run = Run(report)
    key = canary_key()
    body = canary_body(key)
    try:
        await storage.put(key, body, content_type="text/plain", metadata={})
    except StorageError as exc:
        fix = f"make {storage.root} writable by this user, or point BITLOOT_STORAGE_URL elsewhere"
        run.add("FAIL", f"write {key}", f"{exc} -> {fix}")
        run.add("skip", "every other step", "they need the canary object")
        return run.steps
    run.add("ok", f"write {key}", f"under {storage.root}")
    try:
        if await storage.read(key) == body:
            run.add("ok", "read back")
        else:
            where = storage.path_of(key)
            run.add("FAIL", "read back", f"{where} differs from what was written -> check the disk")
        _local_url_steps(run, storage, public_url, key, await storage.signed_get_url(key, ttl))
        served_by = f"`bitloot serve` answers the signed {public_url.rstrip('/')}/objects/ URLs"
        run.add("skip", "CORS", f"does not apply: {served_by} itself")
    finally:
        await storage.delete(key)
        if await storage.exists(key):
            run.add("FAIL", f"delete {key}", f"still there -> remove {storage.path_of(key)}")
        else:
            run.add("ok", f"delete {key}")
    return run.steps


def _local_url_steps(
    run: Run, storage: LocalObjectStorage, public_url: str, key: str, url: str
) -> None:
    prefix = f"{public_url.rstrip('/')}/objects/"
    params = dict(parse_qsl(urlsplit(url).query))
    expires, sig = params.get("expires", ""), params.get("sig", "")
    name = "signed URL round trip"
    if url.startswith(prefix) and storage.verify_signed_request(key, expires, sig):
        until = datetime.fromtimestamp(int(expires), UTC).isoformat(timespec="seconds")
        run.add("ok", name, f"{prefix}..., valid until {until}")
    else:
        fix = "check BITLOOT_PUBLIC_URL and BITLOOT_MASTER_KEYS"
        run.add("FAIL", name, f"a freshly signed URL does not verify -> {fix}")
    expired_at = int(expires or 0) + 1
    refused = [
        (
            "expired signed URL refused",
            storage.verify_signed_request(key, expires, sig, expired_at),
        ),
        ("tampered signed URL refused", storage.verify_signed_request(key, expires, flip(sig))),
    ]
    for name, accepted in refused:
        if accepted:
            run.add("FAIL", name, "the signer accepted it -> a bug: report it")
        else:
            run.add("ok", name)
