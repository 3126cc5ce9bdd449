"""Prometheus metrics, kept in our own registry so tests and `/metrics` see only ours.

Labels are bounded on purpose: routes are canonical paths (`/orders/{id}`), never raw
paths, and unknown HTTP methods collapse into `OTHER`, so a scanner cannot grow the series.
No label or value ever holds an id, a token or a key.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()

HTTP_REQUEST_DURATION = Histogram(
    "bitloot_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
HTTP_REQUESTS = Counter(
    "bitloot_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)

# Imported by bitloot.fulfillment.collect: paid -> keys stored and the order fulfilled.
TIME_TO_KEY = Histogram(
    "bitloot_time_to_key_seconds",
    "Seconds from an order being paid to its keys being stored and the order fulfilled.",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0),
)
IPN_OUTCOMES = Counter(
    "bitloot_ipn_total",
    "NOWPayments IPNs received, by outcome (accepted, duplicate, bad_signature, malformed).",
    ["outcome"],
    registry=REGISTRY,
)
KINGUIN_WEBHOOK_OUTCOMES = Counter(
    "bitloot_kinguin_webhooks_total",
    "Kinguin webhooks received, by outcome (accepted, duplicate, bad_secret, ignored, ...).",
    ["outcome"],
    registry=REGISTRY,
)
KINGUIN_CALL_DURATION = Histogram(
    "bitloot_kinguin_call_duration_seconds",
    "Kinguin API call attempts, by endpoint and outcome.",
    ["endpoint", "outcome"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH = Gauge(
    "bitloot_queue_jobs",
    "Jobs in the queue by queue and status (todo, doing), read when /metrics is scraped.",
    ["queue", "status"],
    registry=REGISTRY,
)
# Read from the audit views (migration 0010) when /metrics is scraped; absent until the
# first scrape that reached the database, stale values are dropped when one does not.
FAILED_JOBS = Gauge(
    "bitloot_failed_jobs",
    "Jobs that failed for good (the failed_jobs view), by queue, read when /metrics is scraped.",
    ["queue"],
    registry=REGISTRY,
)
STUCK_ORDERS = Gauge(
    "bitloot_stuck_orders",
    "Orders paid more than 5 minutes ago and not fulfilled (the stuck_orders view).",
    registry=REGISTRY,
)
NEEDS_ATTENTION = Gauge(
    "bitloot_needs_attention",
    "Rows of the needs_attention view by kind (order, payment, webhook, email).",
    ["kind"],
    registry=REGISTRY,
)
JOB_OUTCOMES = Counter(
    "bitloot_jobs_total",
    "Jobs run by this worker, by task and outcome (succeeded, retried, failed).",
    ["task", "outcome"],
    registry=REGISTRY,
)
# Outbound webhooks (bitloot.webhooks.delivery): counted by the worker that made the
# attempt; the backlog's age is read from the database when /metrics is scraped.
WEBHOOK_ATTEMPTS = Counter(
    "bitloot_webhook_attempts_total",
    "Outbound webhook delivery attempts made by this worker, by outcome (delivered, retry,"
    " failed, refused_address).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "bitloot_webhook_oldest_pending_seconds",
    "Age of the oldest outbound webhook event not yet delivered to an enabled endpoint"
    " (0: none), read when /metrics is scraped.",
    registry=REGISTRY,
)
for _outcome in ("delivered", "retry", "failed", "refused_address"):
    WEBHOOK_ATTEMPTS.labels(outcome=_outcome)  # exported as 0 before the first attempt

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record one answered request (called by the access-log middleware)."""
    label_method = method if method in _KNOWN_METHODS else "OTHER"
    labels = {"method": label_method, "route": route, "status": str(status)}
    HTTP_REQUEST_DURATION.labels(**labels).observe(seconds)
    HTTP_REQUESTS.labels(**labels).inc()


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type (for `/metrics`)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
