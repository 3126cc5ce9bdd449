"""`GET /products`: the active catalog for storefronts (public, no cost ever shown)."""

from __future__ import annotations

from aiohttp import web

from bitloot.catalog import service
from bitloot.catalog.models import CatalogOut
from bitloot.web.context import resources
from bitloot.web.contract import Ok, operation

routes = web.RouteTableDef()

# Storefronts may poll it; a short shared-cache life spares the database.
CACHE_CONTROL = "public, max-age=30"


@routes.get("/products")
@operation(
    "The active catalog",
    tag="catalog",
    security="none",
    ok=Ok(
        200,
        "Every active product, by name, with our price and what Kinguin last said about its "
        "stock. Not paginated: a catalog is small.",
        CatalogOut,
        headers={"Cache-Control": f"`{CACHE_CONTROL}`."},
    ),
)
async def list_products(request: web.Request) -> web.Response:
    """The active catalog: productId, name, price, currency and availability."""
    async with resources(request).pool.connection() as conn:
        catalog = await service.public_catalog(conn)
    return web.json_response(
        catalog.model_dump(mode="json"), headers={"Cache-Control": CACHE_CONTROL}
    )
