"""What an operator may do to a member or a bill from the console. Each action needs a
reason, checks the target is within the operator's scope (a target outside it is "not
found", so that it leaks nothing), and writes its audit row with the state before and
after in the transaction of the change itself.

The roles allowed each action are the console's to enforce (bot/admin); these functions
enforce the scope and the rules of the money.
"""
from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from billing import marketing, members
from billing.auditlog import record
from billing.core import Core
from billing.errors import Conflict, InvalidInput, NotFound
from billing.ladder import MANUAL_SUSPENSION, UNPAID, reassess_member
from billing.operators import Scope, SignedIn
from billing.outbox import enqueue
from billing.status import move_status
from billing.validate import printable_ascii
from storage.models import Bill, CreditLine, Member, Refund, StatusChange, Visit

REASON_MAX_CHARS = 500
# Channels a bill notice may be sent again by, whatever the policy's channel for bills (billing/policy.py CHANNELS).
RESEND_CHANNELS = ("wechat", "sms")
REVEALABLE = ("id_number", "phone")


def _reason(text: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput("say why: the reason is written to the audit log", field="reason")
    if len(text) > REASON_MAX_CHARS:
        raise InvalidInput(f"the reason may have at most {REASON_MAX_CHARS} characters", field="reason")
    return text


def member_filter(scope: Scope):
    """The members a scope sees, as a WHERE clause on Member."""
    if scope.everything:
        return Member.id.is_not(None)
    if scope.role == "community":
        return Member.onboarded_by_staff_id.in_(sorted(scope.staff_ids))
    at_hospital = Visit.hospital_id == scope.hospital_id
    return or_(exists().where(Visit.patient_id == Member.id, at_hospital),
               exists().where(Bill.payer_id == Member.id, Bill.visit_id == Visit.id, at_hospital))


def bill_filter(scope: Scope):
    """The bills a scope sees, as a WHERE clause on Bill."""
    if scope.everything:
        return Bill.id.is_not(None)
    if scope.role == "community":
        return exists().where(Member.id == Bill.payer_id, member_filter(scope))
    return exists().where(Visit.id == Bill.visit_id, Visit.hospital_id == scope.hospital_id)


def scoped_member(session: Session, scope: Scope, member_id: int, *, lock: bool = False) -> Member:
    query = select(Member).where(Member.id == member_id, member_filter(scope))
    member = session.scalar(query.with_for_update() if lock else query)
    if member is None:
        raise NotFound("no such member", member_id=member_id)
    return member


def scoped_bill(session: Session, scope: Scope, bill_no: str, *, lock: bool = False) -> Bill:
    if not printable_ascii(bill_no, 40):  # no bill has such a number; a NUL would be the driver's error
        raise NotFound("no such bill", bill_no=bill_no)
    query = select(Bill).where(Bill.bill_no == bill_no, bill_filter(scope))
    bill = session.scalar(query.with_for_update() if lock else query)
    if bill is None:
        raise NotFound("no such bill", bill_no=bill_no)
    return bill


def _member_state(member: Member) -> dict[str, Any]:
    return {"status": member.status}


def _bill_state(bill: Bill, line: CreditLine | None = None) -> dict[str, Any]:
    state = {"status": bill.status, "self_pay_fen": bill.self_pay_fen, "paid_fen": bill.paid_fen,
             "disputed": bill.disputed_at is not None}
    if line is not None:
        state["line_used_fen"] = line.used_fen
    return state


async def suspend(core: Core, actor: SignedIn, member_id: int, reason: str) -> None:
    """Suspend an active member by hand; the ladder does not lift it, only `restore` does."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        member = scoped_member(session, actor.scope, member_id, lock=True)
        before = _member_state(member)
        move_status(session, member, "suspended", MANUAL_SUSPENSION, now, pii=core.pii)
        record(session, now, actor, "suspend", f"member:{member_id}", reason, before=before, after=_member_state(member))

    await core.db.run(work)


async def restore(core: Core, actor: SignedIn, member_id: int, reason: str) -> None:
    """Lift a suspension an operator made. One the ladder made lifts by credit repair or payment."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        member = scoped_member(session, actor.scope, member_id, lock=True)
        last = session.scalar(select(StatusChange.reason).where(StatusChange.member_id == member_id)
                              .order_by(StatusChange.id.desc()).limit(1))
        if member.status != "suspended" or last != MANUAL_SUSPENSION:
            raise Conflict("only a suspension made in the console can be lifted by hand; the overdue ladder's "
                           "lifts by payment or credit repair", reason="not_manual")
        before = _member_state(member)
        move_status(session, member, "active", "manual_restore", now, pii=core.pii)
        reassess_member(session, core, member_id, now)  # the facts may call for a stage again
        record(session, now, actor, "restore", f"member:{member_id}", reason, before=before, after=_member_state(member))

    await core.db.run(work)


async def repair(core: Core, actor: SignedIn, member_id: int, reason: str) -> str:
    """信用修复 by billing.members.repair_credit, the one place its rule lives, the operator
    approving; the audit row goes into repair_credit's own transaction, with the status it leaves."""
    reason = _reason(reason)
    before = await core.db.run(lambda session: _member_state(scoped_member(session, actor.scope, member_id)))

    def audit(session: Session, status: str) -> None:
        record(session, core.clock.now(), actor, "repair", f"member:{member_id}", reason, before=before,
               after={"status": status})

    return await members.repair_credit(core, member_id, approved_by=actor.username, record=audit)


async def write_off(core: Core, actor: SignedIn, bill_no: str, reason: str) -> None:
    """Write off what is unpaid of a bill the insurer has advanced (先行赔付): the line no
    longer carries it, and the programme stops collecting it."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        bill = scoped_bill(session, actor.scope, bill_no, lock=True)
        if bill.status != "advanced":
            raise Conflict("only a bill the insurer has advanced can be written off", reason="not_advanced")
        line = session.scalar(select(CreditLine).where(CreditLine.id == bill.line_id).with_for_update())
        before = _bill_state(bill, line)
        line.used_fen -= bill.self_pay_fen - bill.paid_fen
        bill.status = "written_off"
        session.flush()
        reassess_member(session, core, bill.payer_id, now)
        record(session, now, actor, "write_off", f"bill:{bill_no}", reason, before=before, after=_bill_state(bill, line))

    await core.db.run(work)


async def dispute(core: Core, actor: SignedIn, bill_no: str, reason: str) -> None:
    """The member disputes the bill: the overdue ladder waits on it until `resolve`."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        bill = scoped_bill(session, actor.scope, bill_no, lock=True)
        if bill.status not in UNPAID or bill.disputed_at is not None:
            raise Conflict("only an unpaid bill that is not disputed yet can be disputed", reason="not_disputable")
        before = _bill_state(bill)
        bill.disputed_at = now
        record(session, now, actor, "dispute", f"bill:{bill_no}", reason, before=before, after=_bill_state(bill))

    await core.db.run(work)


async def resolve(core: Core, actor: SignedIn, bill_no: str, reason: str) -> None:
    """The dispute is settled and the bill stands: the ladder counts it again. (A corrected
    amount comes from the hospital, by cancelling items through its API.)"""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        bill = scoped_bill(session, actor.scope, bill_no, lock=True)
        if bill.disputed_at is None:
            raise Conflict("this bill is not disputed", reason="not_disputed")
        before = _bill_state(bill)
        bill.disputed_at = None
        session.flush()
        reassess_member(session, core, bill.payer_id, now)
        record(session, now, actor, "resolve", f"bill:{bill_no}", reason, before=before, after=_bill_state(bill))

    await core.db.run(work)


async def resend_notice(core: Core, actor: SignedIn, bill_no: str, channel: str, reason: str) -> None:
    """The bill notice once more, through the outbox, by the channel chosen."""
    reason, now = _reason(reason), core.clock.now()
    if channel not in RESEND_CHANNELS:
        raise InvalidInput(f"the channel must be one of {', '.join(RESEND_CHANNELS)}", field="channel")

    def work(session: Session) -> None:
        bill = scoped_bill(session, actor.scope, bill_no)
        if bill.status not in UNPAID:
            raise Conflict("the bill is settled: there is nothing to remind of", reason="settled")
        visit = session.get(Visit, bill.visit_id)
        key = f"resend:{bill.id}:{secrets.token_hex(8)}"
        enqueue(session, kind="bill_issued", member_id=bill.payer_id, dedupe_key=key, now=now,
                payload={"bill_no": bill.bill_no, "self_pay_fen": bill.self_pay_fen, "due_at": bill.due_at.isoformat(),
                         "hospital_id": visit.hospital_id, "patient_id": visit.patient_id, "channel": channel})
        record(session, now, actor, "resend_notice", f"bill:{bill_no}", reason, after={"channel": channel, "outbox": key})

    await core.db.run(work)


async def retry_refund(core: Core, actor: SignedIn, refund_id: int, reason: str) -> None:
    """A refund the gateway refused goes back to pending: the refund job asks the gateway again,
    under the same refund number, so it can never be paid twice."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        refund = session.scalar(select(Refund).join(Bill, Bill.id == Refund.bill_id)
                                .where(Refund.id == refund_id, bill_filter(actor.scope)).with_for_update())
        if refund is None:
            raise NotFound("no such refund", refund_id=refund_id)
        if refund.status != "failed":
            raise Conflict("only a failed refund can be tried again", reason="not_failed")
        refund.status = "pending"
        record(session, now, actor, "retry_refund", f"refund:{refund_id}", reason,
               before={"status": "failed"}, after={"status": "pending"})

    await core.db.run(work)


async def reveal(core: Core, actor: SignedIn, member_id: int, field: str, reason: str) -> str:
    """A member's full ID or phone number, shown once for a stated reason, and audited."""
    reason, now = _reason(reason), core.clock.now()
    if field not in REVEALABLE:
        raise InvalidInput(f"one of {', '.join(REVEALABLE)}", field="field")

    def work(session: Session) -> bytes:
        member = scoped_member(session, actor.scope, member_id)
        encrypted = member.id_number_enc if field == "id_number" else member.phone_enc
        if encrypted is None:
            raise NotFound("no such number on record", field=field)
        record(session, now, actor, f"reveal_{field}", f"member:{member_id}", reason)
        return encrypted

    return core.pii.decrypt(await core.db.run(work))


async def send_offer(core: Core, actor: SignedIn, sender: str, texts: dict[str, str], reason: str) -> int:
    """A partner's offer to every member who says yes to offers now (billing/marketing.py), each
    asked again when it is sent; the whole programme's, so an account of a narrower scope finds
    nothing to send to. Returns how many members it was queued for."""
    reason, now = _reason(reason), core.clock.now()
    sender, texts = marketing.offer_fields(sender, texts)
    if not actor.scope.everything:
        raise NotFound("offers go to the whole programme's members", reason="scope")
    if not core.policy.marketing_allowed:
        raise Conflict("this programme sends no offers ([marketing] allowed = false)", reason="marketing_off")

    def work(session: Session) -> int:
        offer = marketing.queue_offer(session, sender, texts, actor.id, now)
        record(session, now, actor, "marketing_offer", f"offer:{offer.id}", reason,
               after={"sender": sender, "texts": texts, "recipients": offer.recipients})
        return offer.recipients

    return await core.db.run(work)


async def withdraw_marketing(core: Core, actor: SignedIn, member_id: int, reason: str) -> None:
    """Record a member's no to offers that they gave elsewhere (at a desk, on the phone). An operator
    never records a yes: that is the member's own, in the chat."""
    reason, now = _reason(reason), core.clock.now()

    def work(session: Session) -> None:
        scoped_member(session, actor.scope, member_id)
        if not marketing.choose(session, member_id, False, "console", now, actor.id).changed:
            raise Conflict("the member does not take offers", reason="not_consenting")
        record(session, now, actor, "marketing_withdraw", f"member:{member_id}", reason,
               before={"marketing": True}, after={"marketing": False})

    await core.db.run(work)
