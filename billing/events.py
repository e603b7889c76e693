"""Programme events (DESIGN §4.6): what the insurer's or the health office's system is told.

Each event is an outbox row of kind EVENT, written in the transaction of the state change it
reports, so that it exists exactly when the change does. Its payload is the body that is sent,
fixed when written: `{event, event_id, occurred_at, data}`; `event_id` is the receiver's key to
dedupe by, the same on every retry. `data` holds bill numbers, hospital codes, amounts in fen
and masked personal numbers (billing/pii.py), nothing else personal.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from billing import outbox
from billing.core import Core
from billing.pii import PiiCipher, mask_id_number, mask_phone
from storage.models import Bill, Hospital, Member, Outbox, Visit
from storage.prepared import Prepared

BILL_EVENTS = ("bill_issued", "bill_overdue", "advance_requested", "payment_received", "refund_issued")
# A member's status move that the programme reports, by the status moved to (restored: out of a suspension).
MEMBER_EVENTS = {"suspended": "member_suspended", "revoked": "member_revoked", "blacklisted": "member_blacklisted"}
RESTORED = "member_restored"
NAMES = (*BILL_EVENTS, *MEMBER_EVENTS.values(), RESTORED, "credit_report")
LISTED = 50


def record(session: Session, event: str, key: str, data: dict[str, Any], now: datetime, member_id: int | None) -> None:
    """Queue `event` in the caller's transaction; `key` makes it once per fact (a bill, a payment...)."""
    outbox.enqueue(session, kind=outbox.EVENT, member_id=member_id, dedupe_key=f"event:{event}:{key}",
                   payload=_body(event, data, now), now=now)


def record_many(session: Session, event: str, facts: list[tuple[str, dict[str, Any], int | None]], now: datetime) -> None:
    """Queue `event` once for each (key, data, member id), in one statement (the sweep's thousands)."""
    outbox.enqueue_many(session, outbox.EVENT, [(f"event:{event}:{key}", member_id, _body(event, data, now))
                                                for key, data, member_id in facts], now)


def _body(event: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    if event not in NAMES:
        raise ValueError(f"no programme event {event!r}")
    return {"event": event, "event_id": str(uuid.uuid4()), "occurred_at": now.isoformat(), "data": data}


def person(pii: PiiCipher, member: Member) -> dict[str, str | None]:
    """The member's numbers as the programme's partners may see them: masked."""
    phone = pii.decrypt(member.phone_enc) if member.phone_enc else None
    return {"id_number_masked": mask_id_number(pii.decrypt(member.id_number_enc)),
            "phone_masked": mask_phone(phone) if phone else None}


_BILLS, _VISITS, _HOSPITALS = Bill.__table__, Visit.__table__, Hospital.__table__
_PAYERS, _PATIENTS = Member.__table__.alias("payer"), Member.__table__.alias("patient")
# What every bill event says of its bill: its number, its hospital, its payer and patient (masked).
_BILL_FACTS = select(
    _BILLS.c.id, _BILLS.c.bill_no, _BILLS.c.due_at, _HOSPITALS.c.code,
    _PAYERS.c.id_number_enc.label("payer_enc"), _PATIENTS.c.id_number_enc.label("patient_enc"),
).select_from(
    _BILLS.join(_VISITS, _VISITS.c.id == _BILLS.c.visit_id).join(_HOSPITALS, _HOSPITALS.c.id == _VISITS.c.hospital_id)
    .join(_PAYERS, _PAYERS.c.id == _BILLS.c.payer_id).outerjoin(_PATIENTS, _PATIENTS.c.id == _VISITS.c.patient_id)
)
_ONE_BILL = Prepared(_BILL_FACTS.where(_BILLS.c.id == bindparam("bill_id")))  # a checkout's, a payment's: hot paths


def _bill_facts(pii: PiiCipher, row) -> dict[str, Any]:
    return {"bill_no": row.bill_no, "hospital": row.code, "due_at": row.due_at.isoformat(),
            "payer_id_number_masked": mask_id_number(pii.decrypt(row.payer_enc)),
            "patient_id_number_masked": mask_id_number(pii.decrypt(row.patient_enc or row.payer_enc))}


def record_bill_event(session: Session, pii: PiiCipher, event: str, bill_id: int, key: str, now: datetime,
                      payer_id: int, **amounts: Any) -> None:
    facts = _bill_facts(pii, _ONE_BILL.execute(session, {"bill_id": bill_id}).one())
    record(session, event, key, {**facts, **amounts}, now, payer_id)


def record_bill_moves(session: Session, pii: PiiCipher, event: str, moved: list[tuple[int, int, int]], now: datetime) -> None:
    """The sweep moved these bills (id, payer id, unpaid fen) past due, or to the insurer's advance."""
    rows = session.execute(_BILL_FACTS.where(_BILLS.c.id.in_([bill_id for bill_id, _, _ in moved])))
    described = {row.id: _bill_facts(pii, row) for row in rows}
    record_many(session, event, [(str(bill_id), {**described[bill_id], "unpaid_fen": unpaid_fen}, payer_id)
                                 for bill_id, payer_id, unpaid_fen in moved], now)


def record_status_moves(session: Session, pii: PiiCipher, moves: list[tuple[Member, str, str, int]], now: datetime) -> None:
    """The status moves (member, to, reason, change id) the programme reports: suspended, revoked,
    blacklisted, or restored from a suspension; one statement an event, however many moved."""
    reported: dict[str, list[tuple[str, dict[str, Any], int | None]]] = {}
    for member, to, reason, change_id in moves:
        event = RESTORED if (member.status, to) == ("suspended", "active") else MEMBER_EVENTS.get(to)
        if event is not None:
            reported.setdefault(event, []).append(
                (str(change_id), {**person(pii, member), "from": member.status, "reason": reason}, member.id))
    for event, facts in reported.items():
        record_many(session, event, facts, now)


CREDIT_REPORT_KEY = "event:credit_report:"  # then MEMBER:REPORT:TIME, as `record` keys it


def record_credit_reports(session: Session, pii: PiiCipher, reports: list[tuple[Member, str, str]], now: datetime) -> None:
    """What goes to the credit system of each (member, report, stage): the member (masked), and the
    unpaid bills past due behind it; one read and one write however many are reported."""
    if not reports:
        return
    unpaid: dict[int, list[tuple[str, int]]] = {}
    for payer_id, bill_no, fen in session.execute(
        select(Bill.payer_id, Bill.bill_no, Bill.self_pay_fen - Bill.paid_fen)
        .where(Bill.payer_id.in_([member.id for member, _, _ in reports]), Bill.status.in_(("overdue", "advanced")))
        .order_by(Bill.payer_id, Bill.due_at, Bill.id)
    ):
        unpaid.setdefault(payer_id, []).append((bill_no, fen))
    record_many(session, "credit_report", [(f"{member.id}:{report}:{now.isoformat()}", {
        **person(pii, member), "report": report, "stage": stage,
        "bills": [{"bill_no": bill_no, "unpaid_fen": fen} for bill_no, fen in unpaid.get(member.id, [])],
        "unpaid_fen": sum(fen for _, fen in unpaid.get(member.id, [])),
    }, member.id) for member, report, stage in reports], now)


@dataclass(frozen=True)
class Listed:
    id: int  # the outbox row: what `xinyi events --retry` names
    event: str
    event_id: str
    occurred_at: str
    state: str  # pending, failing (retrying after an error), sent, parked (refused, waiting for an operator)
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


def state_of(row: Outbox) -> str:
    if row.status == "dead":
        return "parked"
    if row.status == "pending" and row.last_error is not None:
        return "failing"
    return row.status


async def list_events(core: Core, *, failed: bool = False, limit: int = LISTED) -> list[Listed]:
    """The newest events first; `failed`: only those failing or parked."""
    query = select(Outbox).where(Outbox.kind == outbox.EVENT)
    if failed:
        query = query.where((Outbox.status == "dead") | ((Outbox.status == "pending") & Outbox.last_error.is_not(None)))
    rows = await core.db.run(lambda session: list(session.scalars(query.order_by(Outbox.id.desc()).limit(limit))))
    return [Listed(row.id, row.payload["event"], row.payload["event_id"], row.payload["occurred_at"], state_of(row),
                   row.attempts, row.next_attempt_at if row.status == "pending" else None, row.last_error)
            for row in rows]


async def retry_parked(core: Core, message_id: int | None) -> int:
    """Send a parked event again (every parked one when `message_id` is None), from its first
    attempt; how many went back to pending (0: no parked event has this id)."""
    return await outbox.requeue(core.db, message_id, core.clock.now(), outbox.EVENT)
