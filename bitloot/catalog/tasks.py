"""The catalog's periodic job: read every active product from Kinguin again."""

from __future__ import annotations

from bitloot.catalog import service
from bitloot.queue import MAINTENANCE_QUEUE, queue_app
from bitloot.resources import current


@queue_app.periodic(cron="*/10 * * * *", periodic_id="refresh_catalog")
@queue_app.task(name="refresh_catalog", queue=MAINTENANCE_QUEUE, queueing_lock="refresh_catalog")
async def refresh_catalog(timestamp: int) -> dict[str, int]:
    """Store Kinguin's current stock and cheapest price of every active product."""
    return await service.refresh_catalog(current())
