"""What request handlers share: the process's `Resources`, set once by `bitloot serve`."""

from __future__ import annotations

from aiohttp import web

from bitloot.resources import Resources

RESOURCES = web.AppKey("resources", Resources)


def resources(request: web.Request) -> Resources:
    """The resources of the application serving `request`."""
    return request.app[RESOURCES]
