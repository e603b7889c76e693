"""Payment reconciliation: ask the gateways about trades whose notice is late, and pay out
the refunds owed through them.

A gateway is any object with `query(out_trade_no) -> GatewayTrade` and
`refund(GatewayRefund) -> "done" | "pending" | "failed"` that raises GatewayError when it
cannot answer; `Reconciler(core, {"wechatpay": client, "alipay": other})` serves them all.
The sweep runs it first (`sweep(core, reconcile=reconciler)`), so money already taken by
a gateway never counts as overdue.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Callable, Literal, Mapping, Protocol

import aiohttp
from aiohttp import web

from billing.core import Core
from billing.errors import BillingError
from billing.refunds import GatewayRefund, mark_refund, pending_gateway_refunds
from billing.trades import TRADE_TTL, bill_settled, close_trade, settle_trade, unsettled_trades
from bot.hospital_api import CORE

log = logging.getLogger(__name__)
NOTICE_GRACE = timedelta(minutes=3)  # a notice normally comes within seconds; past this we ask

TradeState = Literal["paid", "unpaid", "closed"]
RefundState = Literal["done", "pending", "failed"]


class GatewayError(Exception):
    """The gateway refused a call or could not be reached; the caller retries on the next run."""


@dataclass(frozen=True)
class GatewayTrade:
    """A gateway's answer about one trade, in our terms."""

    state: TradeState
    gateway_txn_id: str | None = None
    amount_fen: int | None = None
    paid_at: datetime | None = None


class Gateway(Protocol):
    async def query(self, out_trade_no: str) -> GatewayTrade: ...

    async def refund(self, refund: GatewayRefund) -> RefundState: ...


class Reconciler:
    """One pass over late trades and pending gateway refunds; returns how many it settled or finished."""

    def __init__(self, core: Core, gateways: Mapping[str, Gateway], grace: timedelta = NOTICE_GRACE) -> None:
        self.core, self.gateways, self.grace = core, dict(gateways), grace

    async def __call__(self) -> int:
        return await self.settle_late_trades() + await self.execute_refunds()

    async def settle_late_trades(self) -> int:
        settled = 0
        for trade in await unsettled_trades(self.core, self.grace):
            gateway = self.gateways.get(trade.channel)
            if gateway is None:
                continue
            try:
                answer = await gateway.query(trade.out_trade_no)
                if answer.state == "paid":
                    settlement = await settle_trade(self.core, trade.channel, trade.out_trade_no, answer.gateway_txn_id,
                                                    answer.amount_fen, answer.paid_at)
                    settled += not settlement.replay
                    log.info("reconcile: %s trade %s settled by query", trade.channel, trade.out_trade_no)
                elif (answer.state == "closed" or self.core.clock.now() > trade.created_at + TRADE_TTL + self.grace
                      or await bill_settled(self.core, trade.bill_id)):
                    # An unpaid trade of a bill paid the other way (an abandoned attempt) is closed
                    # here, or every sweep would ask about it until its time_expire. Should it be paid
                    # after all, its notice still settles it and the money is refunded.
                    await close_trade(self.core, trade.channel, trade.out_trade_no)
            except GatewayError as exc:
                log.warning("reconcile: %s query of %s failed: %s", trade.channel, trade.out_trade_no, exc)
            except BillingError as exc:  # the gateway says paid, but not what we asked: a person must look
                log.error("reconcile: %s trade %s not settled: %s", trade.channel, trade.out_trade_no, exc.message)
        return settled

    async def execute_refunds(self) -> int:
        finished = 0
        for refund in await pending_gateway_refunds(self.core, tuple(self.gateways)):
            try:
                state = await self.gateways[refund.channel].refund(refund)
            except GatewayError as exc:
                log.warning("reconcile: %s refund %s failed, retrying later: %s", refund.channel, refund.out_refund_no, exc)
                continue
            if state == "pending":
                continue
            if await mark_refund(self.core, refund.refund_id, state):
                finished += 1
                if state == "failed":
                    log.error("reconcile: %s refund %s of %s fen failed at the gateway; pay it out by hand",
                              refund.channel, refund.out_refund_no, refund.refund_fen)
        return finished


def gateway_context(config_key: web.AppKey, client_key: web.AppKey, client: Callable[..., Any]):
    """A cleanup_ctx that opens a gateway's client (and its HTTP session) when the app was
    given the gateway's config, and leaves the gateway out when it was not."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app.get(config_key)
        if config is None:
            yield
            return
        async with aiohttp.ClientSession() as http:
            app[client_key] = client(config, http, app[CORE].clock)
            yield

    return ctx
