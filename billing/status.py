"""Member statuses and the only moves between them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from billing.errors import IllegalTransition
from billing.events import record_status_moves
from billing.outbox import enqueue_many
from billing.pii import PiiCipher
from storage.models import Member, StatusChange

# Sorted by parameter order: the ids come back in the order of the moves, which key their notices.
_NEW_CHANGES = insert(StatusChange.__table__).returning(StatusChange.__table__.c.id, sort_by_parameter_order=True)

# The only status moves there are; anything else is a bug or a forged request.
LEGAL_MOVES: dict[str, frozenset[str]] = {
    "prospect": frozenset({"active"}),
    "active": frozenset({"suspended", "revoked", "blacklisted", "cancelled"}),
    "suspended": frozenset({"active", "revoked", "blacklisted"}),
    "revoked": frozenset({"blacklisted"}),
    "blacklisted": frozenset(),
    "cancelled": frozenset({"active"}),
}


def move_status(session: Session, member: Member, to: str, reason: str, now: datetime, *, pii: PiiCipher) -> None:
    """The one way a status changes: checked against LEGAL_MOVES, recorded, announced to the member
    and, where the programme reports it, to its partners (`pii` masks the member's numbers there)."""
    move_statuses(session, [(member, to, reason)], now, pii=pii)


def move_statuses(session: Session, moves: list[tuple[Member, str, str]], now: datetime, *, pii: PiiCipher) -> None:
    """`move_status` for each (member, to, reason), in one statement of each kind however many
    move: a sweep's ladder moves thousands, which a round trip or more each kept waiting on PostgreSQL."""
    for member, to, _ in moves:
        if to not in LEGAL_MOVES[member.status]:
            raise IllegalTransition(f"a {member.status} member cannot become {to}", current=member.status, to=to)
    if not moves:
        return
    # The change's id keys its notice (a member can move twice within one instant).
    change_ids = session.scalars(_NEW_CHANGES, [
        {"member_id": member.id, "from_status": member.status, "to_status": to, "reason": reason, "at": now}
        for member, to, reason in moves]).all()
    changes = [(member, to, reason, change_id) for (member, to, reason), change_id in zip(moves, change_ids, strict=True)]
    enqueue_many(session, "status_changed", [
        (f"status:{change_id}", member.id, {"from": member.status, "to": to, "reason": reason})
        for member, to, reason, change_id in changes], now)
    record_status_moves(session, pii, changes, now)
    for member, to, _ in moves:
        member.status = to
        member.status_changed_at = now
