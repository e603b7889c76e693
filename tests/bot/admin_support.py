"""Shared by the console tests: a programme of two hospitals with a member at each, an account
of every role, and a browser-like client that logs in and posts forms with their CSRF token."""
from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from sqlalchemy import select

from billing.clock import FixedClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.members import enrol as enrol_member
from billing.staff import add_staff
from billing.sweep import sweep
from storage.models import Hospital, Operator, OperatorStaff

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "billing"))  # the billing tests' builders
from helpers import billed_visit, checkout, visit_with_charges  # noqa: E402  (after the path it lives on)

PASSWORD = "a long enough password"
ZHANG_WEI = "110105198503120012"  # onboarded by community staff member 孙丽, billed at H1
ZHANG_XIUYING = "110105194908150027"  # walked in herself, billed at H2
STAFF_OPENID = "o-staff-sun"
ROLES = ("operator", "hospital", "community", "auditor")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@functools.cache
def password_hash() -> str:
    """PASSWORD's argon2 hash, made once for all the tests (each hash takes a second or more on a
    busy machine); `xinyi operator add` and billing.operators.add_operator are tested elsewhere."""
    return PasswordHasher().hash(PASSWORD)


@dataclass
class Programme:
    core: Core
    clock: FixedClock
    zhang_wei: int  # member ids
    zhang_xiuying: int
    h1_bill: str  # Zhang Wei's, advanced by the insurer
    h2_bill: str  # Zhang Xiuying's, open


async def seed_programme(core: Core, clock: FixedClock) -> Programme:
    await add_hospital(core, "H2", "第二医院", secret="hospital-secret-abcdefghijk")
    staff_id = await add_staff(core, STAFF_OPENID, "孙丽")
    versions = {"consent_version": core.policy.consent_version, "commitment_version": core.policy.commitment_version}
    zhang_wei = (await enrol_member(core, openid="o-zhang", name="张伟", id_number=ZHANG_WEI, phone="13812345678",
                                    staff_id=staff_id, **versions)).member_id
    zhang_xiuying = (await enrol_member(core, openid=None, name="张秀英", id_number=ZHANG_XIUYING, phone="13912340027",
                                        **versions)).member_id
    h1_bill = await billed_visit(core, ZHANG_WEI, 12000)
    clock.advance(timedelta(days=3))
    await sweep(core)  # Beijing: the insurer advances an overdue bill at once; Zhang Wei is suspended
    h2_bill = (await checkout(core, await visit_with_charges(core, ZHANG_XIUYING, 8000, hospital="H2")))["bill_no"]
    async with core.db.transaction() as session:
        h1 = await session.scalar(select(Hospital.id).where(Hospital.code == "H1"))
        for role in ROLES:
            operator = Operator(username=role, password_hash=password_hash(), role=role, active=True, failed_logins=0,
                                hospital_id=h1 if role == "hospital" else None, created_at=clock.now())
            session.add(operator)
            await session.flush()
            if role == "community":
                session.add(OperatorStaff(operator_id=operator.id, staff_id=staff_id))
    return Programme(core, clock, zhang_wei, zhang_xiuying, h1_bill, h2_bill)


class Browser:
    """One person's cookie jar on the console, posting forms as the pages draw them."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kwargs) -> tuple[int, str]:
        async with self.client.get(path, allow_redirects=False, **kwargs) as response:
            text = await response.text()
        if found := CSRF.search(text):
            self.csrf = found.group(1)
        return response.status, text

    async def post(self, path: str, data: dict[str, str], *, csrf: str | None = None) -> tuple[int, str, str]:
        """(status, page, Location); the token the last page carried unless `csrf` is given."""
        form = {**data} if csrf == "" else {**data, "csrf": self.csrf if csrf is None else csrf}
        async with self.client.post(path, data=form, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers.get("Location", "")

    async def log_in(self, username: str, password: str = PASSWORD) -> tuple[int, str, str]:
        self.client.session.cookie_jar.clear()
        await self.get("/admin/login")
        return await self.post("/admin/login", {"username": username, "password": password})

