"""Registering and managing webhook endpoints and their signing secrets.

An endpoint is registered with a URL that passed the address rules (`addresses`: https,
and a host that is not, and does not resolve to, a private, loopback, link-local or
metadata address, unless `webhook_allow_private_urls`) and the event types it wants.
Its signing secret (`whsec_...`) is made here, returned once to be shown once, and stored
only wrapped by the master key (`secrets`). A rotation makes a new current secret and
lets the old one sign for `webhook_secret_overlap` seconds more, so a receiver that has
not switched yet still verifies every delivery. A removed endpoint keeps its row (its
attempts stay explained); what was still pending for it fails with 'endpoint removed'.

Every function takes the caller's connection and never commits; the caller (the admin
service, which audits each change) owns the transaction.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import structlog
from cryptography.exceptions import InvalidTag

from bitloot.text import is_storable
from bitloot.vault.crypto import MasterKeyRing, VaultError
from bitloot.webhooks import repository
from bitloot.webhooks.addresses import RefusedAddress, check_resolved, check_url
from bitloot.webhooks.models import EndpointOut, SecretAgeOut
from bitloot.webhooks.repository import Conn, EndpointRow, SecretAge
from bitloot.webhooks.secrets import new_secret, rewrap, to_whsec, unwrap, wrap

log = structlog.get_logger(__name__)

# The event types of migration 0019 (webhook_messages.event_type), in the order people
# meet them; a test holds the two lists together.
EVENT_TYPES = (
    "order.paid",
    "order.fulfilled",
    "order.failed",
    "order.underpaid",
    "order.refunded",
    "order.expired",
    "order.key_replaced",
)
# At registration the host is resolved once; an admin waits at most this long for it.
RESOLVE_TIMEOUT = 5.0
REMOVED_ERROR = "endpoint removed"
_MAX_TEXT = 500


class EndpointNotFound(LookupError):
    """No registered endpoint has this id (never was, or was removed)."""


class InvalidEndpoint(ValueError):
    """Input an endpoint cannot have; `field` names it (url, events, description, reason)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Endpoint:
    """A registered endpoint, and the secrets that sign for it now (their ages, never them)."""

    row: EndpointRow
    secrets: list[SecretAge]

    @property
    def id(self) -> uuid.UUID:
        """The endpoint id."""
        return self.row.id

    @property
    def current_secret_at(self) -> datetime | None:
        """When its current secret was made (None only if it has none, which cannot be)."""
        return next((s.created_at for s in self.secrets if s.expires_at is None), None)


@dataclass(frozen=True)
class NewEndpoint:
    """A registration: the endpoint, and its secret to show once (kept out of repr)."""

    endpoint: Endpoint
    secret: str = field(repr=False)


@dataclass(frozen=True)
class RotatedSecret:
    """A rotation: the new secret to show once, and when the previous one stops signing."""

    endpoint_id: uuid.UUID
    secret: str = field(repr=False)
    previous_expires_at: datetime | None


@dataclass(frozen=True)
class RemovedEndpoint:
    """A removal: when, and how many pending deliveries it failed."""

    endpoint_id: uuid.UUID
    removed_at: datetime
    failed_deliveries: int


async def check_endpoint_url(url: str, *, allow_private: bool) -> str:
    """The URL if webhooks may be sent there (`InvalidEndpoint` saying why otherwise): its
    form and, for a name, every address it resolves to now."""
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidEndpoint(
            "url", "the URL must be ASCII without spaces (percent-encode it, punycode the host)"
        )
    try:
        check_url(url, allow_private=allow_private)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except RefusedAddress as exc:
        raise InvalidEndpoint("url", str(exc)) from None
    except ValueError:
        raise InvalidEndpoint("url", "the URL is malformed (its host or port)") from None
    try:
        ipaddress.ip_address(host)
        return url  # an address literal: check_url checked it
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            await check_resolved(host, port, allow_private=allow_private)
    except RefusedAddress as exc:
        why = str(exc) if host in str(exc) else f"{host} resolves to a refused address: {exc}"
        raise InvalidEndpoint("url", why) from None
    except TimeoutError:
        raise InvalidEndpoint(
            "url", f"{host} did not resolve within {RESOLVE_TIMEOUT:g} seconds"
        ) from None
    except (UnicodeError, ValueError):
        raise InvalidEndpoint("url", f"{host} is not a valid host name") from None
    return url


def check_event_types(events: Sequence[str] | None) -> list[str] | None:
    """The event types as stored (duplicates dropped; None: every type), or
    `InvalidEndpoint` naming the unknown ones."""
    if events is None:
        return None
    chosen = list(dict.fromkeys(e.strip() for e in events))
    if not chosen or "" in chosen:
        raise InvalidEndpoint("events", "name at least one event type, without empty names")
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        names = ", ".join(repr(e) for e in unknown)
        raise InvalidEndpoint(
            "events", f"unknown event type {names}; known: {', '.join(EVENT_TYPES)}"
        )
    return chosen


async def register_endpoint(
    conn: Conn,
    ring: MasterKeyRing,
    *,
    url: str,
    events: Sequence[str] | None,
    description: str | None,
    created_by: str,
    allow_private: bool,
) -> NewEndpoint:
    """Check the URL and events, store the endpoint with a new secret wrapped by the
    active master key, and return the secret (`whsec_...`) to show once."""
    event_types = check_event_types(events)
    description = _text("description", description, allow_empty=True) or None
    await check_endpoint_url(url, allow_private=allow_private)
    endpoint_id = await repository.insert_endpoint(
        conn,
        url=url,
        event_types=event_types,
        description=description,
        created_by=created_by,
    )
    secret = new_secret()
    await repository.insert_endpoint_secret(conn, endpoint_id, wrap(ring, endpoint_id, secret))
    log.info("webhooks.endpoint_registered", endpoint_id=str(endpoint_id), events=event_types)
    return NewEndpoint(endpoint=await get_endpoint(conn, endpoint_id), secret=to_whsec(secret))


async def list_endpoints(conn: Conn) -> list[Endpoint]:
    """Every registered (not removed) endpoint, oldest first."""
    rows = await repository.registered_endpoints(conn)
    ages = await repository.endpoint_secret_ages(conn, [r.id for r in rows])
    return [Endpoint(row, ages[row.id]) for row in rows]


async def get_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> Endpoint:
    """One registered endpoint (`EndpointNotFound` if it is not, or was removed)."""
    row = await repository.registered_endpoint(conn, endpoint_id)
    if row is None:
        raise EndpointNotFound(str(endpoint_id))
    ages = await repository.endpoint_secret_ages(conn, [row.id])
    return Endpoint(row, ages[row.id])


async def disable_endpoint(conn: Conn, endpoint_id: uuid.UUID, *, reason: str) -> bool:
    """Stop new deliveries to the endpoint, saying why; False when it was already disabled."""
    reason = _text("reason", reason)
    await _lock(conn, endpoint_id)
    changed = await repository.disable_endpoint(conn, endpoint_id, reason)
    if changed:
        log.info("webhooks.endpoint_disabled", endpoint_id=str(endpoint_id))
    return changed


async def enable_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> bool:
    """Enable the endpoint again and queue the delivery of what is still pending for it;
    False when it was already enabled. (Failed deliveries wait for an admin redelivery.)"""
    await _lock(conn, endpoint_id)
    changed = await repository.enable_endpoint(conn, endpoint_id)
    if changed:
        pairs = await repository.requeue_pending_deliveries(conn, endpoint_id)
        log.info("webhooks.endpoint_enabled", endpoint_id=str(endpoint_id), requeued=pairs)
    return changed


async def rotate_secret(
    conn: Conn, ring: MasterKeyRing, endpoint_id: uuid.UUID, *, overlap_seconds: float
) -> RotatedSecret:
    """Make a new current secret; the previous one keeps signing for `overlap_seconds`."""
    await _lock(conn, endpoint_id)
    previous = await repository.expire_current_secret(conn, endpoint_id, overlap_seconds)
    secret = new_secret()
    await repository.insert_endpoint_secret(conn, endpoint_id, wrap(ring, endpoint_id, secret))
    log.info("webhooks.secret_rotated", endpoint_id=str(endpoint_id))
    return RotatedSecret(endpoint_id, to_whsec(secret), previous)


async def remove_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> RemovedEndpoint:
    """Remove the endpoint: nothing more is sent to it, its secrets stop signing, and
    what was still pending for it fails with 'endpoint removed'."""
    await _lock(conn, endpoint_id)
    removed_at = await repository.remove_endpoint(conn, endpoint_id)
    assert removed_at is not None  # locked, and not removed: the update matched
    await repository.expire_all_secrets(conn, endpoint_id)
    failed = await repository.fail_pending_deliveries(conn, endpoint_id, REMOVED_ERROR)
    log.info("webhooks.endpoint_removed", endpoint_id=str(endpoint_id), failed_deliveries=failed)
    return RemovedEndpoint(endpoint_id, removed_at, failed)


async def signing_secrets(conn: Conn, ring: MasterKeyRing, endpoint_id: uuid.UUID) -> list[bytes]:
    """The raw secrets that sign the endpoint's deliveries now, newest first (during a
    rotation's overlap, the previous ones too: one signature each)."""
    stored = await repository.endpoint_signing_secrets(conn, endpoint_id)
    return [unwrap(ring, endpoint_id, s) for s in stored]


async def rewrap_endpoint_secrets(conn: Conn, ring: MasterKeyRing) -> int:
    """Re-wrap every stored secret not under the ring's active master key (part of
    `bitloot keys rotate`); how many. Secrets another transaction holds are left for the
    next run. Run it in a transaction: the rows stay locked until it commits."""
    done = 0
    for stored in await repository.lock_secrets_to_rewrap(conn, ring.active_id):
        try:
            fresh = rewrap(ring, stored.endpoint_id, stored.secret)
        except InvalidTag:
            raise VaultError(
                f"webhook secret {stored.id} does not open with master key "
                f"{stored.master_key_id!r}: the id must always name the same 32 bytes"
            ) from None
        if await repository.rewrap_secret(conn, stored, fresh):
            done += 1
    if done:
        log.info("webhooks.secrets_rewrapped", active=ring.active_id, rewrapped=done)
    return done


def endpoint_out(endpoint: Endpoint) -> EndpointOut:
    """The endpoint as the admin API shows it."""
    row = endpoint.row
    return EndpointOut(
        id=row.id,
        url=row.url,
        events=row.event_types,
        description=row.description,
        enabled=row.enabled,
        disabledAt=row.disabled_at,
        disabledReason=row.disabled_reason,
        createdBy=row.created_by,
        createdAt=row.created_at,
        updatedAt=row.updated_at,
        secrets=[
            SecretAgeOut(createdAt=s.created_at, expiresAt=s.expires_at) for s in endpoint.secrets
        ],
    )


async def _lock(conn: Conn, endpoint_id: uuid.UUID) -> EndpointRow:
    row = await repository.registered_endpoint(conn, endpoint_id, lock=True)
    if row is None:
        raise EndpointNotFound(str(endpoint_id))
    return row


def _text(field_name: str, value: str | None, *, allow_empty: bool = False) -> str:
    """Free text an admin gave (a description, a reason), checked for the database."""
    text = (value or "").strip()
    if not text and not allow_empty:
        raise InvalidEndpoint(field_name, f"the {field_name} must not be empty")
    if len(text) > _MAX_TEXT:
        raise InvalidEndpoint(field_name, f"the {field_name} is longer than {_MAX_TEXT} characters")
    if not is_storable(text):
        raise InvalidEndpoint(
            field_name, f"the {field_name} is not valid text (NUL or a surrogate)"
        )
    return text
