"""While the database cannot be reached (PostgreSQL stopped or restarting, a connection lost),
every route answers a JSON 503 with Retry-After, one log line each, instead of a 500 and a
traceback. Nothing is lost: whatever the request was doing rolled back with its transaction,
and the client (a hospital's system, WeChat, a browser) asks again. The engine's pool drops
the connections such a failure shows dead, so the service recovers once the database is back,
without a restart."""
from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from storage.db import describe, unavailable

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


def unavailable_response() -> web.Response:
    return web.json_response({"error": "database_unavailable", "message": "the database cannot be reached now; try again shortly"},
                             status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@web.middleware
async def database_outage(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if not unavailable(exc):
            raise
        resource = request.match_info.route.resource  # its pattern: a path may hold a cashier's token
        route = resource.canonical if resource is not None else request.path
        log.warning("database unavailable: %s %s answered 503 (%s)", request.method, route, describe(exc))
        return unavailable_response()
