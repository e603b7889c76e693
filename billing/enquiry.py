"""额度 enquiries: what a person may do on credit right now."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from billing.core import Core
from billing.identity import normalise_id_number
from billing.members import check_eligibility, member_by_id_number
from storage.models import CreditLine


async def eligibility_report(core: Core, id_number: str) -> dict[str, Any]:
    """For a hospital kiosk: may this person enrol, and if enrolled, how much is left."""
    number = normalise_id_number(id_number)
    verdict = await check_eligibility(core, number)
    answer = {"eligible": verdict.eligible, "reason": verdict.reason, "status": "none",
              "limit_fen": verdict.limit_fen, "available_fen": 0}
    async with core.db.transaction() as session:
        member = await session.run_sync(member_by_id_number, core, number)
        if member is None:
            return answer
        answer["status"] = member.status
        line = await session.scalar(
            select(CreditLine).where(CreditLine.member_id == member.id, CreditLine.kind == "outpatient")
        )
        if line is not None:
            answer["limit_fen"] = line.limit_fen
            if member.status == "active":
                answer["available_fen"] = max(line.limit_fen - line.used_fen, 0)
    return answer
