"""信用修复 (credit repair): what a suspended member still needs before the suspension lifts.

The policy's RepairRule says what repair asks for; `assess` reads the member's facts and
names exactly what is missing: the overdue bills still unpaid (which, how much), the end
of a waiting period, the commitment signed again, an operator's approval. The one entry
point that completes a repair is billing.members.repair_credit; the ladder completes it
by itself where the policy says so (billing.ladder).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.errors import Conflict
from billing.interest import STORED_OWED_FEN
from billing.policy import Policy
from storage.models import Bill, Member

PAST_DUE = ("overdue", "advanced")
# What repair may still need, in the order a member is told.
MISSING = ("overdue_unpaid", "waiting", "commitment", "approval")


@dataclass(frozen=True)
class OverdueBill:
    bill_no: str
    unpaid_fen: int
    due_at: datetime


@dataclass(frozen=True)
class Repair:
    """What repair needs now. `required`: the policy keeps a suspension until repair; when it
    does not, paying the overdue bills is all there is."""

    status: str
    required: bool
    automatic: bool  # completes by itself once nothing else is missing
    overdue_bills: tuple[OverdueBill, ...]
    wait_until: datetime | None  # the waiting period's end, while it lasts
    commitment_needed: bool
    approval_needed: bool

    @property
    def unpaid_fen(self) -> int:
        return sum(bill.unpaid_fen for bill in self.overdue_bills)

    @property
    def missing(self) -> tuple[str, ...]:
        present = {"overdue_unpaid": bool(self.overdue_bills), "waiting": self.wait_until is not None,
                   "commitment": self.commitment_needed, "approval": self.approval_needed}
        return tuple(code for code in MISSING if present[code])

    def details(self) -> dict:
        """The same, as plain JSON for an API or the console."""
        return {"missing": list(self.missing), "unpaid_fen": self.unpaid_fen,
                "bills": [{"bill_no": b.bill_no, "unpaid_fen": b.unpaid_fen, "due_at": b.due_at.isoformat()}
                          for b in self.overdue_bills],
                "wait_until": self.wait_until.isoformat() if self.wait_until else None}


class RepairIncomplete(Conflict):
    """Repair cannot complete yet; nothing was changed. `repair` says exactly what is missing."""

    def __init__(self, repair: Repair) -> None:
        super().__init__(f"credit repair needs: {', '.join(repair.missing)}", reason=repair.missing[0], **repair.details())
        self.repair = repair


def last_overdue_payments(session: Session, member_ids: list[int]) -> dict[int, datetime]:
    """When each member last settled a bill that had gone past due."""
    return dict(session.execute(
        select(Bill.payer_id, func.max(Bill.paid_at))
        .where(Bill.payer_id.in_(member_ids), Bill.overdue_at.is_not(None), Bill.paid_at.is_not(None))
        .group_by(Bill.payer_id)
    ).all())


def settled_at(status_changed_at: datetime | None, last_overdue_paid: datetime | None) -> datetime | None:
    """Where a waiting period starts: the later of the suspension and the last overdue bill's payment."""
    return max((at for at in (status_changed_at, last_overdue_paid) if at is not None), default=None)


def commitment_renewed(member: Member) -> bool:
    """Signed (again) since the member's last status change, the suspension."""
    return (member.commitment_signed_at is not None and member.status_changed_at is not None
            and member.commitment_signed_at >= member.status_changed_at)


def assess(session: Session, policy: Policy, member: Member, now: datetime, *, approved: bool = False) -> Repair:
    rows = session.execute(
        # What each still asks for: principal and the interest the sweep has accrued on it (billing/interest.py).
        select(Bill.bill_no, STORED_OWED_FEN, Bill.due_at)
        .where(Bill.payer_id == member.id, Bill.status.in_(PAST_DUE)).order_by(Bill.due_at, Bill.id)
    ).all()
    bills = tuple(OverdueBill(bill_no, unpaid, due_at) for bill_no, unpaid, due_at in rows)
    rule, required = policy.repair, policy.repair_required
    last_paid = last_overdue_payments(session, [member.id]).get(member.id)
    return Repair(
        status=member.status,
        required=required,
        automatic=required and rule.automatic,
        overdue_bills=bills,
        wait_until=rule.waiting_until(settled_at(member.status_changed_at, last_paid), now) if required else None,
        commitment_needed=required and rule.renew_commitment and not commitment_renewed(member),
        approval_needed=required and rule.operator_approval and not approved,
    )
