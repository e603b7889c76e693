"""The aiohttp application: one factory, every resource opened and closed in cleanup_ctx."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web
from sqlalchemy import text

from billing import outbox
from billing.audit import RollingAudit
from billing.core import Core
from billing.metrics import SWEEP_MOVES
from billing.sweep import sweep_apart
from bot import admin, cashier, documents, metrics, notify_alipay, notify_wechatpay, openapi, staff_qr, wechat_webhook
from bot.outage import RETRY_AFTER_S, database_outage
from bot.alipay import ALIPAY
from bot.event_webhook import EventWebhook
from bot.hospital_api import CORE, json_errors, prune_nonces, routes as hospital_routes, verify_signature
from bot.reconcile import Reconciler
from bot.wechatpay import WECHATPAY
from bot.wechat_api import WeChatApi
from handlers.router import handle
from storage.db import describe, unavailable

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
SWEEP_EVERY_S = 60
HEALTH_WAIT_S = 1.0
UNWRITABLE_AFTER_S = 5.0
HEALTH_PROBE = web.AppKey("health_probe", dict)
OUTBOX_POLL_S = 10  # the sender is woken by each commit that queues a message; this is its safety net


def build_app(core: Core, *, sender: outbox.Sender | None = None, background: bool = True,
              wechat: WeChatApi | None = None, sweep_every_s: float = SWEEP_EVERY_S,
              events: EventWebhook | None = None) -> web.Application:
    """`background=False` leaves the scheduled sweep to the caller (tests drive it by hand);
    `wechat` (the account's API client) opens `/wechat`, and the app closes it; `events` sends
    the programme events (without it they are kept, not sent), and the app closes it."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[metrics.measured, database_outage, json_errors, verify_signature])
    app[CORE] = core
    app[HEALTH_PROBE] = {}
    app.router.add_routes(hospital_routes)
    app.router.add_get("/healthz", healthz)
    metrics.setup(app)
    openapi.setup(app)
    notify_wechatpay.setup(app)
    notify_alipay.setup(app)
    cashier.setup(app)
    admin.setup(app)
    documents.setup(app)
    app.cleanup_ctx.append(_database)
    if wechat is not None:  # after the database: late replies are sent before it closes
        wechat_webhook.setup(app, handle, wechat)
        staff_qr.setup(app)
    if background:
        app.cleanup_ctx.append(_scheduler(sender or outbox.LogSender(), sweep_every_s, events))
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    yield
    probe = app[HEALTH_PROBE].get("write")
    if probe is not None:
        probe.cancel()
    await app[CORE].db.close()


def _scheduler(sender: outbox.Sender, every_s: float, events: EventWebhook | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        core = app[CORE]
        # The payment clients open earlier in cleanup_ctx; whichever this deployment has are asked.
        gateways = {name: client for name, client in (("wechatpay", app.get(WECHATPAY)), ("alipay", app.get(ALIPAY))) if client}
        async with core.db.listening():
            tasks = [asyncio.create_task(_sweep_forever(core, Reconciler(core, gateways), every_s)),
                     asyncio.create_task(outbox.keep_sending(core.db, sender, core.clock.now, OUTBOX_POLL_S))]
            if events is not None:
                tasks.append(asyncio.create_task(
                    outbox.keep_sending(core.db, events, core.clock.now, OUTBOX_POLL_S, outbox.EVENTS)))
            yield
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if events is not None:
                await events.close()

    return ctx


async def _sweep_forever(core: Core, reconcile: Reconciler, every_s: float) -> None:
    """One worker sweeps at a time; the others stand by and try again at their next turn. The
    sweep runs on a thread of its own (billing.sweep.sweep_apart), and its notices are announced
    to the outbox's sender when it ends."""
    audit = RollingAudit()  # where the audit's rolling slice has got to
    while True:
        try:
            async with core.db.leading("sweep") as leader:
                if leader:
                    await prune_nonces(core)
                    reconciled = await reconcile()  # first: money paid at the gateway is never overdue
                    report = await sweep_apart(core, audit)
                    report.reconciled = reconciled
                    SWEEP_MOVES.labels("reconciled").inc(reconciled)
                    core.db.announce(outbox.QUEUED)
                    if not report.quiet:
                        log.info("sweep: %s", report)
        except Exception as exc:  # the schedule must outlive one bad run; the error is logged in full
            if unavailable(exc):
                log.warning("sweep: the database is unavailable (%s); retrying in %s s", describe(exc), every_s)
            else:
                log.exception("sweep failed; retrying in %s s", every_s)
        await asyncio.sleep(every_s)


async def healthz(request: web.Request) -> web.Response:
    """Within HEALTH_WAIT_S: ok when a write transaction goes through (on SQLite it takes the
    write lock), still ok but `busy` while the database has been unwritable for less than
    UNWRITABLE_AFTER_S (another process's write), 503 after that or when the database fails.
    One probe at a time: a probe that outlives its request goes on, and the next request waits for it."""
    db = request.app[CORE].db
    probe = request.app[HEALTH_PROBE].get("write")
    if probe is None or probe.done():
        probe = request.app[HEALTH_PROBE]["write"] = asyncio.ensure_future(db.run(_select_one))
        probe.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, also when no one waits
    try:
        await asyncio.wait_for(asyncio.shield(probe), HEALTH_WAIT_S)
    except asyncio.TimeoutError:
        stalled_s = db.stalled_s()
        if stalled_s >= UNWRITABLE_AFTER_S:
            return web.json_response({"status": "error", "database": "not_writable", "stalled_s": round(stalled_s, 1)},
                                     status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return web.json_response({"status": "ok", "database": "busy"})
    except Exception as exc:  # any database failure makes the instance unhealthy
        state = "unavailable" if unavailable(exc) else type(exc).__name__
        return web.json_response({"status": "error", "database": state}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return web.json_response({"status": "ok"})


def _select_one(session) -> None:
    session.execute(text("SELECT 1"))
