"""POST /notify/alipay: Alipay's asynchronous notices (DESIGN §4.2).

Alipay sends a notice again (8 times over 25 h) until the answer is exactly `success`.
A verified notice is answered `success` once it is applied, also when it had been
applied before (a repeat, or reconciliation got there first), and when it reports no
payment (WAIT_BUYER_PAY, TRADE_CLOSED). A forged, mismatched or unknown notice changes
nothing, is logged with the buyer masked, and is answered `failure`.
"""
from __future__ import annotations

import logging
from aiohttp import web

from billing.errors import BillingError
from billing.trades import settle_trade
from bot.alipay import ALIPAY, NOTIFY_PATH, NoticeRejected, client_context, mask_buyer
from bot.hospital_api import CORE

log = logging.getLogger(__name__)
SUCCESS, FAILURE = "success", "failure"


def setup(app: web.Application) -> None:
    app.router.add_post(NOTIFY_PATH, alipay_notice)
    app.cleanup_ctx.append(client_context)


async def alipay_notice(request: web.Request) -> web.Response:
    alipay = request.app.get(ALIPAY)
    if alipay is None:
        return web.Response(status=503, text=FAILURE)
    try:
        form = await request.post()
    except ValueError:  # UnicodeDecodeError: Alipay sends UTF-8 (the charset we ask for)
        return _refuse("the body is not a UTF-8 form", {})
    params = {name: str(value) for name, value in form.items()}
    if len(params) != len(form):
        return _refuse("a field is repeated", params)
    try:
        notice = alipay.verify_notice(params)
    except NoticeRejected as exc:
        return _refuse(exc.reason, params)
    if not notice.is_payment:
        log.info("alipay notice %s: %s for %s, nothing to apply", notice.notify_id, notice.trade_status, notice.out_trade_no)
        return web.Response(text=SUCCESS)
    try:
        settled = await settle_trade(request.app[CORE], "alipay", notice.out_trade_no, notice.trade_no,
                                     notice.amount_fen, notice.paid_at)
    except BillingError as exc:
        return _refuse(f"{exc.details.get('reason', exc.code)}: {exc.message}", params)
    log.info("alipay notice %s: %s paid %s fen (applied %s, to refund %s)%s, buyer %s", notice.notify_id, notice.out_trade_no,
             notice.amount_fen, settled.applied_fen, settled.refund_fen, " again" if settled.replay else "",
             mask_buyer(notice.buyer_id))
    return web.Response(text=SUCCESS)


def _refuse(reason: str, params: dict[str, str]) -> web.Response:
    log.warning("alipay notice refused (%s): out_trade_no %r, trade_no %r, buyer %s", reason,
                params.get("out_trade_no", "")[:64], params.get("trade_no", "")[:64], mask_buyer(params.get("buyer_id", "")[:32]))
    return web.Response(text=FAILURE)
