"""Where webhooks may go: no server-side request forgery.

An endpoint URL must be `https` and its host must not be, or resolve to, a private,
loopback, link-local, multicast, reserved or unspecified address, nor a cloud metadata
address (169.254.169.254, fd00:ec2::254, ...). It is checked when an admin registers the
URL and again at every delivery, against what the name resolves to at that moment, and
the connection goes to the address that was checked (`GuardedResolver`), so a name that
changes its answer between the check and the connect (DNS rebinding) reaches nothing it
may not. `BITLOOT_WEBHOOK_ALLOW_PRIVATE_URLS=true` lifts both rules (http and private
addresses) for local use and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

MAX_URL_LENGTH = 2000
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


class RefusedAddress(ValueError):
    """The URL, or what its host resolves to, is not a place webhooks may go."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may be registered (`RefusedAddress` otherwise, saying why).

    Checks the form (https, a host, no credentials, no fragment) and, when the host is an
    IP literal, the address; a name is resolved and checked by `check_resolved` (at
    registration, `service` resolves it once; at delivery, `GuardedResolver`)."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedAddress(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_private):
        raise RefusedAddress("the URL must be https")
    if not parts.hostname:
        raise RefusedAddress("the URL has no host")
    if parts.username or parts.password:
        raise RefusedAddress("the URL must not carry credentials")
    if parts.fragment:
        raise RefusedAddress("the URL must not have a fragment")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    check_address(literal, allow_private=allow_private)
    return url


def check_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> None:
    """`RefusedAddress` unless a webhook may be sent to `address`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        raise RefusedAddress(f"{address} is a cloud metadata address")
    if allow_private:
        return
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        raise RefusedAddress(f"{address} is not a public address")


async def check_resolved(host: str, port: int, *, allow_private: bool) -> None:
    """Resolve `host` now and refuse it if any answer is an address webhooks may not reach."""
    resolver = GuardedResolver(allow_private=allow_private)
    try:
        await resolver.resolve(host, port)
    finally:
        await resolver.close()


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing every answer that `check_address` refuses: the
    connection can only be made to an address that passed the check."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            answers = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise RefusedAddress(f"{host} does not resolve: {exc}") from None
        for answer in answers:
            check_address(ipaddress.ip_address(answer["host"]), allow_private=self._allow_private)
        return answers

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"GuardedResolver(allow_private={self._allow_private})"
