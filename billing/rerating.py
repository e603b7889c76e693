"""The line follows the registry's credit score (seed 004: "依托市民个人信用白鹭分进行价值分档"):
a re-read of the registry re-rates each member whose score now earns another tier — a new
outpatient limit, value-added services (an inpatient line without deposit) gained or lost — and
tells them the new tier.

A lower limit below what the line carries leaves the member over it; the policy's ladder says
what follows, at once (Xiamen: "超过其信用就医额度的 → 暂停", until paid back under it).
Policies with one flat limit have nothing to re-rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import InvalidInput
from billing.ladder import reassess_member
from billing.lines import set_limits
from billing.outbox import enqueue
from billing.registry import ResidentRegistry
from storage.models import CreditLine, Member

RATED_STATUSES = ("active", "suspended")  # members with a line in use; others get theirs at (re-)enrolment
BATCH = 500


@dataclass(frozen=True)
class Rerating:
    checked: int  # members whose registry record was read
    rerated: int  # of them, moved to another tier
    missing: int  # no score in the registry any more: left as they are, for a person to look at


@dataclass(frozen=True)
class _Tier:
    member_id: int
    limit_fen: int
    value_added: bool
    score: int


async def rerate(core: Core, registry: ResidentRegistry) -> Rerating:
    if not core.policy.tiers:
        raise InvalidInput("this programme's line does not follow a credit score: there is nothing to re-rate")
    members = await core.db.run(_rated_members)
    checked = rerated = missing = 0
    for start in range(0, len(members), BATCH):
        tiers = []
        for member_id, id_number_enc in members[start:start + BATCH]:
            resident = await registry.lookup(core.pii.decrypt(id_number_enc))
            if resident is None or resident.credit_score is None:
                missing += 1
                continue
            checked += 1
            limit_fen, value_added = core.policy.limit_for_score(resident.credit_score)
            tiers.append(_Tier(member_id, limit_fen, value_added, resident.credit_score))
        rerated += await core.db.run(_apply, core, tiers, core.clock.now())
    return Rerating(checked, rerated, missing)


def _rated_members(session: Session) -> list[tuple[int, bytes]]:
    return [tuple(row) for row in session.execute(
        select(Member.id, Member.id_number_enc).where(Member.status.in_(RATED_STATUSES)).order_by(Member.id))]


def _apply(session: Session, core: Core, tiers: list[_Tier], now: datetime) -> int:
    """Each member whose tier moved: the new limits and flag, a notice, and the ladder's verdict."""
    ids = [tier.member_id for tier in tiers]
    members = {m.id: m for m in session.scalars(
        select(Member).where(Member.id.in_(ids), Member.status.in_(RATED_STATUSES)).order_by(Member.id).with_for_update())}
    outpatient = dict(session.execute(
        select(CreditLine.member_id, CreditLine.limit_fen).where(CreditLine.member_id.in_(ids), CreditLine.kind == "outpatient")
    ).all())
    moved = 0
    for tier in tiers:
        member = members.get(tier.member_id)
        if member is None:
            continue
        limit_fen = core.policy.line_limit(tier.limit_fen, member.institution)  # capped by the institution chosen
        if (outpatient.get(member.id), member.value_added) == (limit_fen, tier.value_added):
            continue
        member.value_added = tier.value_added
        before = set_limits(session, core.policy, member, limit_fen, now)
        line = session.scalar(select(CreditLine).where(CreditLine.member_id == member.id, CreditLine.kind == "outpatient"))
        enqueue(session, kind="line_rerated", member_id=member.id,
                dedupe_key=f"line_rerated:{member.id}:{before['outpatient']}:{limit_fen}:{tier.value_added:d}:"
                           f"{now.isoformat()}", now=now,
                payload={"score": tier.score, "before_fen": before["outpatient"], "limit_fen": limit_fen,
                         "available_fen": max(limit_fen - line.used_fen, 0), "value_added": tier.value_added,
                         "inpatient_fen": core.policy.inpatient_limit(tier.value_added)})
        reassess_member(session, core, member.id, now)
        moved += 1
    return moved
