"""`GET /orders/{id}/key` and its static assets."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
