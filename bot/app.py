"""The aiohttp application: one factory, every resource opened and closed in cleanup_ctx."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web
from sqlalchemy import text

from billing import outbox
from billing.audit import RollingAudit
from billing.core import Core
from billing.sweep import sweep
from bot import cashier, notify_alipay, notify_wechatpay, openapi, staff_qr, wechat_webhook
from bot.alipay import ALIPAY
from bot.hospital_api import CORE, json_errors, prune_nonces, routes as hospital_routes, verify_signature
from bot.reconcile import Reconciler
from bot.wechatpay import WECHATPAY
from bot.wechat_api import WeChatApi
from handlers.router import handle

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
SWEEP_EVERY_S = 60


def build_app(core: Core, *, sender: outbox.Sender | None = None, background: bool = True,
              wechat: WeChatApi | None = None, sweep_every_s: float = SWEEP_EVERY_S) -> web.Application:
    """`background=False` leaves the scheduled sweep to the caller (tests drive it by hand);
    `wechat` (the account's API client) opens `/wechat`, and the app closes it."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors, verify_signature])
    app[CORE] = core
    app.router.add_routes(hospital_routes)
    app.router.add_get("/healthz", healthz)
    openapi.setup(app)
    notify_wechatpay.setup(app)
    notify_alipay.setup(app)
    cashier.setup(app)
    app.cleanup_ctx.append(_database)
    if wechat is not None:  # after the database: late replies are sent before it closes
        wechat_webhook.setup(app, handle, wechat)
        staff_qr.setup(app)
    if background:
        app.cleanup_ctx.append(_scheduler(sender or outbox.LogSender(), sweep_every_s))
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[CORE].db.close()


def _scheduler(sender: outbox.Sender, every_s: float):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # The payment clients open earlier in cleanup_ctx; whichever this deployment has are asked.
        gateways = {name: client for name, client in (("wechatpay", app.get(WECHATPAY)), ("alipay", app.get(ALIPAY))) if client}
        task = asyncio.create_task(_sweep_forever(app[CORE], sender, Reconciler(app[CORE], gateways), every_s))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def _sweep_forever(core: Core, sender: outbox.Sender, reconcile: Reconciler, every_s: float) -> None:
    audit = RollingAudit()  # where the audit's rolling slice has got to
    while True:
        try:
            await prune_nonces(core)
            report = await sweep(core, sender=sender, reconcile=reconcile, audit=audit)
            if not report.quiet:
                log.info("sweep: %s", report)
        except Exception:  # the schedule must outlive one bad run; the error is logged in full
            log.exception("sweep failed; retrying in %s s", every_s)
        await asyncio.sleep(every_s)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[CORE].db.transaction() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure makes the instance unhealthy
        return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok"})
