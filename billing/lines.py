"""Credit lines: draw, release and what is left. Only these statements change `used_fen`."""
from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import CreditLimitExceeded, NotEligible
from storage.models import CreditLine, Member


async def available_fen(session: AsyncSession, line_id: int | None) -> int:
    if line_id is None:
        return 0
    line = await session.get(CreditLine, line_id, populate_existing=True)
    return max(line.limit_fen - line.used_fen, 0)


# One conditional statement, built once: it can never pass the limit, whatever runs beside it.
_HOLD = (
    update(CreditLine)
    .where(
        CreditLine.id == bindparam("line_id"),
        CreditLine.used_fen + bindparam("amount_fen") <= CreditLine.limit_fen,
        select(Member.id).where(Member.id == CreditLine.member_id, Member.status == "active").exists(),
    )
    .values(used_fen=CreditLine.used_fen + bindparam("amount_fen"))
    .returning(CreditLine.limit_fen - CreditLine.used_fen)
    .execution_options(synchronize_session=False)
)


async def hold(session: AsyncSession, line_id: int, amount_fen: int) -> int:
    """Draw `amount_fen` on a line of an active member; returns what is left on the line."""
    left = await session.scalar(_HOLD, {"line_id": line_id, "amount_fen": amount_fen})
    if left is not None:
        return left
    line = await session.get(CreditLine, line_id, populate_existing=True)
    owner = await session.get(Member, line.member_id, populate_existing=True)
    if owner.status != "active":
        raise NotEligible(f"the credit line is {owner.status}", reason=owner.status)
    available = max(line.limit_fen - line.used_fen, 0)
    raise CreditLimitExceeded(f"only {available} fen of credit is available", available_fen=available)


async def release(session: AsyncSession, line_id: int, amount_fen: int) -> None:
    if amount_fen:
        await session.execute(
            update(CreditLine).where(CreditLine.id == line_id)
            .values(used_fen=CreditLine.used_fen - amount_fen)
            .execution_options(synchronize_session=False)
        )
