"""`POST /notify/wechatpay`: WeChat Pay's TRANSACTION.SUCCESS notices (API v3).

WeChat Pay retries a notice up to 15 times over 24 h 4 m, sometimes from several servers
seconds apart, until it gets 200 or 204. A verified notice for one of our trades settles
it once (billing.trades.settle_trade locks the trade; duplicates and notices that come
after a reconciliation query are replays and get 204 again). Anything forged, stale or
not ours changes nothing, is logged without the payer's openid, and gets a 4xx with
`{"code": "FAIL", "message": ...}`, the v3 form of a refusal.
"""
from __future__ import annotations

import logging

from aiohttp import web

from billing.errors import BillingError
from billing.trades import settle_trade
from bot.hospital_api import CORE
from bot.wechatpay import NOTIFY_PATH, WECHATPAY_CONFIG, Rejected, client_context, mask_openid, open_notice, paid_transaction

log = logging.getLogger(__name__)


def setup(app: web.Application) -> None:
    app.router.add_post(NOTIFY_PATH, wechatpay_notice)
    app.cleanup_ctx.append(client_context)


def refusal(status: int, message: str) -> web.Response:
    return web.json_response({"code": "FAIL", "message": message}, status=status)


async def wechatpay_notice(request: web.Request) -> web.Response:
    config = request.app.get(WECHATPAY_CONFIG)
    if config is None:
        return refusal(503, "WeChat Pay is not configured here")
    core = request.app[CORE]
    body = await request.read()
    try:
        transaction = open_notice(config, request.headers, body, core.clock.now())
        if transaction is None:
            log.info("wechatpay: verified notice of another event type ignored")
            return web.Response(status=204)
        paid = paid_transaction(config, transaction)
    except Rejected as exc:
        log.warning("wechatpay: notice from %s refused: %s", request.remote, exc.reason)
        return refusal(exc.http_status, exc.reason)
    try:
        settled = await settle_trade(core, "wechatpay", paid.out_trade_no, paid.transaction_id, paid.amount_fen, paid.paid_at)
    except BillingError as exc:
        log.warning("wechatpay: notice for %s (transaction %s, payer %s) refused: %s", paid.out_trade_no[:32],
                    paid.transaction_id[:32], mask_openid(paid.payer_openid), exc.message)
        return refusal(exc.http_status, exc.message)
    log.info("wechatpay: %s paid %s fen for bill %s (applied %s, to refund %s)%s, payer %s", paid.out_trade_no,
             paid.amount_fen, settled.bill_no, settled.applied_fen, settled.refund_fen, " again" if settled.replay else "",
             mask_openid(paid.payer_openid))
    return web.Response(status=204)
