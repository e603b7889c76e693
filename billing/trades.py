"""Gateway trades: a bill opened for WeChat Pay or Alipay, and the notice that settles it.

A notice is applied at most once: the trade row is locked, and the payment's unique
(source, payment_no) and (source, gateway_txn_id) keys stop any second application.
Money that arrives for a bill already paid another way is kept as a payment of zero
applied and refunded through the gateway (a pending Refund row), never silently kept.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from billing import interest
from billing.core import Core
from billing.errors import Conflict, NotFound
from billing.metrics import NOTICES
from billing.payments import apply_payment
from storage.models import UNPAID_BILL_STATUSES, Bill, Trade
from storage.prepared import Prepared

CHANNELS = ("wechatpay", "alipay")
PAY_LINK_TTL = timedelta(days=120)  # past the longest ladder (90 days after collection)
TRADE_TTL = timedelta(minutes=30)  # the gateway's payment deadline (time_expire) for one trade


@dataclass(frozen=True)
class Settlement:
    out_trade_no: str
    bill_no: str
    applied_fen: int
    refund_fen: int
    replay: bool  # the notice had been applied before; nothing changed


def bill_by_token(session: Session, core: Core, token: str, *, lock: bool = False) -> Bill:
    """The bill a cashier link names; anyone holding the link may pay it (垫付)."""
    query = select(Bill).where(Bill.pay_token == token)
    bill = session.scalar(query.with_for_update() if lock else query)
    if bill is None or core.clock.now() > bill.issued_at + PAY_LINK_TTL:
        raise NotFound("this payment link is unknown or has expired", reason="link_expired")
    return bill


async def open_trade(core: Core, token: str, channel: str, payer_openid: str | None = None) -> tuple[Trade, Bill]:
    """A new trade for what the bill still owes, its interest accrued up to now (the trade's quote:
    paying it settles the bill as of now, billing.interest.as_quoted). Raises Conflict when nothing is owed."""
    if channel not in CHANNELS:
        raise NotFound(f"unknown channel {channel}")
    now = core.clock.now()

    def work(session: Session) -> tuple[Trade, Bill]:
        bill = bill_by_token(session, core, token, lock=True)
        interest.accrue(bill, now)  # the quote: the trade asks for what the bill owes now, interest first
        owed = interest.owed(bill, now).total_fen
        if owed <= 0:
            raise Conflict("this bill is already paid", reason="already_paid")
        trade = Trade(out_trade_no=f"XY{now:%y%m%d}{secrets.token_hex(8).upper()}", bill_id=bill.id, channel=channel,
                      amount_fen=owed, interest_fen=bill.interest_fen, status="created", payer_openid=payer_openid,
                      created_at=now)
        session.add(trade)
        return trade, bill

    return await core.db.run(work)


async def settle_trade(core: Core, channel: str, out_trade_no: str, gateway_txn_id: str, amount_fen: int, paid_at: datetime | None = None) -> Settlement:
    """Apply a verified gateway notice (or query answer). The amount must be the trade's."""
    settlement = await core.db.run(_settle, core, channel, out_trade_no, gateway_txn_id, amount_fen, paid_at)
    NOTICES.labels(channel, "replay" if settlement.replay else "applied").inc()
    return settlement


# Every notice runs these, prepared once: the trade and what apply_payment reads of its bill in
# one locked read, then the trade marked paid.
_TRADES, _BILLS = Trade.__table__, Bill.__table__
_TRADE_AND_BILL = Prepared(select(
    _BILLS.c.id, _BILLS.c.bill_no, _BILLS.c.self_pay_fen, _BILLS.c.paid_fen, _BILLS.c.status, _BILLS.c.paid_at,
    _BILLS.c.line_id, _BILLS.c.payer_id, _BILLS.c.due_at, _BILLS.c.daily_interest_ppm, _BILLS.c.interest_fen,
    _BILLS.c.interest_paid_fen, _BILLS.c.interest_through, _TRADES.c.interest_fen.label("quoted_interest_fen"),
    _TRADES.c.id.label("trade_id"), _TRADES.c.amount_fen.label("trade_fen"),
    _TRADES.c.status.label("trade_status"), _TRADES.c.gateway_txn_id.label("trade_txn_id"),
).join(_TRADES, _TRADES.c.bill_id == _BILLS.c.id).where(
    _TRADES.c.out_trade_no == bindparam("out_trade_no"), _TRADES.c.channel == bindparam("channel")
).with_for_update())
_TRADE_PAID = Prepared(update(_TRADES).where(_TRADES.c.id == bindparam("trade_id")).values(
    status="paid", gateway_txn_id=bindparam("txn_id"), paid_at=bindparam("at")
))


def _settle(session: Session, core: Core, channel: str, out_trade_no: str, gateway_txn_id: str, amount_fen: int,
            paid_at: datetime | None) -> Settlement:
    bill = _TRADE_AND_BILL.execute(session, {"out_trade_no": out_trade_no, "channel": channel}).first()
    if bill is None:
        raise NotFound(f"unknown trade {out_trade_no}", reason="unknown_trade")
    if amount_fen != bill.trade_fen:
        raise Conflict(f"the notice says {amount_fen} fen, the trade is {bill.trade_fen}", reason="amount_mismatch")
    if bill.trade_status == "paid":
        if bill.trade_txn_id != gateway_txn_id:
            raise Conflict("the trade was settled by another transaction", reason="txn_mismatch")
        return Settlement(out_trade_no, bill.bill_no, 0, 0, replay=True)
    applied = apply_payment(session, core, bill, source=channel, payment_no=out_trade_no, channel=channel,
                            amount_fen=amount_fen, gateway_txn_id=gateway_txn_id, quoted_interest_fen=bill.quoted_interest_fen)
    _TRADE_PAID.execute(session, {"trade_id": bill.trade_id, "txn_id": gateway_txn_id, "at": paid_at or core.clock.now()})
    return Settlement(out_trade_no, bill.bill_no, applied, amount_fen - applied, replay=False)


async def unsettled_trades(core: Core, older_than: timedelta, limit: int = 500) -> list[Trade]:
    """Trades still waiting for a notice: reconciliation asks the gateway about them."""
    cutoff = core.clock.now() - older_than
    return await core.db.run(lambda session: list(session.scalars(
        select(Trade).where(Trade.status == "created", Trade.created_at <= cutoff).order_by(Trade.id).limit(limit))))


async def bill_settled(core: Core, bill_id: int) -> bool:
    """Whether a trade's bill wants no more money (paid another way, written off): its trade,
    unpaid at the gateway, need not be asked about again."""
    status = await core.db.run(lambda session: session.scalar(select(Bill.status).where(Bill.id == bill_id)))
    return status not in UNPAID_BILL_STATUSES


async def close_trade(core: Core, channel: str, out_trade_no: str) -> bool:
    """A trade the gateway says can no longer be paid. A notice that comes after all still settles it."""
    result = await core.db.run(lambda session: session.execute(
        update(Trade).where(Trade.out_trade_no == out_trade_no, Trade.channel == channel, Trade.status == "created")
        .values(status="closed")))
    return result.rowcount == 1
