"""Members: enrolment, status moves, 解约 and signing again, credit repair, family links."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.eligibility import Eligibility, decide
from billing.errors import Conflict, InvalidInput, NotEligible, NotFound
from billing.identity import age_on, birth_date, normalise_id_number, normalise_phone
from billing.ladder import reassess_member
from billing.lines import set_limits
from billing.pii import mask_id_number
from billing.policy import Policy
from billing.repair import Repair, RepairIncomplete, assess
from billing.status import move_status
from storage.models import UNPAID_BILL_STATUSES, Bill, CreditLine, FamilyLink, Member, Visit
from storage.prepared import Prepared

RELATIONS = ("parent", "child", "spouse")


@dataclass(frozen=True)
class Enrolment:
    member_id: int
    limit_fen: int
    value_added: bool
    inpatient_fen: int | None  # an inpatient line, where the policy grants one (to all, or as a value-added service)
    institution: str | None = None  # the financial institution chosen, where the policy lists them


def chosen_institution(policy: Policy, code: str | None) -> str | None:
    """The institution code an enrolment or a change names, checked against the policy: required
    where the policy lists institutions (the member chooses, seed 004), refused where it lists none."""
    if not policy.institutions:
        if code is not None:
            raise InvalidInput("this programme lists no financial institutions to choose from", field="institution")
        return None
    if policy.institution(code) is None:
        known = ", ".join(i.code for i in policy.institutions)
        raise InvalidInput(f"choose one of the programme's financial institutions: {known}", field="institution")
    return code


def member_by_id_number(session: Session, core: Core, id_number: str) -> Member | None:
    return session.scalar(select(Member).where(Member.id_number_hmac == core.pii.lookup(id_number)))


def member_by_openid(session: Session, openid: str) -> Member | None:
    return session.scalar(select(Member).where(Member.openid == openid))


# Every chat message looks its writer up: what the chat reads of them, prepared once (and read
# with the conversation by handlers.engine, in the same statement).
_MEMBERS = Member.__table__
CHAT_MEMBER = select(_MEMBERS.c.id, _MEMBERS.c.status, _MEMBERS.c.name, _MEMBERS.c.id_number_enc, _MEMBERS.c.phone_enc
                     ).where(_MEMBERS.c.openid == bindparam("openid"))
_WRITER = Prepared(CHAT_MEMBER)
ChatMember = _WRITER.row


def chat_member(session: Session, openid: str) -> Row | None:
    """The member writing from this openid as the chat sees them (id, status, name and the
    encrypted ID and phone numbers, read only), or None."""
    return _WRITER.execute(session, {"openid": openid}).first()


async def check_eligibility(core: Core, id_number: str, name: str | None = None) -> Eligibility:
    number = normalise_id_number(id_number)
    resident = await core.registry.lookup(number)
    return decide(core.policy, number, resident, core.clock.now().date(), name)


async def enrol(
    core: Core,
    *,
    openid: str | None,
    name: str,
    id_number: str,
    phone: str,
    consent_version: str,
    commitment_version: str,
    staff_id: int | None = None,
    consent_at: datetime | None = None,
    institution: str | None = None,
) -> Enrolment:
    """Sign the commitment: the member becomes active with the line the policy gives, capped by the
    financial institution chosen where the policy lists them (`institution`, its code: required then).
    `consent_at` is when the privacy notice was accepted, if that came first (in chat it does)."""
    institution = chosen_institution(core.policy, institution)
    number = normalise_id_number(id_number)
    phone = normalise_phone(phone)
    name = name.strip()
    if not name or len(name) > 50:
        raise InvalidInput("the name must have 1 to 50 characters", field="name")
    if consent_version != core.policy.consent_version:
        raise InvalidInput("the privacy notice must be accepted in its current version", field="consent_version")
    if commitment_version != core.policy.commitment_version:
        raise InvalidInput("the credit commitment must be signed in its current version", field="commitment_version")
    verdict = await check_eligibility(core, number, name)
    if not verdict.eligible:
        raise NotEligible(f"not eligible: {verdict.reason}", reason=verdict.reason)
    now = core.clock.now()

    def work(session: Session) -> Enrolment:
        member = member_by_id_number(session, core, number)
        if member is None:
            member = _new_member(core, number, name, now)
            session.add(member)
        elif member.status not in ("prospect", "cancelled"):
            raise Conflict(f"already in the programme ({member.status})", reason=member.status)
        if openid is not None:
            other = member_by_openid(session, openid)
            if other is not None and other.id != member.id:
                raise Conflict("this WeChat account is already enrolled for another person", reason="openid_taken")
        member.openid = openid
        member.name = name
        member.phone_enc = core.pii.encrypt(phone)
        member.phone_hmac = core.pii.lookup(phone)
        member.consent_version, member.consent_at = consent_version, consent_at or now
        member.commitment_version, member.commitment_signed_at = commitment_version, now
        member.value_added = verdict.value_added
        member.institution = institution
        member.onboarded_by_staff_id = staff_id
        session.flush()
        limit_fen = core.policy.line_limit(verdict.limit_fen, institution)
        set_limits(session, core.policy, member, limit_fen, now)
        move_status(session, member, "active", "enrolled", now, pii=core.pii)
        return Enrolment(member.id, limit_fen, verdict.value_added, core.policy.inpatient_limit(verdict.value_added),
                         institution)

    return await core.db.run(work)


def _new_member(core: Core, number: str, name: str, now: datetime) -> Member:
    return Member(
        name=name,
        id_number_enc=core.pii.encrypt(number),
        id_number_hmac=core.pii.lookup(number),
        birth_date=birth_date(number),
        region=number[:6],
        status="prospect",
        created_at=now,
    )


def owed_fen(session: Session, member_id: int) -> int:
    """What the member's lines carry: unpaid self-pay plus holds of visits in progress."""
    used = session.scalar(select(func.coalesce(func.sum(CreditLine.used_fen), 0)).where(CreditLine.member_id == member_id))
    return int(used)


async def change_institution(core: Core, member_id: int, institution: str) -> int:
    """Another financial institution for the member's new bills (bills issued keep the terms they were
    issued with): refused while a bill is unpaid or a visit holds credit, since the line it would set
    is the new institution's. The line becomes what the credit score earns, capped by the new one.
    Returns the new limit."""
    institution = chosen_institution(core.policy, institution)
    now = core.clock.now()

    def read(session: Session) -> str:
        member = session.get(Member, member_id)
        if member is None:
            raise NotFound("no such member", member_id=member_id)
        return member.id_number_enc

    number = core.pii.decrypt(await core.db.run(read))  # the registry's score, read outside the transaction
    resident = await core.registry.lookup(number)
    tier_fen = (core.policy.limit_fen if core.policy.limit_fen is not None
                else None if resident is None or resident.credit_score is None
                else core.policy.limit_for_score(resident.credit_score)[0])

    def work(session: Session) -> int:
        member = _locked_member(session, member_id)
        if member.status not in ("active", "suspended"):
            raise Conflict(f"a {member.status} member has no line to change", reason=member.status)
        unpaid = session.scalar(select(func.count()).select_from(Bill).where(
            Bill.payer_id == member_id, Bill.status.in_(UNPAID_BILL_STATUSES)))
        if unpaid:
            raise Conflict("pay the unpaid bills first: they stay with the institution that granted them",
                           reason="unpaid_bills", bills=unpaid)
        if owed_fen(session, member_id) > 0:
            raise Conflict("a visit on the line is still in progress", reason="visit_in_progress")
        if tier_fen is None:
            raise NotEligible("the registry has no credit score for the member now", reason="no_credit_score")
        member.institution = institution
        limit_fen = core.policy.line_limit(tier_fen, institution)
        set_limits(session, core.policy, member, limit_fen, now)
        return limit_fen

    return await core.db.run(work)


async def cancel_agreement(core: Core, member_id: int) -> None:
    """解约: only with nothing owed; the member may sign again later."""
    now = core.clock.now()

    def work(session: Session) -> None:
        member = _locked_member(session, member_id)
        if owed_fen(session, member_id) > 0:
            raise Conflict("there is still money owed: pay it first", reason="money_owed")
        move_status(session, member, "cancelled", "member_cancelled", now, pii=core.pii)

    await core.db.run(work)


async def repair_credit(core: Core, member_id: int, *, approved_by: str | None = None, asked_by: str = "operator",
                        record: Callable[[Session, str], object] | None = None) -> str:
    """信用修复, the one way to complete it: for a suspended member (or an active one still
    carrying a malicious debt record), once the policy's RepairRule has nothing missing.
    `approved_by` is the operator approving, where the policy asks for approval; `asked_by`
    ("member" from the chat, "operator") is recorded with the move; `record(session, status)`
    (the console's audit row) is written in the repair's own transaction, with the status after.
    Returns that status; raises RepairIncomplete naming exactly what is missing, and changes
    nothing then."""
    now = core.clock.now()

    def work(session: Session) -> str | Repair:
        member = _locked_member(session, member_id)
        if member.status not in ("suspended", "active"):
            raise Conflict(f"a {member.status} member has no credit repair", reason="not_repairable", status=member.status)
        if member.status == "active" and not member.malicious_debt:
            raise Conflict("nothing to repair: the member is in good standing", reason="nothing_to_repair", status="active")
        repair = assess(session, core.policy, member, now, approved=approved_by is not None)
        if repair.missing:
            return repair
        member.repaired_at = now
        member.malicious_debt = False  # the record repair clears; it would otherwise exclude the member for good
        by = f"approved_by:{approved_by}" if approved_by else asked_by
        reassess_member(session, core, member_id, now, f"credit_repair:{by}"[:64])
        if record is not None:
            record(session, member.status)
        return member.status

    outcome = await core.db.run(work)
    if isinstance(outcome, Repair):
        raise RepairIncomplete(outcome)
    return outcome


async def renew_commitment(core: Core, member_id: int, commitment_version: str) -> Repair:
    """A suspended member signs the credit commitment again, where the policy's repair asks for
    it. Returns what repair still needs."""
    if commitment_version != core.policy.commitment_version:
        raise InvalidInput("the credit commitment must be signed in its current version", field="commitment_version")
    now = core.clock.now()

    def work(session: Session) -> Repair:
        member = _locked_member(session, member_id)
        if member.status != "suspended" or not (core.policy.repair_required and core.policy.repair.renew_commitment):
            raise Conflict("no credit repair asks for the commitment now", reason="commitment_not_asked", status=member.status)
        member.commitment_version, member.commitment_signed_at = commitment_version, now
        return assess(session, core.policy, member, now)

    return await core.db.run(work)


def _locked_member(session: Session, member_id: int) -> Member:
    member = session.scalar(select(Member).where(Member.id == member_id).with_for_update())
    if member is None:
        raise NotFound("no such member", member_id=member_id)
    return member


async def bind_dependent(core: Core, payer_id: int, relation: str, name: str, id_number: str) -> int:
    """家人: the payer books, pays for and follows the dependent. Returns the dependent's id."""
    if relation not in RELATIONS:
        raise InvalidInput(f"relation must be one of {', '.join(RELATIONS)}", field="relation")
    number = normalise_id_number(id_number)
    name = name.strip()
    if not name:
        raise InvalidInput("the dependent's name is needed", field="name")
    now = core.clock.now()
    age = age_on(birth_date(number), now.date())
    if relation == "parent" and not core.policy.adult_children_pay_parents:
        raise NotEligible("this programme does not let children pay for parents", reason="family_not_allowed")
    if relation == "child" and age < core.policy.minor_age and not core.policy.minors_share_guardian_line:
        raise NotEligible("this programme does not let minors share a guardian's line", reason="family_not_allowed")
    resident = await core.registry.lookup(number)
    if resident is not None and resident.name != name:
        raise InvalidInput("the name does not match the ID number", field="name")

    def work(session: Session) -> int:
        payer = _locked_member(session, payer_id)
        if payer.status != "active":
            raise NotEligible("only an active member can add family", reason=payer.status)
        dependent = member_by_id_number(session, core, number)
        if dependent is None:
            dependent = _new_member(core, number, name, now)
            session.add(dependent)
            session.flush()
        if dependent.id == payer.id:
            raise InvalidInput("a member cannot add themselves", field="id_number")
        links = list(session.scalars(select(FamilyLink).where(FamilyLink.payer_id == payer_id)))
        if any(link.dependent_id == dependent.id for link in links):
            raise Conflict(f"{mask_id_number(number)} is already in the family list", reason="already_bound")
        if len(links) >= core.policy.max_dependents:
            raise Conflict(f"at most {core.policy.max_dependents} family members", reason="too_many_dependents")
        session.add(FamilyLink(payer_id=payer_id, dependent_id=dependent.id, relation=relation, created_at=now))
        return dependent.id

    return await core.db.run(work)


async def unbind_dependent(core: Core, payer_id: int, dependent_id: int) -> None:
    def work(session: Session) -> None:
        link = session.scalar(select(FamilyLink).where(FamilyLink.payer_id == payer_id, FamilyLink.dependent_id == dependent_id))
        if link is None:
            raise NotFound("no such family member", dependent_id=dependent_id)
        open_visits = session.scalar(
            select(func.count())
            .select_from(Visit)
            .join(CreditLine, CreditLine.id == Visit.line_id)
            .where(Visit.patient_id == dependent_id, Visit.status == "open", CreditLine.member_id == payer_id)
        )
        if open_visits:
            raise Conflict("a visit on your line is still in progress", reason="visit_in_progress")
        session.delete(link)

    await core.db.run(work)
