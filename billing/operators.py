"""Console accounts of the programme's staff: argon2 password hashes, roles and their scope,
and the login with a lockout after repeated failures.

Roles: `operator` sees and does everything; `hospital` sees one hospital's visits, bills
and payments; `community` sees the residents its staff members onboarded (the staff it
covers are listed in operator_staff); `auditor` reads everything and changes nothing.
"""
from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.auditlog import record
from billing.core import Core
from billing.errors import BillingError, Conflict, InvalidInput
from billing.hospitals import hospital_by_code
from storage.models import OPERATOR_ROLES, Operator, OperatorStaff, Staff

MAX_FAILURES = 5  # wrong passwords in a row before the account locks
LOCKOUT = timedelta(minutes=15)
PASSWORD_MIN_CHARS = 10
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that a wrong name takes as long as a
    wrong password (made at the first login, not at import: every CLI command imports this)."""
    return _HASHER.hash("no such operator")


class LockedOut(BillingError):
    code = "locked_out"
    http_status = 429

    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many failed logins: locked until {until.isoformat()}", until=until)
        self.until = until


class WrongCredentials(BillingError):
    code = "wrong_credentials"
    http_status = 401


@dataclass(frozen=True)
class Scope:
    """What a signed-in operator may see: everything, one hospital, or some staff's residents."""

    role: str
    hospital_id: int | None = None
    staff_ids: frozenset[int] = frozenset()

    @property
    def everything(self) -> bool:
        return self.role in ("operator", "auditor")


@dataclass(frozen=True)
class SignedIn:
    id: int
    username: str
    scope: Scope

    @property
    def role(self) -> str:
        return self.scope.role


def _check_username(username: str) -> str:
    username = username.strip()
    if not 1 <= len(username) <= 64 or not username.isascii() or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidInput("the username must be 1 to 64 letters, digits, '.', '-' or '_'", field="username")
    return username


async def add_operator(core: Core, username: str, password: str, role: str, *, hospital: str | None = None,
                       staff_openids: tuple[str, ...] = ()) -> int:
    """A new console account; `hospital` (a code) for role hospital, the staff it covers for role community."""
    username = _check_username(username)
    if role not in OPERATOR_ROLES:
        raise InvalidInput(f"the role must be one of {', '.join(OPERATOR_ROLES)}", field="role")
    if (role == "hospital") != (hospital is not None):
        raise InvalidInput("a hospital account, and only that, names its hospital (--hospital CODE)", field="hospital")
    if (role == "community") != bool(staff_openids):
        raise InvalidInput("a community account, and only that, names the staff it covers (--staff OPENID)", field="staff")
    if len(password) < PASSWORD_MIN_CHARS:
        raise InvalidInput(f"the password must have at least {PASSWORD_MIN_CHARS} characters", field="password")
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    return await core.db.run(_add_operator, username, password_hash, role, hospital, staff_openids, core.clock.now())


def _add_operator(session: Session, username: str, password_hash: str, role: str, hospital: str | None,
                  staff_openids: tuple[str, ...], now: datetime) -> int:
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise Conflict(f"operator {username} exists already", reason="exists")
    hospital_id = hospital_by_code(session, hospital).id if hospital is not None else None
    staff_ids = []
    for openid in staff_openids:
        staff_id = session.scalar(select(Staff.id).where(Staff.openid == openid.strip()))
        if staff_id is None:
            raise InvalidInput(f"no staff member has the openid {openid} (xinyi staff add)", field="staff")
        staff_ids.append(staff_id)
    operator = Operator(username=username, password_hash=password_hash, role=role, hospital_id=hospital_id,
                        active=True, failed_logins=0, created_at=now)
    session.add(operator)
    session.flush()
    session.add_all(OperatorStaff(operator_id=operator.id, staff_id=staff_id) for staff_id in set(staff_ids))
    return operator.id


async def set_password(core: Core, username: str, password: str) -> None:
    """A new password (the sandbox's seeded account gets one at each start); unlocks the account."""
    if len(password) < PASSWORD_MIN_CHARS:
        raise InvalidInput(f"the password must have at least {PASSWORD_MIN_CHARS} characters", field="password")
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    await core.db.run(_set_password, username, password_hash)


def _set_password(session: Session, username: str, password_hash: str) -> None:
    operator = session.scalar(select(Operator).where(Operator.username == username).with_for_update())
    if operator is None:
        raise InvalidInput(f"no operator {username}", field="username")
    operator.password_hash, operator.failed_logins, operator.locked_until = password_hash, 0, None


async def log_in(core: Core, username: str, password: str) -> SignedIn:
    """The account these credentials open. A wrong password counts against the account; the
    MAX_FAILURES-th in a row locks it for LOCKOUT, during which even the right one is refused."""
    username = username.strip()
    operator = await core.db.run(_active_operator, username)
    now = core.clock.now()
    if operator is not None and operator.locked_until is not None and operator.locked_until > now:
        raise LockedOut(operator.locked_until)
    if not await asyncio.to_thread(_verified, operator.password_hash if operator else _dummy_hash(), password):
        if operator is not None:
            await core.db.run(_count_failure, operator.id, now)
        raise WrongCredentials("wrong username or password")
    rehashed = (await asyncio.to_thread(_HASHER.hash, password)
                if _HASHER.check_needs_rehash(operator.password_hash) else None)
    await core.db.run(_logged_in, operator.id, rehashed, now)
    return await signed_in(core, operator.id)


def _active_operator(session: Session, username: str) -> Operator | None:
    return session.scalar(select(Operator).where(Operator.username == username, Operator.active.is_(True)))


def _logged_in(session: Session, operator_id: int, rehashed: str | None, now: datetime) -> None:
    operator = session.get(Operator, operator_id, with_for_update=True)
    if operator.locked_until is not None and operator.locked_until > now:  # locked by a failure meanwhile
        raise LockedOut(operator.locked_until)
    operator.failed_logins, operator.locked_until = 0, None
    if rehashed is not None:
        operator.password_hash = rehashed
    record(session, now, operator, "login", f"operator:{operator.id}", "")


def _verified(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _count_failure(session: Session, operator_id: int, now: datetime) -> None:
    operator = session.get(Operator, operator_id, with_for_update=True)
    operator.failed_logins += 1
    if operator.failed_logins >= MAX_FAILURES:
        operator.failed_logins, operator.locked_until = 0, now + LOCKOUT
        record(session, now, operator, "lockout", f"operator:{operator.id}", f"{MAX_FAILURES} wrong passwords",
               after={"locked_until": operator.locked_until.isoformat()})


async def signed_in(core: Core, operator_id: int) -> SignedIn:
    """The account as it is now (a role changed or an account disabled takes effect at once);
    LookupError when it is gone or disabled."""
    return await core.db.run(_signed_in, operator_id)


def _signed_in(session: Session, operator_id: int) -> SignedIn:
    operator = session.get(Operator, operator_id)
    if operator is None or not operator.active:
        raise LookupError(operator_id)
    staff = frozenset(session.scalars(select(OperatorStaff.staff_id).where(OperatorStaff.operator_id == operator_id)))
    return SignedIn(operator.id, operator.username, Scope(operator.role, operator.hospital_id, staff))
