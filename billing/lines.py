"""Credit lines: draw, release and what is left. Only these statements change `used_fen`.

Like the rest of the money paths these are plain functions on a Session, run inside
`Database.run`; an async caller reaches them through `session.run_sync`."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from billing.errors import CreditLimitExceeded, NotEligible
from billing.policy import Policy
from storage.models import CreditLine, Member
from storage.prepared import Prepared


def available_fen(session: Session, line_id: int | None) -> int:
    if line_id is None:
        return 0
    line = session.get(CreditLine, line_id, populate_existing=True)
    return max(line.limit_fen - line.used_fen, 0)


def set_limits(session: Session, policy: Policy, member: Member, outpatient_fen: int, now: datetime) -> dict[str, int]:
    """The member's lines as the policy grants them now (at enrolment, after a re-rating): the
    outpatient one, and an inpatient one where the policy gives it (to all, or as a value-added
    service to `member.value_added`); an inpatient line no longer granted is kept at 0, with what
    it carries. Returns each line's limit before, 0 for one made now."""
    limits = {"outpatient": outpatient_fen, "inpatient": policy.inpatient_limit(member.value_added)}
    existing = {line.kind: line for line in session.scalars(
        select(CreditLine).where(CreditLine.member_id == member.id).with_for_update())}
    before = {}
    for kind, limit in limits.items():
        line = existing.get(kind)
        before[kind] = line.limit_fen if line is not None else 0
        if line is not None:
            line.limit_fen = limit or 0
        elif limit is not None:
            session.add(CreditLine(member_id=member.id, kind=kind, limit_fen=limit, used_fen=0, created_at=now))
    session.flush()
    return before


def spendable_fen(line: CreditLine, owner_status: str) -> int:
    """What a line can still take, as the chat's 额度 and the hospital's eligibility both say it:
    nothing unless the line's owner is active (a hold would be refused)."""
    return max(line.limit_fen - line.used_fen, 0) if owner_status == "active" else 0


# One conditional statement, prepared once (Core, on the tables): it can never pass the limit,
# whatever runs beside it.
_LINES, _MEMBERS = CreditLine.__table__, Member.__table__
_HOLD = Prepared(
    update(_LINES)
    .where(
        _LINES.c.id == bindparam("line_id"),
        _LINES.c.used_fen + bindparam("amount_fen") <= _LINES.c.limit_fen,
        select(_MEMBERS.c.id).where(_MEMBERS.c.id == _LINES.c.member_id, _MEMBERS.c.status == "active").exists(),
    )
    .values(used_fen=_LINES.c.used_fen + bindparam("amount_fen"))
    .returning(_LINES.c.limit_fen - _LINES.c.used_fen)
)


def hold(session: Session, line_id: int, amount_fen: int) -> int:
    """Draw `amount_fen` on a line of an active member; returns what is left on the line."""
    left = _HOLD.execute(session, {"line_id": line_id, "amount_fen": amount_fen}).scalar()
    if left is not None:
        return left
    line = session.get(CreditLine, line_id, populate_existing=True)
    owner = session.get(Member, line.member_id, populate_existing=True)
    if owner.status != "active":
        raise NotEligible(f"the credit line is {owner.status}", reason=owner.status)
    available = max(line.limit_fen - line.used_fen, 0)
    raise CreditLimitExceeded(f"only {available} fen of credit is available", available_fen=available)


_RELEASE = Prepared(
    update(_LINES).where(_LINES.c.id == bindparam("line_id"))
    .values(used_fen=_LINES.c.used_fen - bindparam("amount_fen"))
    .returning(
        (_LINES.c.limit_fen - _LINES.c.used_fen).label("left_fen"),
        select(_MEMBERS.c.status).where(_MEMBERS.c.id == _LINES.c.member_id).scalar_subquery().label("owner_status"),
    )
)


def release(session: Session, line_id: int, amount_fen: int) -> Row:
    """Give `amount_fen` back to a line. Returns `left_fen`, what is left on it (negative while
    over the limit), and `owner_status`, its member's status, read in the same statement."""
    return _RELEASE.execute(session, {"line_id": line_id, "amount_fen": amount_fen}).one()


def true_up(session: Session, line_id: int, held_fen: int, self_pay_fen: int) -> Row:
    """At checkout the line carries the real self-pay in place of what the orders held. More than
    was held is drawn even past the limit (the patient was treated; the policy's ladder decides
    what follows); answers as `release` does."""
    return release(session, line_id, held_fen - self_pay_fen)
