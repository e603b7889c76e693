"""额度 enquiries: what a person may do on credit right now."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.identity import normalise_id_number
from billing.lines import spendable_fen
from billing.members import check_eligibility, member_by_id_number
from billing.visits import credit_for
from storage.models import CreditLine, Member

# Members who are in the programme's books but cannot be served on credit: `reason` says which.
NOT_SERVED = ("suspended", "revoked", "blacklisted", "cancelled")


async def eligibility_report(core: Core, id_number: str) -> dict[str, Any]:
    """For a hospital kiosk: can this person be served on credit now, and how much is left.
    `eligible` is true for a member whose line serves them, false with the reason for a
    suspended, revoked, blacklisted or cancelled one (or one with a malicious debt record the
    policy excludes, or whose paying relative is not in good standing); for a person not in
    the programme it says whether they may enrol. `line` says whose line an outpatient visit
    would draw on: "own", "family" (the payer's, the figure the payer's 额度 in the chat shows), or null."""
    number = normalise_id_number(id_number)
    verdict = await check_eligibility(core, number)
    answer = {"eligible": verdict.eligible, "reason": verdict.reason, "status": "none",
              "limit_fen": verdict.limit_fen, "available_fen": 0, "line": None}
    return await core.db.run(_report, core, number, answer)


def _report(session: Session, core: Core, number: str, answer: dict[str, Any]) -> dict[str, Any]:
    member = member_by_id_number(session, core, number)
    if member is None:
        return answer
    answer["status"] = member.status
    # The line a visit would draw on, chosen as the visit chooses it (billing.visits.credit_for).
    line_id, why_not = credit_for(session, core, member, "outpatient", None)
    line = session.get(CreditLine, line_id) if line_id is not None else None
    if line is None:  # no line serves them now: their own, if any, for its limit
        line = session.scalar(select(CreditLine).where(CreditLine.member_id == member.id, CreditLine.kind == "outpatient"))
        if line is not None:
            answer["limit_fen"] = line.limit_fen
        if member.status in NOT_SERVED:
            answer.update(eligible=False, reason=member.status)
        elif member.status != "prospect" or why_not == "payer_not_active":
            answer.update(eligible=False, reason=why_not)
        return answer
    answer.update(eligible=True, reason="ok")
    owner = member if line.member_id == member.id else session.get(Member, line.member_id)
    answer["line"] = "own" if owner.id == member.id else "family"
    answer["limit_fen"] = line.limit_fen
    answer["available_fen"] = spendable_fen(line, owner.status)
    return answer

