"""Visits and charges, two-phase: an order holds credit, checkout posts the self-pay part.

Hospital numbers (visit_no, charge_no) are the idempotency keys; every function here
answers with the JSON body of the hospital API (DESIGN §4.3).
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import Conflict, InvalidInput, NotFound
from billing.identity import age_on, normalise_id_number
from billing.idempotency import Once, run_once
from billing.hospitals import hospital_id
from billing.ladder import reassess_member
from billing.lines import available_fen, hold, release, true_up
from billing.members import member_by_id_number
from billing.money import require_fen
from billing.events import record_bill_event
from billing.outbox import enqueue
from billing.payments import remove_from_bill
from billing.policy import EXCLUSION_CODES
from billing.validate import require_choice, require_text
from storage.models import Bill, Charge, CreditLine, FamilyLink, Member, Reminder, Visit
from storage.prepared import Prepared

VISIT_KINDS = ("outpatient", "emergency", "inpatient")
CATEGORIES = ("registration", "exam", "lab", "drug", "treatment", "other")


# --- visits -----------------------------------------------------------------------------


async def open_visit(core: Core, hospital_code: str, body: dict[str, Any]) -> dict[str, Any]:
    return await run_once(core, visit_opening(core, hospital_code, body))


def visit_opening(core: Core, hospital_code: str, body: dict[str, Any]) -> Once:
    """Opening a visit, its body checked: for `run_once`, or `once_in` a transaction of the caller's."""
    visit_no = require_text(body, "visit_no")
    id_number = normalise_id_number(str(body.get("id_number", "")))
    department = require_text(body, "department", 100)
    kind = require_choice(body, "kind", VISIT_KINDS)
    exclusion = body.get("exclusion")
    if exclusion is not None and exclusion not in EXCLUSION_CODES:
        raise InvalidInput(f"exclusion must be null or one of {', '.join(EXCLUSION_CODES)}", field="exclusion")
    payload = {"visit_no": visit_no, "id_number": id_number, "department": department, "kind": kind, "exclusion": exclusion}

    def work(session: Session) -> dict[str, Any]:
        hospital_pk = hospital_id(session, core, hospital_code)
        patient = member_by_id_number(session, core, id_number)
        line_id, reason = credit_for(session, core, patient, kind, exclusion)
        visit = Visit(
            hospital_id=hospital_pk, visit_no=visit_no, patient_id=patient.id if patient else None,
            line_id=line_id, department=department, kind=kind, exclusion=exclusion,
            on_credit=line_id is not None, reason=reason, status="open", created_at=core.clock.now(),
        )
        session.add(visit)
        session.flush()
        return {"visit_no": visit_no, "on_credit": visit.on_credit, "reason": reason,
                "available_fen": available_fen(session, line_id)}

    return Once(f"visit:{hospital_code}", visit_no, payload, work)


def credit_for(session: Session, core: Core, patient: Member | None, kind: str, exclusion: str | None) -> tuple[int | None, str]:
    """Which line a visit draws on, or None and why not."""
    policy = core.policy
    if exclusion is not None and exclusion in policy.exclusions:
        return None, exclusion
    if patient is None:
        return None, "not_enrolled"
    if patient.malicious_debt and "malicious_debt" in policy.exclusions:
        return None, "malicious_debt"
    minor = age_on(patient.birth_date, core.clock.now().date()) < policy.minor_age
    if patient.status in ("suspended", "revoked", "blacklisted"):
        return None, patient.status
    if patient.status == "active" and not (minor and policy.minors_share_guardian_line):
        return _line_id(session, patient.id, kind), "ok"
    payers = session.execute(
        select(FamilyLink.payer_id, FamilyLink.relation, Member.status)
        .join(Member, Member.id == FamilyLink.payer_id)
        .where(FamilyLink.dependent_id == patient.id)
        .order_by(FamilyLink.id)
    ).all()
    for payer_id, relation, payer_status in payers:
        if payer_status != "active":
            continue
        if relation == "parent" and not policy.adult_children_pay_parents:
            continue
        if minor and not policy.minors_share_guardian_line:
            continue
        return _line_id(session, payer_id, kind), "family"
    if patient.status == "active":  # a minor enrolled in their own right, with no guardian bound
        return _line_id(session, patient.id, kind), "ok"
    # The hospital can tell the family why: the relative who pays is no longer in good standing.
    return None, "payer_not_active" if payers else "not_enrolled"


def _line_id(session: Session, member_id: int, visit_kind: str) -> int:
    """An inpatient stay draws on the member's inpatient line where one is in force (the policy's,
    or a value-added one), everything else on the outpatient line."""
    lines = dict(session.execute(select(CreditLine.kind, CreditLine.id).where(
        CreditLine.member_id == member_id,
        (CreditLine.kind == "outpatient") | ((CreditLine.kind == "inpatient") & (CreditLine.limit_fen > 0)))).all())
    return lines["inpatient"] if visit_kind == "inpatient" and "inpatient" in lines else lines["outpatient"]


def _visit(session: Session, hospital_id: int, visit_no: str, *, lock: bool = False, share: bool = False) -> Visit:
    """`lock` for the checkout, which closes the visit; `share` for cancels, which run side by side
    but wait for a checkout in progress and then see the visit closed."""
    query = select(Visit).where(Visit.hospital_id == hospital_id, Visit.visit_no == visit_no)
    visit = session.scalar(query.with_for_update(read=share) if lock or share else query)
    if visit is None:
        raise NotFound(f"unknown visit {visit_no}", visit_no=visit_no)
    return visit


# --- charges ----------------------------------------------------------------------------

# The hot path of the hospital API, its statements prepared once (building one costs more than running it).
# FOR SHARE: charges run side by side but wait for a checkout in progress, then see the visit closed.
_VISITS = Visit.__table__
_CHARGED_VISIT = Prepared(select(_VISITS.c.id, _VISITS.c.status, _VISITS.c.on_credit, _VISITS.c.line_id).where(
    _VISITS.c.hospital_id == bindparam("hospital_id"), _VISITS.c.visit_no == bindparam("visit_no")
).with_for_update(read=True))
_INSERT_CHARGE = Prepared(insert(Charge.__table__))


async def post_charge(core: Core, hospital_code: str, visit_no: str, body: dict[str, Any]) -> dict[str, Any]:
    return await run_once(core, charge_posting(core, hospital_code, visit_no, body))


def charge_posting(core: Core, hospital_code: str, visit_no: str, body: dict[str, Any]) -> Once:
    """Posting a charge, its body checked: for `run_once`, or `once_in` a transaction of the caller's."""
    charge_no = require_text(body, "charge_no")
    category = require_choice(body, "category", CATEGORIES)
    name = require_text(body, "name", 200)
    amount_fen = require_fen(body.get("amount_fen"), "amount_fen")
    prepaid = body.get("prepaid", False)
    if not isinstance(prepaid, bool):
        raise InvalidInput("prepaid must be true or false", field="prepaid")
    payload = {"visit_no": visit_no, "charge_no": charge_no, "category": category, "name": name,
               "amount_fen": amount_fen, "prepaid": prepaid}
    if body.get("self_pay_estimate_fen") is None:
        hold_fen = -(-amount_fen * core.policy.hold_percent // 100)  # rounded up: the line never holds too little
    else:
        hold_fen = require_fen(body["self_pay_estimate_fen"], "self_pay_estimate_fen", allow_zero=True)
        if hold_fen > amount_fen:
            raise InvalidInput(f"self_pay_estimate_fen {hold_fen} is more than amount_fen {amount_fen}",
                               field="self_pay_estimate_fen")
        payload["self_pay_estimate_fen"] = hold_fen

    def work(session: Session) -> dict[str, Any]:
        hospital_pk = hospital_id(session, core, hospital_code)
        visit = _CHARGED_VISIT.execute(session, {"hospital_id": hospital_pk, "visit_no": visit_no}).first()
        if visit is None:
            raise NotFound(f"unknown visit {visit_no}", visit_no=visit_no)
        if visit.status != "open":
            raise Conflict("the visit is already checked out", reason="visit_checked_out")
        if prepaid or not visit.on_credit:
            status, held_fen = "prepaid" if prepaid else "off_credit", 0
            left = available_fen(session, visit.line_id)
        else:
            status, held_fen = "held", hold_fen
            left = hold(session, visit.line_id, held_fen)
        _INSERT_CHARGE.execute(session, {
            "hospital_id": hospital_pk, "visit_id": visit.id, "charge_no": charge_no, "category": category,
            "name": name, "amount_fen": amount_fen, "held_fen": held_fen, "status": status, "created_at": core.clock.now(),
        })
        return {"charge_no": charge_no, "on_credit": status == "held", "available_fen": max(left, 0)}

    return Once(f"charge:{hospital_code}", charge_no, payload, work)


async def cancel_charge(core: Core, hospital_code: str, visit_no: str, charge_no: str) -> dict[str, Any]:
    """An abandoned item: a hold is released; a checked-out item leaves the bill, refunded if paid."""
    return await run_once(core, charge_cancelling(core, hospital_code, visit_no, charge_no))


def charge_cancelling(core: Core, hospital_code: str, visit_no: str, charge_no: str) -> Once:
    """Cancelling a charge: for `run_once`, or `once_in` a transaction of the caller's."""
    def work(session: Session) -> dict[str, Any]:
        hospital_pk = hospital_id(session, core, hospital_code)
        visit = _visit(session, hospital_pk, visit_no, share=True)
        charge = session.scalar(
            select(Charge).where(Charge.visit_id == visit.id, Charge.charge_no == charge_no).with_for_update()
        )
        if charge is None:
            raise NotFound(f"unknown charge {charge_no}", charge_no=charge_no)
        refund_fen = 0
        if charge.status == "held":
            release(session, visit.line_id, charge.held_fen)
            charge.status = "released"
        elif charge.status == "posted":
            bill = session.scalar(select(Bill).where(Bill.visit_id == visit.id).with_for_update())
            refund_fen = remove_from_bill(session, core, bill, charge)
            charge.status = "refunded"
        elif charge.status in ("prepaid", "off_credit"):
            # Paid or payable at the hospital's own window: it refunds there; we record the item gone.
            refund_fen = charge.amount_fen if charge.status == "prepaid" else 0
            charge.status = "refunded" if charge.status == "prepaid" else "released"
        else:
            raise Conflict(f"the charge is already {charge.status}", reason=f"already_{charge.status}")
        session.flush()
        return {"charge_no": charge_no, "status": charge.status, "refund_fen": refund_fen,
                "available_fen": available_fen(session, visit.line_id)}

    return Once(f"cancel:{hospital_code}", charge_no, {"visit_no": visit_no, "charge_no": charge_no}, work)


# --- checkout ---------------------------------------------------------------------------


def _read_split(body: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    items = body.get("items")
    if not isinstance(items, list):  # empty is fine when every order was abandoned: the visit still closes
        raise InvalidInput("items must be a list", field="items")
    split: dict[str, tuple[int, int, int]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"items[{i}] must be an object", field="items")
        charge_no = require_text(item, "charge_no")
        if charge_no in split:
            raise InvalidInput(f"items[{i}]: {charge_no} appears twice", field="items")
        split[charge_no] = tuple(
            require_fen(item.get(part), f"items[{i}].{part}", allow_zero=True)
            for part in ("insurance_fen", "personal_account_fen", "self_pay_fen")
        )
    return split


async def checkout(core: Core, hospital_code: str, visit_no: str, body: dict[str, Any]) -> dict[str, Any]:
    """医保分解: the line carries the real self-pay in place of what the orders held; self-pay becomes the bill."""
    split = _read_split(body)
    payload = {"visit_no": visit_no, "items": sorted([k, *v] for k, v in split.items())}

    def work(session: Session) -> dict[str, Any]:
        hospital_pk = hospital_id(session, core, hospital_code)
        visit = _visit(session, hospital_pk, visit_no, lock=True)
        if visit.status != "open":
            raise Conflict("the visit is already checked out", reason="visit_checked_out")
        if not visit.on_credit:
            raise Conflict(f"the visit is not on credit ({visit.reason}): settle it at the window", reason="not_on_credit")
        charges = {c.charge_no: c for c in session.scalars(select(Charge).where(Charge.visit_id == visit.id))}
        held = {no for no, c in charges.items() if c.status == "held"}
        unknown = [no for no in split if no not in charges or charges[no].status not in ("held", "prepaid")]
        if unknown:
            raise InvalidInput(f"no open charge {', '.join(sorted(unknown))} in this visit", field="items")
        missing = held - split.keys()
        if missing:
            raise InvalidInput(f"the split leaves out {', '.join(sorted(missing))}", field="items")
        self_pay_total = held_total = 0
        for charge_no, (insurance, personal, self_pay) in split.items():
            charge = charges[charge_no]
            if insurance + personal + self_pay != charge.amount_fen:
                raise InvalidInput(
                    f"{charge_no}: {insurance} + {personal} + {self_pay} does not add up to {charge.amount_fen}",
                    field="items",
                )
            charge.insurance_fen, charge.personal_account_fen, charge.self_pay_fen = insurance, personal, self_pay
            if charge.status == "held":
                charge.status = "posted"
                self_pay_total += self_pay
                held_total += charge.held_fen
        line = true_up(session, visit.line_id, held_total, self_pay_total)
        bill = _issue_bill(session, core, visit, self_pay_total)
        visit.status = "checked_out"
        if line.left_fen < 0:  # the real self-pay passed the limit: the policy's ladder says what follows
            reassess_member(session, core, bill.payer_id, core.clock.now())
        return {"bill_no": bill.bill_no, "self_pay_fen": bill.self_pay_fen, "due_at": bill.due_at.isoformat(),
                "pay_url": core.pay_url(bill.pay_token)}

    return await run_once(core, Once(f"checkout:{hospital_code}", visit_no, payload, work))


def new_bill_no(now: datetime) -> str:
    return f"B{now:%Y%m%d}{secrets.token_hex(5).upper()}"


def _issue_bill(session: Session, core: Core, visit: Visit, self_pay_fen: int) -> Bill:
    """The bill under the terms of the institution its payer chose, where the policy lists them: due when
    the institution's interest-free days end, and its daily interest after; else due after due_hours."""
    now = core.clock.now()
    line = session.get(CreditLine, visit.line_id)
    chosen = core.policy.institution(session.scalar(select(Member.institution).where(Member.id == line.member_id)))
    period = timedelta(days=chosen.interest_free_days) if chosen else timedelta(hours=core.policy.due_hours)
    bill = Bill(
        bill_no=new_bill_no(now), visit_id=visit.id, payer_id=line.member_id, line_id=line.id,
        self_pay_fen=self_pay_fen, paid_fen=0, status="open" if self_pay_fen else "paid",
        issued_at=now, due_at=now + period, paid_at=None if self_pay_fen else now,
        institution=chosen.code if chosen else None, daily_interest_ppm=chosen.daily_interest_ppm if chosen else 0,
        interest_fen=0, interest_paid_fen=0, pay_token=secrets.token_urlsafe(32),
    )
    session.add(bill)
    session.flush()
    recipients = {line.member_id}
    if visit.patient_id is not None:
        patient = session.get(Member, visit.patient_id)
        if patient.openid is not None:
            recipients.add(patient.id)
    for member_id in sorted(recipients):
        enqueue(session, kind="bill_issued", member_id=member_id, dedupe_key=f"bill_issued:{bill.id}:{member_id}",
                payload={"bill_no": bill.bill_no, "self_pay_fen": self_pay_fen, "due_at": bill.due_at.isoformat(),
                         "hospital_id": visit.hospital_id, "patient_id": visit.patient_id},
                now=now)
    record_bill_event(session, core.pii, "bill_issued", bill.id, str(bill.id), now, line.member_id, self_pay_fen=self_pay_fen)
    if self_pay_fen and 0 in core.policy.reminder_offsets_hours:
        # The notice at leaving is the first reminder; the sweep must not send it again.
        session.add(Reminder(bill_id=bill.id, offset_hours=0, at=now))
    return bill
