"""Community and hospital staff who onboard residents (one to one, on the resident's phone)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import Conflict, InvalidInput
from billing.validate import whole_number
from storage.models import Member, Staff
from storage.prepared import Prepared


async def add_staff(core: Core, openid: str, name: str) -> int:
    """Register a staff member by their WeChat openid; returns the staff id."""
    openid, name = openid.strip(), name.strip()
    if not openid or len(openid) > 64 or not openid.isascii() or not openid.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("the openid must be 1 to 64 letters, digits, - or _", field="openid")
    if not name or len(name) > 100:
        raise InvalidInput("the name must have 1 to 100 characters", field="name")
    now = core.clock.now()

    def work(session: Session) -> int:
        if session.scalar(select(Staff.id).where(Staff.openid == openid)) is not None:
            raise Conflict(f"staff {openid} exists already", reason="exists")
        staff = Staff(openid=openid, name=name, active=True, created_at=now)
        session.add(staff)
        session.flush()
        return staff.id

    return await core.db.run(work)


# --- onboarding in chat ------------------------------------------------------------------

SCENE_PREFIX = "staff:"


@dataclass(frozen=True)
class Onboarded:
    name: str
    enrolled_at: datetime | None
    status: str


def onboarding_scene(staff_id: int) -> str:
    """The QR scene (WeChat scene_str) that attributes an enrolment to this staff member."""
    return f"{SCENE_PREFIX}{staff_id}"


def onboarding_qr_url(core: Core, staff_id: int) -> str:
    """The page that shows the staff member's QR code; `sig` stops anyone minting codes for any id."""
    scene = onboarding_scene(staff_id)
    return f"{core.public_url.rstrip('/')}/qr/{scene}?sig={qr_signature(core, scene)}"


def qr_signature(core: Core, scene: str) -> str:
    return core.pii.lookup(f"qr:{scene}")[:32]


_STAFF = Staff.__table__
_ACTIVE_BY_OPENID = (_STAFF.c.openid == bindparam("openid")) & _STAFF.c.active.is_(True)
ACTIVE_STAFF_ID = select(_STAFF.c.id).where(_ACTIVE_BY_OPENID)  # also read with the conversation by handlers.engine
_ACTIVE_ID = Prepared(ACTIVE_STAFF_ID)


async def staff_by_openid(core: Core, openid: str) -> Staff | None:
    return await core.db.run(active_staff, openid)


def active_staff(session: Session, openid: str) -> Staff | None:
    """The active staff member with this openid, or None."""
    return session.scalar(select(Staff).where(_ACTIVE_BY_OPENID), {"openid": openid})


def active_staff_id(session: Session, openid: str) -> int | None:
    """The id of the active staff member with this openid, or None (every chat message asks)."""
    return _ACTIVE_ID.execute(session, {"openid": openid}).scalar()


async def staff_for_scene(core: Core, scene: str) -> Staff | None:
    """The active staff member a scanned QR scene names, or None for any other scene."""
    number = whole_number(scene.removeprefix(SCENE_PREFIX)) if scene.startswith(SCENE_PREFIX) else None
    if number is None:
        return None
    return await core.db.run(lambda session: session.scalar(select(Staff).where(Staff.id == number, Staff.active.is_(True))))


async def onboarded_by(core: Core, staff_id: int, limit: int = 20) -> tuple[int, list[Onboarded]]:
    """How many residents the staff member enrolled, and the latest of them."""
    def work(session: Session) -> tuple[int, list[Onboarded]]:
        total = session.scalar(select(func.count()).select_from(Member).where(Member.onboarded_by_staff_id == staff_id))
        rows = session.scalars(select(Member).where(Member.onboarded_by_staff_id == staff_id)
                               .order_by(Member.commitment_signed_at.desc(), Member.id.desc()).limit(limit))
        return total, [Onboarded(m.name, m.commitment_signed_at, m.status) for m in rows]

    return await core.db.run(work)
