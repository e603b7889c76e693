"""`GET /metrics`: this process's figures in Prometheus' text format (prometheus-client's default
registry): request latency per route, the event loop's lag, the database pool, the outbox by
kind and state, and what billing/metrics.py and the webhook count. No personal data: labels
are routes, kinds and states.

Each worker of `xinyi serve` has its own figures; the outbox's, read from the database at each
scrape, are the programme's.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool

from billing.outbox import EVENT
from bot.hospital_api import CORE
from storage.models import Outbox

REQUEST_SECONDS = Histogram("xinyi_http_request_duration_seconds", "Requests by route (its pattern), method and status",
                            ["route", "method", "status"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOOP_LAG = Histogram("xinyi_event_loop_lag_seconds", "How late the event loop woke a task that slept LAG_PROBE_S",
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOOP_LAG_LAST = Gauge("xinyi_event_loop_lag_last_seconds", "The event loop's lag at its latest probe")
POOL = Gauge("xinyi_db_pool_connections", "The database pool: connections checked out, and its size", ["state"])
OUTBOX = Gauge("xinyi_outbox_messages", "Outbox messages not sent, by kind: pending (never failed), failing "
               "(pending after a failed attempt) and dead (given up)", ["kind", "state"])
EVENTS = Gauge("xinyi_programme_events", "Programme events not delivered to the insurer's system: pending, "
               "failing (being retried after an error) and parked (refused; `xinyi events --retry` sends them again)",
               ["state"])
EVENT_STATES = {"pending": "pending", "failing": "failing", "dead": "parked"}
LAG_PROBE_S = 0.25


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Times every request, refusals and errors included, under its route's pattern (never the
    path itself: a bill number or token in it would make a series per bill)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        REQUEST_SECONDS.labels(route, request.method, str(status)).observe(time.perf_counter() - started)


async def metrics(request: web.Request) -> web.Response:
    core = request.app[CORE]
    pool = core.db.engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        POOL.labels("checked_out").set(pool.checkedout())
        POOL.labels("size").set(pool.size())
    async with core.db.transaction() as session:
        rows = (await session.execute(
            select(Outbox.kind, Outbox.status, Outbox.last_error.is_not(None), func.count())
            .where(Outbox.status.in_(("pending", "dead"))).group_by(Outbox.kind, Outbox.status, Outbox.last_error.is_not(None))
        )).all()
    OUTBOX.clear()  # a kind with nothing left unsent reads 0 until the process restarts, not its old count
    for state in EVENT_STATES.values():  # always there, 0 included: what an alert on failing events reads
        EVENTS.labels(state).set(0)
    for kind, status, failed, count in rows:
        state = "dead" if status == "dead" else "failing" if failed else "pending"
        OUTBOX.labels(kind, state).inc(count)
        if kind == EVENT:
            EVENTS.labels(EVENT_STATES[state]).inc(count)
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _watch_the_loop(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_probe_lag())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _probe_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        asleep = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        lag = max(0.0, loop.time() - asleep - LAG_PROBE_S)
        LOOP_LAG.observe(lag)
        LOOP_LAG_LAST.set(lag)


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_watch_the_loop)
