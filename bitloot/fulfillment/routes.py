"""Customer fulfillment endpoints: status and download links."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
