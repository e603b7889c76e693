"""`xinyi serve`: the application its settings describe.

Outside the sandbox every gateway is the real one from the settings. In sandbox mode the
same code paths run against local gateways mounted in the same app: the fake WeChat API
(mounted by the webhook), WeChat Pay and Alipay with keys made at start, and the demo
programme, so that one command shows the whole system on this machine.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import secrets
from typing import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.web_log import AccessLogger
from gunicorn.app.base import BaseApplication

from billing.clock import Clock
from billing.core import Core
from billing.errors import Conflict
from billing.operators import add_operator, set_password
from billing.pii import mask_numbers
from bot.alipay import ALIPAY_CONFIG, Alipay, AlipayConfig
from bot.app import SWEEP_EVERY_S, build_app
from bot.cashier import SANDBOX_WECHATPAY_PAY
from bot.config import ConfigError, Settings, build_core
from bot.event_webhook import events_webhook
from bot import sms
from bot.sandbox import alipay_gateway, insurer, wechatpay_gateway
from bot.sandbox import sms as sandbox_sms
from bot.sms import LogSms, SmsGateway
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechat_sender import SANDBOX_TEMPLATES, TEMPLATE_KINDS, WeChatSender
from bot.reconcile import Reconciler
from bot.wechatpay import WECHATPAY_CONFIG, WechatPay, WechatPayConfig
from storage.migrate import upgrade

log = logging.getLogger(__name__)
WECHATPAY_SANDBOX_PATH = "/sandbox/wechatpay"
# A newcomer watching the simulator should see a bill notice seconds after checkout, not a minute.
SANDBOX_SWEEP_EVERY_S = 2.0
# SIGTERM: requests in flight get this long to finish (WeChat waits 5 s for a reply), then workers are killed.
GRACEFUL_TIMEOUT_S = 10
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


SANDBOX_OPERATOR = "admin"


async def make_app(settings: Settings, clock: Clock | None = None, *, sandbox_password: str | None = None) -> web.Application:
    """`sandbox_password`: the sandbox's console account `admin` gets it (a new one at each start)."""
    core = build_core(settings, clock)
    # The sandbox always runs its own account, whatever credentials are set: its fake API is mounted here.
    account = WeChatAccount.sandbox(settings.public_url) if settings.sandbox else WeChatAccount.from_settings(settings)
    api = WeChatApi(core.db, account, clock=core.clock)
    sms_gateway = sandbox_sms.SandboxSms(core.clock) if settings.sandbox else _sms(settings)
    app = build_app(core, sender=_sender(core, api, settings, sms_gateway), wechat=api,
                    sweep_every_s=settings.sweep_every_s or (SANDBOX_SWEEP_EVERY_S if settings.sandbox else SWEEP_EVERY_S),
                    events=events_webhook(settings, core.clock))
    if settings.sandbox:
        await upgrade(settings.database_url)
        _mount_sandbox_gateways(app, settings, core.clock)
        insurer.setup(app, insurer.SandboxInsurer(insurer.sandbox_secret(settings.secret_key), core.clock))
        sandbox_sms.setup(app, sms_gateway)
        from billing.demo import seed_demo
        from bot.sandbox import console

        await seed_demo(core)
        await _seed_operator(core, sandbox_password or secrets.token_urlsafe(12))
        console.setup(app)
    else:
        app[WECHATPAY_CONFIG] = WechatPayConfig.from_settings(settings)
        app[ALIPAY_CONFIG] = AlipayConfig.from_settings(settings)
    return app


async def _seed_operator(core: Core, password: str) -> None:
    try:
        await add_operator(core, SANDBOX_OPERATOR, password, "operator")
    except Conflict:
        await set_password(core, SANDBOX_OPERATOR, password)


def _sms(settings: Settings) -> SmsGateway:
    """The provider the settings name; none: SMS are logged (masked), as before a provider is set."""
    if settings.sms_provider is None:
        log.warning("XINYI_SMS_PROVIDER is not set: SMS are written to the log, not sent")
        return LogSms()
    return sms.provider(settings.sms_provider, sms.Account(
        settings.sms_secret_id, settings.sms_secret_key, settings.sms_sign_name, settings.sms_templates,
        sdk_app_id=settings.sms_sdk_app_id, endpoint=settings.sms_endpoint))


def _sender(core: Core, api: WeChatApi, settings: Settings, gateway: SmsGateway) -> WeChatSender:
    return WeChatSender(core, api, _templates(settings), sms=gateway, sms_per_phone=settings.sms_per_phone)


def _templates(settings: Settings) -> dict[str, str]:
    templates = SANDBOX_TEMPLATES if settings.sandbox else settings.wechat_templates
    missing = [kind for kind in TEMPLATE_KINDS if not templates.get(kind)]
    if missing:
        raise ConfigError(f"XINYI_WECHAT_TEMPLATES: template ids are missing for {', '.join(missing)}")
    return templates


@contextlib.asynccontextmanager
async def cron_services(core: Core, settings: Settings) -> AsyncIterator[tuple[WeChatSender, Reconciler]]:
    """The outbox sender and the reconciler of a real deployment, for `xinyi sweep` run by cron."""
    api = WeChatApi(core.db, WeChatAccount.from_settings(settings), clock=core.clock)
    gateways = {}
    async with aiohttp.ClientSession() as http:
        if (wechatpay := WechatPayConfig.from_settings(settings)) is not None:
            gateways["wechatpay"] = WechatPay(wechatpay, http, core.clock)
        if (alipay := AlipayConfig.from_settings(settings)) is not None:
            gateways["alipay"] = Alipay(alipay, http, core.clock)
        try:
            yield _sender(core, api, settings, _sms(settings)), Reconciler(core, gateways)
        finally:
            await api.close()


def _mount_sandbox_gateways(app: web.Application, settings: Settings, clock: Clock) -> None:
    base = settings.public_url.rstrip("/")
    wechatpay_config, wechatpay = wechatpay_gateway.sandbox_merchant(
        clock=clock, appid=WeChatAccount.sandbox(base).appid, notify_url=f"{base}/notify/wechatpay",
        api_base=base + WECHATPAY_SANDBOX_PATH,
    )
    app[WECHATPAY_CONFIG] = wechatpay_config
    app[SANDBOX_WECHATPAY_PAY] = f"{WECHATPAY_SANDBOX_PATH}/sandbox/pay"  # the cashier's stand-in for WeixinJSBridge
    app.add_subapp(WECHATPAY_SANDBOX_PATH, wechatpay.app())
    alipay_config, alipay = alipay_gateway.sandbox_merchant(
        clock=clock, notify_url=f"{base}/notify/alipay", gateway=f"{base}{alipay_gateway.MOUNT}/gateway.do",
    )
    app[ALIPAY_CONFIG] = alipay_config
    app.add_subapp(alipay_gateway.MOUNT, alipay.app())


class MaskedAccessLogger(AccessLogger):
    """The access log with ID and mobile numbers masked wherever a line quotes them: the URL
    (the sandbox panel looks a patient up by ID number in its query string), a Referer."""

    def _format_line(self, request, response, time):  # every atom of the line, formatted
        return [(key, mask_numbers(value) if isinstance(value, str) else value)
                for key, value in super()._format_line(request, response, time)]


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    password = None
    if settings.sandbox:
        base = settings.public_url.rstrip("/")
        password = secrets.token_urlsafe(12)
        print(f"xinyi sandbox ({settings.policy}) on {settings.database_url}\n"
              f"  chat simulator:  {base}/sandbox/\n"
              f"  hospital panel:  {base}/sandbox/hospital\n"
              f"  console:         {base}/admin/login  user {SANDBOX_OPERATOR}  password {password} (new at each start)\n"
              f"  insurer events:  {settings.events_url or base + insurer.EVENTS_PATH}\n"
              f"  health:          {base}/healthz", flush=True)
    web.run_app(served_app(settings, sandbox_password=password), host=settings.host, port=settings.port, print=None,
                access_log_class=MaskedAccessLogger)


async def served_app(settings: Settings, sandbox_password: str | None = None) -> web.Application:
    """The app as `xinyi serve` runs it, in its own process: `make_app`'s, whose start ends with
    everything made so far (the modules, the app, its clients, all living as long as the process)
    moved out of the garbage collector's sight. A full collection holds every thread of the
    process, the event loop with them, and now walks only what was made since: beside the sweep's
    thread over a million bills, the loop's longest stall went from about 55 ms to under 10
    (bench/billing.py). Not in make_app: a test process making many apps would keep their garbage."""
    app = await make_app(settings, sandbox_password=sandbox_password)

    async def freeze(_app: web.Application) -> None:
        gc.freeze()

    app.on_startup.append(freeze)
    return app


class Workers(BaseApplication):
    """`xinyi serve --workers N`: gunicorn's master on the port, N aiohttp workers (aiohttp's
    GunicornWebWorker), each with its own event loop, database pool and background jobs, its
    app made after the fork. A worker that dies is replaced; SIGTERM stops taking connections,
    gives requests in flight GRACEFUL_TIMEOUT_S, then stops."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        super().__init__()

    def load_config(self) -> None:
        host = self.settings.host
        options = {
            "bind": f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}",
            "workers": self.workers,
            "worker_class": "aiohttp.GunicornWebWorker",
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "proc_name": "xinyi",
            "control_socket_disable": True,  # gunicornc's socket is one per user: two instances would share it
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        settings = self.settings

        async def runner() -> web.AppRunner:  # in the worker, on its loop
            return web.AppRunner(await served_app(settings), access_log_class=MaskedAccessLogger,
                                 shutdown_timeout=GRACEFUL_TIMEOUT_S * 0.9)

        return runner


def run_workers(settings: Settings, workers: int) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)  # each line names its worker
    build_core(settings)  # a wrong setting is told here, once, not by each worker as it boots
    _templates(settings)
    Workers(settings, workers).run()
