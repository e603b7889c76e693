"""The cashier `GET /pay/{token}` (DESIGN §4.2): the itemised bill a bill notification links
to, and its ways to pay.

The token is the bill's unguessable pay_token; it expires with PAY_LINK_TTL, and anyone
holding the link may pay (垫付: the patient forwards it to a child). The token is the only
key, so no page is cached and none sends a Referer.

- `/pay/{token}/wechat`: WeChat Pay JSAPI. Without a `code` the browser goes through
  WeChat's silent OAuth (snsapi_base) and comes back with one; the code gives the payer's
  openid, a trade is opened and prepaid with the merchant key, and the page hands the
  signed parameters to WeixinJSBridge.
- `/pay/{token}/alipay`: a trade, and a 302 to the signed alipay.trade.wap.pay URL.
Back from paying, the cashier looks again every few seconds until the gateway's notice
has settled the bill.

Sandbox only: when the app holds SANDBOX_WECHATPAY_PAY (the path of the sandbox gateway's
`/sandbox/pay`, mounted on this app), the WeChat page completes the payment there in any
browser, the paySign checked as WeixinJSBridge checks it. Nothing sets it outside the sandbox.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from billing.core import Core
from billing.errors import Conflict, NotFound
from billing.payments import bill_view
from billing.trades import bill_by_token
from billing.validate import whole_number
from bot.alipay import ALIPAY, wap_checkout
from bot.cashier_pages import BillPage, Item, Offer, Receipt, bill_page, cashier_path, message_page, wechat_page
from bot.hospital_api import CORE
from bot.wechat_api import WeChatApiError
from bot.wechat_webhook import WECHAT_API
from bot.wechatpay import WECHATPAY, WechatPayError, jsapi_checkout
from handlers.i18n import LOCALES, SOURCE_LOCALE, t
from storage.models import Bill, Hospital, Member, Payment, Refund, Trade, Visit

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
SANDBOX_WECHATPAY_PAY = web.AppKey("sandbox_wechatpay_pay", str)
CHECKS_MAX = 15  # looks for the result after paying, REFRESH_S apart: half a minute
ALIPAY_RETURN = "alipay.trade.wap.pay.return"  # the `method` of Alipay's return to return_url
BAD_CODE = frozenset({40029, 40163})  # an OAuth code that is invalid or used (a reload): ask for a new one
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
HANT_SUBTAGS = frozenset({"hant", "tw", "hk", "mo"})


def setup(app: web.Application) -> None:
    app.router.add_get("/pay/{token}", cashier)
    app.router.add_get("/pay/{token}/wechat", pay_with_wechat)
    app.router.add_get("/pay/{token}/alipay", pay_with_alipay)
    app.router.add_static("/static/", STATIC_DIR)


def page_locale(request: web.Request) -> str:
    """`?lang=` (zh_Hans, zh_Hant, en), else the browser's Accept-Language, else Simplified Chinese."""
    chosen = request.query.get("lang", "")
    return chosen if chosen in LOCALES else negotiated_locale(request.headers.get("Accept-Language", ""))


def negotiated_locale(accept_language: str) -> str:
    ranked = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, parameter = part.partition(";")
        name, _, value = parameter.strip().partition("=")
        try:
            quality = float(value) if name.strip() == "q" else 1.0
        except ValueError:
            quality = 0.0
        ranked.append((-quality, position, tag.strip().lower().replace("_", "-")))
    for negative_quality, _, tag in sorted(ranked):
        language, *rest = tag.split("-")
        if negative_quality >= 0:
            break
        if language == "en":
            return "en"
        if language == "zh":
            return "zh_Hant" if HANT_SUBTAGS.intersection(rest) else "zh_Hans"
    return SOURCE_LOCALE


async def load_bill(core: Core, token: str) -> BillPage:
    """The bill behind a cashier link; NotFound when the link is unknown or has expired."""
    async with core.db.transaction() as session:
        bill = await session.run_sync(bill_by_token, core, token)
        view = await session.run_sync(bill_view, bill, core.clock.now())
        hospital, department, visited_at, patient = (await session.execute(
            select(Hospital.name, Visit.department, Visit.created_at, Member.name)
            .join(Hospital, Hospital.id == Visit.hospital_id).outerjoin(Member, Member.id == Visit.patient_id)
            .where(Visit.id == bill.visit_id)
        )).one()
        # What came in and what went back: an item dropped after checkout is refunded from the paid amount.
        payments = list(await session.scalars(
            select(Payment).where(Payment.bill_id == bill.id, Payment.applied_fen > 0).order_by(Payment.id)))
        refunded_fen = await session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0))
            .where(Refund.bill_id == bill.id, Refund.charge_id.is_not(None)))
    items = tuple(  # the charges the insurance split reached: on this bill, or paid or refunded at the hospital
        Item(c["name"], c["amount_fen"], c["insurance_fen"], c["personal_account_fen"], c["self_pay_fen"], c["status"])
        for c in view["items"] if c["self_pay_fen"] is not None
    )
    receipts = tuple(Receipt(p.applied_fen, p.channel, p.created_at, p.gateway_txn_id or p.payment_no) for p in payments)
    return BillPage(token, bill.bill_no, bill.status, bill.self_pay_fen, bill.paid_fen, bill.due_at, bill.paid_at,
                    hospital, department, visited_at, items, patient=patient, refunded_fen=refunded_fen, receipts=receipts,
                    interest_fen=view["interest_fen"], interest_paid_fen=view["interest_paid_fen"],
                    interest_free=bill.institution is not None and core.clock.now() <= bill.due_at)


def secured(handler):
    @functools.wraps(handler)
    async def with_headers(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return with_headers


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def redirect(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url})


def not_found(locale: str) -> web.Response:
    return html(message_page(locale, t("找不到这张账单", locale),
                             t("这个付款链接无效或已经过期。请在信医公众号里发送“账单”查看您的账单。", locale)), 404)


def cannot_pay(locale: str, token: str, text: str, status: int) -> web.Response:
    return html(message_page(locale, t("暂时不能付款", locale), text, back_to=cashier_path(token, locale)), status)


def public(core: Core, path: str) -> str:
    return core.public_url.rstrip("/") + path


@secured
async def cashier(request: web.Request) -> web.Response:
    core, locale, token = request.app[CORE], page_locale(request), request.match_info["token"]
    try:
        bill = await load_bill(core, token)
    except NotFound:
        return not_found(locale)
    wechat_ready = request.app.get(WECHATPAY) is not None and request.app.get(WECHAT_API) is not None
    # WeixinJSBridge exists only in WeChat's browser; the sandbox's stand-in works in any.
    bridge = "MicroMessenger" in request.headers.get("User-Agent", "") or SANDBOX_WECHATPAY_PAY in request.app
    check = _check(request)
    if check is not None and bill.owed_fen > 0 and not await _trade_pending(core, bill.bill_no):
        check = CHECKS_MAX  # the attempt was closed (abandoned, expired): no result will come, stop looking
    offer = Offer(wechat=wechat_ready and bridge, wechat_elsewhere=wechat_ready and not bridge,
                  alipay=request.app.get(ALIPAY) is not None, check=check)
    return html(bill_page(bill, offer, locale, checks_max=CHECKS_MAX))


async def _trade_pending(core: Core, bill_no: str) -> bool:
    """Whether a payment of this bill may still be on its way: a trade waiting for its notice or
    settled since the bill was read, or none opened yet. Only trades all closed say no."""
    async with core.db.transaction() as session:
        statuses = set(await session.scalars(
            select(Trade.status).join(Bill, Bill.id == Trade.bill_id).where(Bill.bill_no == bill_no)))
    return statuses != {"closed"}


def _check(request: web.Request) -> int | None:
    """Which look for a payment's result this is: `?check=N`, or 1 when Alipay has just sent the payer back."""
    given = whole_number(request.query.get("check", ""), 2)
    if given is not None and 1 <= given <= CHECKS_MAX:
        return given
    return 1 if request.query.get("method") == ALIPAY_RETURN else None


@secured
async def pay_with_wechat(request: web.Request) -> web.Response:
    core, locale, token = request.app[CORE], page_locale(request), request.match_info["token"]
    client, api = request.app.get(WECHATPAY), request.app.get(WECHAT_API)
    try:
        bill = await load_bill(core, token)
    except NotFound:
        return not_found(locale)
    if bill.owed_fen <= 0:
        return redirect(cashier_path(token, locale))
    if client is None or api is None:
        return cannot_pay(locale, token, t("这个付款方式暂时不能用，请返回选择其他方式。", locale), 404)
    back_here = public(core, cashier_path(token, locale, "wechat"))
    code = request.query.get("code", "")
    if not code:
        return redirect(api.oauth_url(back_here, state="pay"))
    try:
        openid = await api.openid_from_code(code)
    except (WeChatApiError, ValueError) as exc:
        bad_code = not isinstance(exc, WeChatApiError) or exc.errcode in BAD_CODE
        if bad_code and request.query.get("state") != "again":
            return redirect(api.oauth_url(back_here, state="again"))
        log.warning("cashier: no openid for bill %s: %s", bill.bill_no, exc)
        return cannot_pay(locale, token, t("暂时无法打开付款，请稍后再试。", locale), 502)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("cashier: WeChat OAuth unreachable for bill %s: %s", bill.bill_no, type(exc).__name__)
        return cannot_pay(locale, token, t("暂时无法打开付款，请稍后再试。", locale), 502)
    try:
        params = await jsapi_checkout(core, client, token, openid)
    except NotFound:
        return not_found(locale)
    except Conflict:  # paid meanwhile
        return redirect(cashier_path(token, locale))
    except WechatPayError as exc:
        log.warning("cashier: WeChat Pay prepay for bill %s failed: %s", bill.bill_no, exc)
        return cannot_pay(locale, token, t("暂时无法打开付款，请稍后再试。", locale), 502)
    return html(wechat_page(bill, params, locale, sandbox_pay_path=request.app.get(SANDBOX_WECHATPAY_PAY)))


@secured
async def pay_with_alipay(request: web.Request) -> web.Response:
    core, locale, token = request.app[CORE], page_locale(request), request.match_info["token"]
    client = request.app.get(ALIPAY)
    try:
        bill = await load_bill(core, token)
    except NotFound:
        return not_found(locale)
    if bill.owed_fen <= 0:
        return redirect(cashier_path(token, locale))
    if client is None:
        return cannot_pay(locale, token, t("这个付款方式暂时不能用，请返回选择其他方式。", locale), 404)
    try:
        url = await wap_checkout(core, client, token, return_url=public(core, cashier_path(token, locale)))
    except NotFound:
        return not_found(locale)
    except Conflict:
        return redirect(cashier_path(token, locale))
    return redirect(url)
