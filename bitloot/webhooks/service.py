"""What the rest of BitLoot may use of the webhooks domain (admin, cli, ops, server,
health and metrics import this module only).

Endpoints and their secrets: `endpoints` (registration, disable/enable, secret rotation,
removal, re-wrapping under a new master key); the admin domain audits each change.
Delivery: `delivery` (the `deliver_webhooks` job, its schedule, the backlog's age) and
`redelivery` (an admin sends events again).
"""

from __future__ import annotations

from bitloot.webhooks.addresses import RefusedAddress
from bitloot.webhooks.delivery import MAX_ATTEMPTS, RETRY_DELAYS, oldest_pending_age
from bitloot.webhooks.endpoints import (
    EVENT_TYPES,
    REMOVED_ERROR,
    Endpoint,
    EndpointNotFound,
    InvalidEndpoint,
    NewEndpoint,
    RemovedEndpoint,
    RotatedSecret,
    check_endpoint_url,
    check_event_types,
    disable_endpoint,
    enable_endpoint,
    endpoint_out,
    get_endpoint,
    list_endpoints,
    register_endpoint,
    remove_endpoint,
    rewrap_endpoint_secrets,
    rotate_secret,
    signing_secrets,
)
from bitloot.webhooks.models import (
    CreatedEndpointOut,
    DisableIn,
    EndpointIn,
    EndpointListOut,
    EndpointOut,
    RedeliveredOut,
    RedeliverIn,
    RemovedEndpointOut,
    RotatedSecretOut,
    SecretAgeOut,
)
from bitloot.webhooks.redelivery import DeliveryNotFound, redeliver
from bitloot.webhooks.repository import Conn

__all__ = [
    "EVENT_TYPES",
    "MAX_ATTEMPTS",
    "REMOVED_ERROR",
    "RETRY_DELAYS",
    "Conn",
    "CreatedEndpointOut",
    "DeliveryNotFound",
    "DisableIn",
    "Endpoint",
    "EndpointIn",
    "EndpointListOut",
    "EndpointNotFound",
    "EndpointOut",
    "InvalidEndpoint",
    "NewEndpoint",
    "RedeliverIn",
    "RedeliveredOut",
    "RefusedAddress",
    "RemovedEndpoint",
    "RemovedEndpointOut",
    "RotatedSecret",
    "RotatedSecretOut",
    "SecretAgeOut",
    "check_endpoint_url",
    "check_event_types",
    "disable_endpoint",
    "enable_endpoint",
    "endpoint_out",
    "get_endpoint",
    "list_endpoints",
    "oldest_pending_age",
    "redeliver",
    "register_endpoint",
    "remove_endpoint",
    "rewrap_endpoint_secrets",
    "rotate_secret",
    "signing_secrets",
]
