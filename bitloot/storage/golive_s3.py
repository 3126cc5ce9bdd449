"""`bitloot storage check` against S3/R2: the canary's path through the real bucket, the
presigned URL as a browser fetches it, the refusals, and CORS (see `bitloot.storage.golive`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from bitloot.storage.base import StorageError
from bitloot.storage.s3 import UNREACHABLE, S3ObjectStorage
from bitloot.storage.steps import Report, Run, Step, canary_body, canary_key, flip

# The store's clock against ours (its Date header, 1 s resolution): a difference shortens
# or lengthens every download link by as much, and past 15 minutes signed calls fail.
SKEW_WARN_SECONDS = 30
SKEW_FAIL_SECONDS = 300
# The expired URL is signed this long before its TTL ran out, so a store whose clock is
# somewhat behind ours still sees it as expired.
EXPIRED_MARGIN_SECONDS = 60
_REFUSED = {400, 401, 403}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of `url`, as a browser sends it in ``Origin``."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(scheme)
    port = parts.port
    return f"{scheme}://{host}" + ("" if port in (None, default_port) else f":{port}")


def cors_rule_allows(rules: list[dict[str, Any]], origin: str, method: str = "GET") -> bool:
    """True when one of the bucket's CORS rules lets `origin` send `method`. The key page's
    download is a simple request (no custom header), so AllowedHeaders does not matter;
    an origin pattern may hold one ``*``, as in S3 and R2."""
    for rule in rules:
        if method not in [m.upper() for m in rule.get("AllowedMethods", [])]:
            continue
        for pattern in rule.get("AllowedOrigins", []):
            prefix, star, suffix = str(pattern).lower().partition("*")
            if (not star and prefix == origin) or (
                star
                and origin.startswith(prefix)
                and origin.endswith(suffix)
                and len(origin) >= len(prefix) + len(suffix)
            ):
                return True
    return False


def _cors_rule_example(origin: str) -> str:
    return (
        f'[{{"AllowedOrigins": ["{origin}"], "AllowedMethods": ["GET"], '
        '"AllowedHeaders": [], "MaxAgeSeconds": 3600}]'
    )


def _explain(exc: BaseException, storage: S3ObjectStorage) -> str:
    """'<what happened> -> <what to change>' for an S3 call that failed."""
    bucket = storage.bucket
    endpoint = storage.endpoint_url or "AWS S3"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        seen = f"HTTP {status} {code}".strip()
        fixes = {
            "InvalidAccessKeyId": "BITLOOT_S3_ACCESS_KEY_ID is not a key this endpoint knows: "
            "copy the Access Key ID of the R2 API token (and check the account id in "
            "BITLOOT_S3_ENDPOINT_URL)",
            "SignatureDoesNotMatch": "BITLOOT_S3_SECRET_ACCESS_KEY does not belong to "
            "BITLOOT_S3_ACCESS_KEY_ID (copy the token's Secret Access Key again), or "
            "BITLOOT_S3_REGION is wrong (R2: auto)",
            "AccessDenied": f"the token may not do this on bucket {bucket!r}: give it Object "
            "Read & Write on this bucket",
            "NoSuchBucket": f"there is no bucket {bucket!r} at {endpoint}: create it, or fix "
            "BITLOOT_STORAGE_URL (s3://bucket) or the account in BITLOOT_S3_ENDPOINT_URL",
            "RequestTimeTooSkewed": f"this machine's clock is far from the store's"
            f"{_skew_text(exc)}: synchronise it (NTP, chrony)",
        }
        fix = fixes.get(code)
        if fix is None and status in (401, 403):
            fix = (
                "the store refused these credentials: check BITLOOT_S3_ACCESS_KEY_ID, "
                "BITLOOT_S3_SECRET_ACCESS_KEY and the token's permissions"
            )
        return f"{seen} -> {fix or f'unexpected answer from {endpoint}: is it an S3 endpoint?'}"
    if isinstance(exc, UNREACHABLE):
        return (
            f"cannot reach {endpoint} ({type(exc).__name__}) -> check BITLOOT_S3_ENDPOINT_URL "
            "(R2: https://<account id>.r2.cloudflarestorage.com) and this machine's network"
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no S3 credentials -> set BITLOOT_S3_ACCESS_KEY_ID and BITLOOT_S3_SECRET_ACCESS_KEY"
    if isinstance(exc, StorageError):
        return str(exc)
    return f"{type(exc).__name__} -> check BITLOOT_S3_* and BITLOOT_STORAGE_URL"


def _skew_text(exc: ClientError) -> str:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    skew = _skew(headers.get("date"))
    return f" (by {skew:+.0f} s)" if skew is not None else ""


def _skew(date_header: str | None) -> float | None:
    """The store's clock minus ours, in seconds, from its Date header."""
    if not date_header:
        return None
    try:
        theirs = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    return (theirs - datetime.now(UTC)).total_seconds()


def _tampered(url: str) -> str:
    """`url` with the last character of its X-Amz-Signature changed."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    out = [(name, flip(value) if name == "X-Amz-Signature" else value) for name, value in query]
    return urlunsplit(parts._replace(query=urlencode(out)))


@dataclass
class _Fetched:
    status: int
    body: bytes
    headers: dict[str, str]


async def _fetch(http: aiohttp.ClientSession, url: str, **headers: str) -> _Fetched:
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return _Fetched(
            response.status,
            await response.read(),
            {k.lower(): v for k, v in response.headers.items()},
        )


async def check_s3(storage: S3ObjectStorage, origin: str, ttl: int, report: Report) -> list[Step]:
    run = Run(report)
    key = canary_key()
    body = canary_body(key)
    where = f"bucket {storage.bucket!r} at {storage.endpoint_url or 'AWS S3'}"
    try:
        await storage.client.put_object(
            Bucket=storage.bucket, Key=key, Body=body, ContentType="text/plain"
        )
    except (BotoCoreError, ClientError) as exc:
        run.add("FAIL", f"put {key}", _explain(exc, storage))
        run.add("skip", "every other step", "they need the canary object")
        return run.steps
    run.add("ok", f"put {key}", where)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await _S3Check(run, storage, http, key, origin, ttl).object_steps(body)
    finally:
        await _s3_delete(run, storage, key)
    return run.steps


@dataclass
class _S3Check:
    """The steps that need the canary object, in order."""

    run: Run
    storage: S3ObjectStorage
    http: aiohttp.ClientSession
    key: str
    origin: str
    ttl: int

    async def object_steps(self, body: bytes) -> None:
        await self.read_back(body)
        url = await self.storage.signed_get_url(self.key, self.ttl)
        name = f"presigned GET within the TTL ({self.ttl} s, no credentials)"
        try:
            fresh = await _fetch(self.http, url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.run.add(
                "FAIL",
                name,
                f"cannot reach {origin_of(url)} ({type(exc).__name__}) -> "
                "BITLOOT_S3_ENDPOINT_URL must be reachable by customers' browsers",
            )
            self.run.add("skip", "the URL and CORS steps", "the store cannot be reached")
            return
        if fresh.status == 200 and fresh.body == body:
            self.run.add("ok", name)
        else:
            self.run.add(
                "FAIL",
                name,
                f"HTTP {fresh.status} -> the store refused a fresh presigned URL: check the "
                "clock step below, the token's Object Read right, and BITLOOT_S3_REGION "
                "(R2: auto)",
            )
        _clock_step(self.run, fresh.headers.get("date"))
        await self.refusals(url)
        await self.cors_rule()
        await self.cors_answer(url)

    async def read_back(self, body: bytes) -> None:
        try:
            got = await self.storage.client.get_object(Bucket=self.storage.bucket, Key=self.key)
            read = await got["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            self.run.add("FAIL", "read back", _explain(exc, self.storage))
            return
        if read == body:
            self.run.add("ok", "read back")
        else:
            self.run.add(
                "FAIL",
                "read back",
                f"got {len(read)} bytes that differ from the {len(body)} written -> "
                "BITLOOT_S3_ENDPOINT_URL is not a plain S3 store",
            )

    async def refusals(self, url: str) -> None:
        age = self.ttl + EXPIRED_MARGIN_SECONDS
        signed_at = datetime.now(UTC) - timedelta(seconds=age)
        expired = await self.storage.signed_get_url_as_of(self.key, self.ttl, signed_at)
        probes = [
            (f"expired presigned URL refused (signed {age} s ago, TTL {self.ttl} s)", expired),
            ("tampered presigned URL refused", _tampered(url)),
        ]
        for name, probe in probes:
            try:
                status = (await _fetch(self.http, probe)).status
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.run.add("FAIL", name, f"{type(exc).__name__} -> check BITLOOT_S3_ENDPOINT_URL")
                continue
            if status in _REFUSED:
                self.run.add("ok", name, f"HTTP {status}")
            else:
                self.run.add(
                    "FAIL",
                    name,
                    f"HTTP {status}: the store served it -> this endpoint does not enforce "
                    "presigned URLs; BITLOOT_S3_ENDPOINT_URL must be R2 (or S3) itself",
                )

    async def cors_rule(self) -> None:
        name = f"CORS rule lets {self.origin} GET"
        rule = _cors_rule_example(self.origin)
        by_hand = (
            "check by hand that the bucket's CORS policy (R2 dashboard: bucket > Settings > "
            f"CORS Policy) allows it, e.g. {rule}"
        )
        try:
            answer = await self.storage.client.get_bucket_cors(Bucket=self.storage.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchCORSConfiguration":
                failure = "the bucket has no CORS rule, so browsers cannot download keys"
                self.run.add("FAIL", name, f"{failure} -> set its CORS policy to {rule}")
            elif code == "AccessDenied" or status in (401, 403):
                why = f"this token may not read the bucket's CORS rule ({code or status})"
                self.run.add("skip", name, f"{why} -> {by_hand}")
            else:
                self.run.add("warn", name, f"HTTP {status} {code} -> {by_hand}")
            return
        except BotoCoreError as exc:
            self.run.add("warn", name, f"{type(exc).__name__} -> {by_hand}")
            return
        rules = answer.get("CORSRules") or []
        if not rules:
            why = "the store answered GetBucketCors without any rule (it may not support it)"
            self.run.add("warn", name, f"{why} -> {by_hand}")
        elif cors_rule_allows(rules, self.origin):
            self.run.add("ok", name)
        else:
            allowed = sorted({str(o) for r in rules for o in r.get("AllowedOrigins", [])})
            self.run.add(
                "FAIL",
                name,
                f"no rule allows GET from {self.origin} (origins allowed: "
                f"{', '.join(allowed) or 'none'}) -> add {self.origin} to the AllowedOrigins "
                "of a GET rule: it must be BITLOOT_PUBLIC_URL's origin exactly",
            )

    async def cors_answer(self, url: str) -> None:
        """What the key page's fetch meets: a simple GET (no preflight) with `Origin`; the
        browser hands over the bytes only if the answer allows that origin."""
        name = f"browser download from {self.origin} (CORS)"
        try:
            answer = await _fetch(self.http, url, Origin=self.origin)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.run.add("FAIL", name, f"{type(exc).__name__} -> check BITLOOT_S3_ENDPOINT_URL")
            return
        allowed = answer.headers.get("access-control-allow-origin")
        if answer.status == 200 and allowed in (self.origin, "*"):
            self.run.add("ok", name, f"Access-Control-Allow-Origin: {allowed}")
        elif answer.status != 200:
            self.run.add("FAIL", name, f"HTTP {answer.status} -> see the presigned GET step above")
        else:
            seen = f"Access-Control-Allow-Origin: {allowed}" if allowed else "no CORS header"
            self.run.add(
                "FAIL",
                name,
                f"the store answered with {seen}, so the browser would block the key -> set "
                f"the bucket's CORS policy to {_cors_rule_example(self.origin)}",
            )


def _clock_step(run: Run, date_header: str | None) -> None:
    skew = _skew(date_header)
    name = "clock agrees with the store's"
    if skew is None:
        run.add("warn", name, "the store sent no Date header -> check this machine's clock")
    elif abs(skew) <= SKEW_WARN_SECONDS:
        run.add("ok", name, f"{skew:+.0f} s")
    else:
        run.add(
            "FAIL" if abs(skew) > SKEW_FAIL_SECONDS else "warn",
            name,
            f"the store's Date is {skew:+.0f} s from ours, so links live that much shorter "
            "or longer -> synchronise this machine's clock (NTP, chrony)",
        )


async def _s3_delete(run: Run, storage: S3ObjectStorage, key: str) -> None:
    name = f"delete {key}"
    try:
        await storage.client.delete_object(Bucket=storage.bucket, Key=key)
        still_there = await storage.exists(key)
    except (BotoCoreError, ClientError, StorageError) as exc:
        run.add("FAIL", name, f"{_explain(exc, storage)}; remove {key} by hand")
        return
    if still_there:
        run.add(
            "FAIL",
            name,
            f"the object is still there -> give the token Object Read & Write, and remove "
            f"{key} by hand",
        )
    else:
        run.add("ok", name)
