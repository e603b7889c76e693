"""Refunds owed back through the payment gateway that took the money.

A pending Refund whose payment came through a gateway is sent to that gateway's refund
API under a refund number derived from the payment, so a resend (a retry, a second
worker) asks for the same refund and the gateway refunds it once. Refunds of money taken
at a hospital window are the hospital's to pay out and never show here.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from billing.core import Core
from billing.trades import CHANNELS
from storage.models import Payment, Refund

FINAL_STATUSES = ("done", "failed")


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: int
    channel: str
    out_trade_no: str  # our number of the trade that took the money
    out_refund_no: str  # our number of this refund at the gateway
    gateway_txn_id: str | None
    refund_fen: int
    total_fen: int  # what the trade took in all
    reason: str


def out_refund_no(out_trade_no: str, refund_id: int) -> str:
    return f"{out_trade_no}R{refund_id}"


async def pending_gateway_refunds(core: Core, channels: tuple[str, ...] = CHANNELS, limit: int = 100) -> list[GatewayRefund]:
    rows = await core.db.run(lambda session: session.execute(
        select(Refund, Payment).join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.status == "pending", Payment.channel.in_(channels))
        .order_by(Refund.id).limit(limit)).all())
    return [
        GatewayRefund(refund.id, payment.channel, payment.payment_no, out_refund_no(payment.payment_no, refund.id),
                      payment.gateway_txn_id, refund.amount_fen, payment.amount_fen, refund.reason)
        for refund, payment in rows
    ]


async def mark_refund(core: Core, refund_id: int, status: str) -> bool:
    """Record the gateway's final answer once; False when the refund was no longer pending."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"a refund ends {' or '.join(FINAL_STATUSES)}, not {status!r}")
    result = await core.db.run(lambda session: session.execute(
        update(Refund).where(Refund.id == refund_id, Refund.status == "pending").values(status=status)))
    return result.rowcount == 1
