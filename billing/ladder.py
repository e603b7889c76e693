"""The overdue ladder: a member's stage is a pure function of facts and `now`.

`decide` is the calculator (no I/O); `reassess_members` is the applicator: it locks the
members, recomputes their facts inside the transaction, records each move and queues
its side effects in the outbox.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.events import CREDIT_REPORT_KEY, record_credit_reports
from billing.outbox import EVENT
from billing.policy import LadderRule, Policy
from billing.repair import commitment_renewed, last_overdue_payments, settled_at
from billing.status import move_statuses
from storage.models import UNPAID_BILL_STATUSES, Bill, CreditLine, Member, Outbox, Reminder, StatusChange

SEVERITY = {"active": 0, "suspended": 1, "revoked": 2, "blacklisted": 3}
UNPAID = UNPAID_BILL_STATUSES
DAY = timedelta(days=1)
MANUAL_SUSPENSION = "manual"  # the reason an operator's suspension is recorded with: only an operator lifts it


@dataclass(frozen=True)
class MemberFacts:
    status: str
    days_overdue: int | None  # whole days the oldest unpaid bill is past due; None when none is
    overdue_count: int  # bills that ever went past due unpaid
    days_since_advance: int | None  # whole days since the insurer advanced the oldest unpaid bill
    over_limit: bool
    repaired: bool  # credit repair recorded since the last status change
    held: bool = False  # suspended by an operator, not by the ladder
    repair_ready: bool = False  # a repair the policy completes by itself has nothing missing
    reminders_unheeded: int = 0  # the most reminders past its due time any unpaid bill past due has had
    reported: frozenset[str] = frozenset()  # what was reported of the member since their last status change


@dataclass(frozen=True)
class Decision:
    to: str
    rule: LadderRule | None
    repaired: bool = False  # the move lifts a suspension the policy keeps until credit repair
    report_only: bool = False  # no move: the member, at the rule's stage already, is reported under it

    @property
    def reason(self) -> str:
        if self.rule is None:
            return "credit_repair" if self.repaired else "repaid"
        conditions = [f"{name}>={getattr(self.rule, name)}"
                      for name in ("days_overdue", "overdue_count", "days_since_advance", "reminders_unheeded")
                      if getattr(self.rule, name) is not None]
        if self.rule.over_limit:
            conditions.append("over_limit")
        return "ladder:" + ",".join(conditions)


def bill_stage(policy: Policy, *, self_pay_fen: int, paid_fen: int, due_at: datetime, now: datetime) -> str:
    if paid_fen >= self_pay_fen:
        return "paid"
    if now <= due_at:
        return "open"
    if policy.advance_after_days is not None and now >= due_at + policy.advance_after_days * DAY:
        return "advanced"
    return "overdue"


def _holds(rule: LadderRule, facts: MemberFacts) -> bool:
    def at_least(value: int | None, bound: int | None) -> bool:
        return bound is None or (value is not None and value >= bound)

    return (
        at_least(facts.days_overdue, rule.days_overdue)
        and at_least(facts.overdue_count, rule.overdue_count)
        and at_least(facts.days_since_advance, rule.days_since_advance)
        and at_least(facts.reminders_unheeded, rule.reminders_unheeded)
        and (not rule.over_limit or facts.over_limit)
    )


def decide(policy: Policy, facts: MemberFacts) -> Decision | None:
    """The move the facts call for, or None. Revocation and blacklisting never lift by
    themselves; a suspension lifts once nothing matches, after credit repair where the
    policy asks for it (recorded, or complete by itself where the policy says so), unless an
    operator suspended the member."""
    if facts.status not in SEVERITY:  # prospects and cancelled members are outside the ladder
        return None
    rule = next((r for r in policy.ladder if _holds(r, facts)), None)
    target = rule.stage if rule else "active"
    current = SEVERITY[facts.status]
    if SEVERITY[target] > current:
        return Decision(target, rule)
    # At the rule's stage already by another way (an earlier rule, an operator), the member is still
    # reported under it, once a stay (Xiamen: suspended when overdue, the 白鹭分 lowered once
    # "经多次提醒，仍未履行还款义务", seed 004).
    if SEVERITY[target] == current and rule is not None and rule.report and rule.report not in facts.reported:
        return Decision(target, rule, report_only=True)
    if SEVERITY[target] < current and facts.status == "suspended" and not facts.held:
        if not policy.repair_required:
            return Decision(target, rule)
        if facts.repaired or (policy.repair.automatic and facts.repair_ready):
            return Decision(target, rule, repaired=True)
    return None


def facts_for(session: Session, policy: Policy, member_ids: list[int], now: datetime) -> dict[int, MemberFacts]:
    # A disputed bill is left out until the dispute is resolved: the ladder waits on it.
    past_due = (Bill.status.in_(UNPAID)) & (Bill.due_at < now) & Bill.disputed_at.is_(None)
    oldest = dict(session.execute(
        select(Bill.payer_id, func.min(Bill.due_at)).where(Bill.payer_id.in_(member_ids), past_due).group_by(Bill.payer_id)
    ).all())
    counts = dict(session.execute(
        select(Bill.payer_id, func.count()).where(Bill.payer_id.in_(member_ids), Bill.disputed_at.is_(None),
                                                  or_(Bill.overdue_at.is_not(None), past_due))
        .group_by(Bill.payer_id)
    ).all())
    latest_moves = select(func.max(StatusChange.id)).where(StatusChange.member_id.in_(member_ids)).group_by(StatusChange.member_id)
    held = set(session.scalars(select(StatusChange.member_id).where(
        StatusChange.id.in_(latest_moves), StatusChange.to_status == "suspended", StatusChange.reason == MANUAL_SUSPENSION)))
    over = set(session.scalars(
        select(CreditLine.member_id).where(CreditLine.member_id.in_(member_ids), CreditLine.used_fen > CreditLine.limit_fen)
    ))
    unheeded: dict[int, int] = {}
    if any(rule.reminders_unheeded for rule in policy.ladder):
        for payer_id, count in session.execute(
            select(Bill.payer_id, func.count(Reminder.id)).join(Reminder, Reminder.bill_id == Bill.id)
            .where(Bill.payer_id.in_(member_ids), past_due, Reminder.offset_hours > policy.due_hours)
            .group_by(Bill.payer_id, Bill.id)
        ):
            unheeded[payer_id] = max(unheeded.get(payer_id, 0), count)
    reported = _reported_since_last_move(session, member_ids) if any(rule.report for rule in policy.ladder) else {}
    automatic = policy.repair_required and policy.repair.automatic
    overdue_paid = last_overdue_payments(session, member_ids) if automatic else {}
    facts = {}
    for member in session.execute(
        select(Member.id, Member.status, Member.repaired_at, Member.status_changed_at, Member.commitment_signed_at)
        .where(Member.id.in_(member_ids))
    ):
        member_id, status, repaired_at, changed_at = member.id, member.status, member.repaired_at, member.status_changed_at
        due = oldest.get(member_id)
        since_advance = None
        if due is not None and policy.advance_after_days is not None:
            advanced_at = due + policy.advance_after_days * DAY
            since_advance = (now - advanced_at) // DAY if now >= advanced_at else None
        facts[member_id] = MemberFacts(
            status=status,
            days_overdue=(now - due) // DAY if due is not None else None,
            overdue_count=counts.get(member_id, 0),
            days_since_advance=since_advance,
            over_limit=member_id in over,
            repaired=repaired_at is not None and (changed_at is None or repaired_at >= changed_at),
            held=status == "suspended" and member_id in held,
            reminders_unheeded=unheeded.get(member_id, 0),
            reported=frozenset(reported.get(member_id, ())),
            repair_ready=automatic and due is None
            and policy.repair.waiting_until(settled_at(changed_at, overdue_paid.get(member_id)), now) is None
            and (not policy.repair.renew_commitment or commitment_renewed(member)),
        )
    return facts


def _reported_since_last_move(session: Session, member_ids: list[int]) -> dict[int, set[str]]:
    """The credit reports made of each member since their last status change (billing.events keys
    them `event:credit_report:MEMBER:REPORT:TIME`)."""
    reported: dict[int, set[str]] = {}
    for member_id, key in session.execute(
        select(Outbox.member_id, Outbox.dedupe_key).join(Member, Member.id == Outbox.member_id)
        .where(Outbox.member_id.in_(member_ids), Outbox.kind == EVENT, Outbox.dedupe_key.startswith(CREDIT_REPORT_KEY),
               Outbox.created_at >= Member.status_changed_at)
    ):
        reported.setdefault(member_id, set()).add(key.split(":")[3])
    return reported


def reassess_members(session: Session, core: Core, member_ids: list[int], now: datetime, reason: str | None = None) -> int:
    """Lock, recompute, apply. Returns how many members moved; `reason` names who asked for a
    credit repair the move completes."""
    members = {m.id: m for m in session.scalars(
        select(Member).where(Member.id.in_(member_ids)).order_by(Member.id).with_for_update()
    )}
    moves: list[tuple[Member, str, str]] = []
    reports: list[tuple[Member, str, str]] = []  # credit reports, each (member, report, stage)
    for member_id, facts in facts_for(session, core.policy, list(members), now).items():
        decision = decide(core.policy, facts)
        if decision is None:
            continue
        member = members[member_id]
        if decision.rule is not None and decision.rule.report:
            reports.append((member, decision.rule.report, decision.to))
        if decision.report_only:
            continue
        if decision.repaired:  # the record repair clears; it would otherwise exclude the member for good
            member.repaired_at, member.malicious_debt = now, False
        if decision.rule is not None and decision.rule.record_malicious_debt:
            member.malicious_debt = True
        moves.append((member, decision.to, (reason if decision.repaired else None) or decision.reason))
    # All moves, then all reports: one statement of each kind for the lot (the sweep's batches of a thousand).
    move_statuses(session, moves, now, pii=core.pii)
    record_credit_reports(session, core.pii, reports, now)
    session.flush()
    return len(moves)


def reassess_member(session: Session, core: Core, member_id: int, now: datetime, reason: str | None = None) -> None:
    reassess_members(session, core, [member_id], now, reason)
