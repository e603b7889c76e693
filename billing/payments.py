"""Payments applied to bills: once per payment number and gateway transaction, partial or
whole; money beyond what a bill owes is recorded and queued for refund, never kept."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from billing import interest
from billing.core import Core
from billing.errors import NotFound
from billing.events import record_bill_event
from billing.idempotency import Once, run_once
from billing.money import require_fen
from billing.outbox import enqueue
from billing.hospitals import hospital_id
from billing.ladder import UNPAID, reassess_member
from billing.lines import release
from billing.validate import require_choice, require_text
from storage.models import Bill, Charge, Payment, Refund, Visit
from storage.prepared import Prepared

# How the hospital took a payment: its window or kiosk, cash, or NHSA's 便捷支付 (seed 003):
# 刷脸支付 (face), 一码支付 with the insurance code (code), 移动支付 in its app or mini program (mobile).
HOSPITAL_CHANNELS = ("window", "kiosk", "face", "code", "mobile", "cash")


async def pay_at_hospital(core: Core, hospital_code: str, bill_no: str, body: dict[str, Any]) -> dict[str, Any]:
    payment_no = require_text(body, "payment_no")
    channel = require_choice(body, "channel", HOSPITAL_CHANNELS)
    amount_fen = require_fen(body.get("amount_fen"), "amount_fen")
    payload = {"bill_no": bill_no, "payment_no": payment_no, "channel": channel, "amount_fen": amount_fen}

    def work(session: Session) -> dict[str, Any]:
        bill = _hospital_bill(session, hospital_id(session, core, hospital_code), bill_no, lock=True)
        apply_payment(session, core, bill, source=hospital_code, payment_no=payment_no, channel=channel, amount_fen=amount_fen)
        session.refresh(bill)  # apply_payment wrote the row, not this Bill
        return bill_view(session, bill, core.clock.now())

    return await run_once(core, Once(f"payment:{hospital_code}", payment_no, payload, work))


async def get_bill(core: Core, hospital_code: str, bill_no: str) -> dict[str, Any]:
    def read(session: Session) -> dict[str, Any]:
        return bill_view(session, _hospital_bill(session, hospital_id(session, core, hospital_code), bill_no), core.clock.now())

    return await core.db.run(read)


def _hospital_bill(session: Session, hospital_id: int, bill_no: str, *, lock: bool = False) -> Bill:
    query = select(Bill).join(Visit, Visit.id == Bill.visit_id).where(Bill.bill_no == bill_no, Visit.hospital_id == hospital_id)
    bill = session.scalar(query.with_for_update(of=Bill) if lock else query)
    if bill is None:
        raise NotFound(f"unknown bill {bill_no}", bill_no=bill_no)
    return bill


# Every payment goes through these: Core statements on the tables, prepared once (no unit of work to flush).
_PAYMENTS, _BILLS = Payment.__table__, Bill.__table__
_INSERT_PAYMENT = Prepared(insert(_PAYMENTS).returning(_PAYMENTS.c.id))
_PAY_BILL = Prepared(update(_BILLS).where(_BILLS.c.id == bindparam("bill_id")).values(
    paid_fen=_BILLS.c.paid_fen + bindparam("principal_fen"), interest_paid_fen=_BILLS.c.interest_paid_fen + bindparam("to_interest_fen"),
    interest_fen=bindparam("new_interest_fen"), interest_through=bindparam("new_interest_through"),
    status=bindparam("new_status"), paid_at=bindparam("new_paid_at"),
))


def apply_payment(
    session: Session, core: Core, bill: Bill | Row, *, source: str, payment_no: str, channel: str,
    amount_fen: int, gateway_txn_id: str | None = None, quoted_interest_fen: int | None = None,
) -> int:
    """Apply money to a bill the caller has locked and read (a Bill, or a row of its columns):
    its interest accrued up to now first (billing/interest.py), then the money to that interest,
    then to the principal, and only the principal part back to the line. Returns how much went to
    the bill; the rest is queued for refund. `quoted_interest_fen`: the money comes from a cashier
    trade quoted when the bill's interest was that, and settles the bill as of then. The row is
    written, not the `bill` given: a caller that reads the Bill on refreshes it. The unique
    (source, payment_no) and (source, gateway_txn_id) keys make a second application fail
    instead of counting twice."""
    now = core.clock.now()
    accrued = interest.accrual(bill, now)
    interest_fen = accrued.interest_fen
    if quoted_interest_fen is not None:
        interest_fen = interest.as_quoted(interest_fen, quoted_interest_fen, bill.interest_paid_fen)
    to_interest = min(amount_fen, interest_fen - bill.interest_paid_fen)
    to_principal = min(amount_fen - to_interest, bill.self_pay_fen - bill.paid_fen)
    applied = to_interest + to_principal
    payment_id = _INSERT_PAYMENT.execute(session, {
        "source": source, "payment_no": payment_no, "bill_id": bill.id, "channel": channel, "gateway_txn_id": gateway_txn_id,
        "amount_fen": amount_fen, "applied_fen": applied, "created_at": now,
    }).scalar()
    paid_fen, interest_paid_fen = bill.paid_fen + to_principal, bill.interest_paid_fen + to_interest
    unpaid_fen = interest.Owed(bill.self_pay_fen - paid_fen, interest_fen, interest_paid_fen).total_fen
    settles = unpaid_fen == 0 and bill.status != "paid"
    status, paid_at = ("paid", now) if settles else (bill.status, bill.paid_at)
    if applied or (interest_fen, accrued.through) != (bill.interest_fen, bill.interest_through):
        _PAY_BILL.execute(session, {"bill_id": bill.id, "principal_fen": to_principal, "to_interest_fen": to_interest,
                                    "new_interest_fen": interest_fen, "new_interest_through": accrued.through,
                                    "new_status": status, "new_paid_at": paid_at})
    if applied:
        # The bill's line is its payer's. A written-off bill left it at the write-off: money paid on it
        # after that is recovered for the insurer, and gives nothing back to the line a second time.
        line = release(session, bill.line_id, to_principal if bill.status in UNPAID else 0)
        enqueue(session, kind="payment_received", member_id=bill.payer_id, dedupe_key=f"payment:{payment_id}",
                payload={"bill_no": bill.bill_no, "applied_fen": applied, "interest_fen": to_interest,
                         "unpaid_fen": unpaid_fen, "available_fen": max(line.left_fen, 0)},
                now=now)
        record_bill_event(session, core.pii, "payment_received", bill.id, str(payment_id), now, bill.payer_id,
                          channel=channel, amount_fen=amount_fen, applied_fen=applied, interest_fen=to_interest,
                          unpaid_fen=unpaid_fen, bill_status=status)
        if settles:
            _lift_payer(session, core, bill.payer_id, line.owner_status)
    if amount_fen > applied:
        _queue_refund(session, core, bill, amount_fen - applied, "already_paid" if applied == 0 else "overpaid",
                      payment_id=payment_id)
    return applied


def remove_from_bill(session: Session, core: Core, bill: Bill, charge: Charge) -> int:
    """An item abandoned after checkout leaves the bill; its interest is accrued first, on the
    principal it had until now. What was paid beyond the new principal goes to interest still
    owed, and the rest is refunded."""
    now = core.clock.now()
    interest.accrue(bill, now)
    unpaid_before = bill.self_pay_fen - bill.paid_fen
    bill.self_pay_fen -= charge.self_pay_fen
    beyond = max(bill.paid_fen - bill.self_pay_fen, 0)
    bill.paid_fen -= beyond
    to_interest = min(beyond, bill.interest_fen - bill.interest_paid_fen)
    bill.interest_paid_fen += to_interest
    refund_fen = beyond - to_interest
    line = release(session, bill.line_id, unpaid_before - (bill.self_pay_fen - bill.paid_fen))
    if refund_fen:
        _refund_abandoned(session, core, bill, refund_fen, charge.id)
    if interest.owed(bill, now).total_fen == 0 and bill.status != "paid":  # what is left of the bill is paid
        bill.status, bill.paid_at = "paid", now
        session.flush()
        _lift_payer(session, core, bill.payer_id, line.owner_status)
    return refund_fen


def _refund_abandoned(session: Session, core: Core, bill: Bill, refund_fen: int, charge_id: int) -> None:
    """Money for an abandoned item goes back the way it came: taken from the newest payments
    first, each refund tied to its payment so that the gateway that took it returns it."""
    refunded = dict(session.execute(
        select(Refund.payment_id, func.sum(Refund.amount_fen))
        .where(Refund.bill_id == bill.id, Refund.reason == "item_abandoned", Refund.payment_id.is_not(None))
        .group_by(Refund.payment_id)
    ).all())
    payments = session.execute(
        select(Payment.id, Payment.applied_fen).where(Payment.bill_id == bill.id, Payment.applied_fen > 0).order_by(Payment.id.desc())
    )
    for payment_id, applied_fen in payments:
        share = min(refund_fen, applied_fen - refunded.get(payment_id, 0))
        if share > 0:
            _queue_refund(session, core, bill, share, "item_abandoned", charge_id=charge_id, payment_id=payment_id)
            refund_fen -= share
        if not refund_fen:
            return
    raise AssertionError(f"bill {bill.bill_no}: {refund_fen} fen to refund exceed what its payments kept")


_INSERT_REFUND = Prepared(insert(Refund.__table__).returning(Refund.__table__.c.id))


def _queue_refund(session: Session, core: Core, bill: Bill | Row, amount_fen: int, reason: str, *,
                  payment_id: int | None = None, charge_id: int | None = None) -> None:
    now = core.clock.now()
    refund_id = _INSERT_REFUND.execute(session, {
        "bill_id": bill.id, "amount_fen": amount_fen, "reason": reason, "status": "pending", "created_at": now,
        "charge_id": charge_id, "payment_id": payment_id,
    }).scalar()
    enqueue(session, kind="refund_due", member_id=bill.payer_id, dedupe_key=f"refund:{refund_id}",
            payload={"bill_no": bill.bill_no, "refund_id": refund_id, "amount_fen": amount_fen, "reason": reason},
            now=now)
    record_bill_event(session, core.pii, "refund_issued", bill.id, str(refund_id), now, bill.payer_id,
                      refund_id=refund_id, amount_fen=amount_fen, reason=reason)


def _lift_payer(session: Session, core: Core, payer_id: int, status: str) -> None:
    """A bill was paid. That can only lift a stage; an active payer has none to lift (moving up is the sweep's work)."""
    if status != "active":
        reassess_member(session, core, payer_id, core.clock.now())


def bill_view(session: Session, bill: Bill, now: datetime) -> dict[str, Any]:
    """The bill as the hospital API shows it at `now`: its interest as accrued by then, and what it still asks for."""
    charges = session.scalars(select(Charge).where(Charge.visit_id == bill.visit_id).order_by(Charge.id))
    owed = interest.owed(bill, now)
    return {
        "bill_no": bill.bill_no,
        "status": bill.status,
        "self_pay_fen": bill.self_pay_fen,
        "paid_fen": bill.paid_fen,
        "interest_fen": owed.interest_fen,
        "interest_paid_fen": owed.interest_paid_fen,
        "owed_fen": owed.total_fen if bill.status in UNPAID else 0,
        "institution": bill.institution,
        "due_at": bill.due_at.isoformat(),
        "items": [bill_item(charge) for charge in charges],
    }


def bill_item(c: Charge) -> dict[str, Any]:
    """One line of a bill: what it was and how it was split (insurance, personal account, self-pay)."""
    return {"charge_no": c.charge_no, "category": c.category, "name": c.name, "amount_fen": c.amount_fen,
            "insurance_fen": c.insurance_fen, "personal_account_fen": c.personal_account_fen,
            "self_pay_fen": c.self_pay_fen, "status": c.status}
