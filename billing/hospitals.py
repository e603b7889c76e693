"""Hospitals of the programme: each has a code and an API secret for signed requests."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import Conflict, InvalidInput, NotFound
from billing.validate import printable_ascii
from storage.models import Hospital


def hospital_by_code(session: Session, code: str) -> Hospital:
    # Not asked for a code no hospital can have: a NUL or a lone surrogate is an error in the driver.
    hospital = session.scalar(select(Hospital).where(Hospital.code == code)) if printable_ascii(code, 32) else None
    if hospital is None:
        raise NotFound(f"unknown hospital {code}", hospital=code)
    return hospital


def hospital_id(session: Session, core: Core, code: str) -> int:
    if code not in core.hospital_ids:
        core.hospital_ids[code] = hospital_by_code(session, code).id
    return core.hospital_ids[code]


async def add_hospital(core: Core, code: str, name: str, secret: str | None = None) -> str:
    """Register a hospital; returns its API secret (generated when not given)."""
    code, name = code.strip(), name.strip()
    if not code or len(code) > 32 or not code.isascii() or not code.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("the hospital code must be 1 to 32 letters, digits, - or _", field="code")
    if not name:
        raise InvalidInput("the hospital needs a name", field="name")
    secret = secret or secrets.token_urlsafe(32)
    if len(secret) < 16:
        raise InvalidInput("the API secret must have at least 16 characters", field="secret")
    hospital = Hospital(code=code, name=name, secret_enc=core.pii.encrypt(secret), created_at=core.clock.now())

    def work(session: Session) -> None:
        if session.scalar(select(Hospital.id).where(Hospital.code == code)) is not None:
            raise Conflict(f"hospital {code} exists already", reason="exists")
        session.add(hospital)

    await core.db.run(work)
    return secret


async def hospital_secret(core: Core, code: str) -> str | None:
    """The API secret of a hospital, or None for an unknown code. A secret never changes once
    added (there is no rotation yet), so each process reads it once."""
    if code not in core.hospital_secrets:
        try:
            hospital = await core.db.run(hospital_by_code, code)
        except NotFound:
            return None
        core.hospital_secrets[code] = core.pii.decrypt(hospital.secret_enc)
    return core.hospital_secrets[code]


async def hospital_code(core: Core, hospital_pk: int) -> str:
    return await core.db.run(lambda session: session.scalar(select(Hospital.code).where(Hospital.id == hospital_pk)))
