"""Member statuses and the only moves between them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from billing.errors import IllegalTransition
from billing.events import record_status_move
from billing.outbox import enqueue
from billing.pii import PiiCipher
from storage.models import Member, StatusChange
from storage.prepared import Prepared

_CHANGES = StatusChange.__table__
_NEW_CHANGE = Prepared(insert(_CHANGES).returning(_CHANGES.c.id))

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
    if to not in LEGAL_MOVES[member.status]:
        raise IllegalTransition(f"a {member.status} member cannot become {to}", current=member.status, to=to)
    # The change's id keys its notice (a member can move twice within one instant): written at
    # once, without an ORM flush of its own, which a sweep moving thousands paid for each.
    change_id = _NEW_CHANGE.execute(session, {"member_id": member.id, "from_status": member.status, "to_status": to,
                                              "reason": reason, "at": now}).scalar()
    enqueue(
        session,
        kind="status_changed",
        member_id=member.id,
        dedupe_key=f"status:{change_id}",
        payload={"from": member.status, "to": to, "reason": reason},
        now=now,
    )
    record_status_move(session, pii, member, to, reason, change_id, now)
    member.status = to
    member.status_changed_at = now
