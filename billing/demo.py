"""The demo programme `xinyi serve` starts with in sandbox mode: a hospital with departments,
doctors and a week of slots from today, and a community staff member.

Residents come from the demo registry (billing/data/demo_registry.csv). Seeding is
idempotent: a second run on the same day changes nothing; on a later day it adds the days
that came into the week, and slots already there keep their bookings.
"""
from __future__ import annotations

from datetime import timedelta

from billing.booking import BOOKING_DAYS, local_now
from billing.core import Core
from billing.errors import Conflict
from billing.hospitals import add_hospital
from billing.schedule import SlotRow, import_schedule
from billing.staff import add_staff

DEMO_HOSPITAL = "DEMO"
DEMO_HOSPITAL_NAME = "信医示范医院"
# Known on purpose: the sandbox hospital panel and the README's signed example use it.
DEMO_HOSPITAL_SECRET = "xinyi-demo-hospital-secret"
DEMO_STAFF_OPENID = "o-demo-staff"
DEMO_STAFF_NAME = "孙丽"

# (department, doctor, registration fee in fen)
DOCTORS = (
    ("内科", "王建国 主任医师", 10000),
    ("内科", "李敏 医师", 5000),
    ("消化内科", "陈志强 副主任医师", 6000),
    ("心血管内科", "赵丽华 主任医师", 10000),
    ("呼吸内科", "孙海 医师", 5000),
    ("儿科", "周晓 医师", 5000),
    ("外科", "吴刚 副主任医师", 6000),
    ("眼科", "郑红 医师", 5000),
)
SESSIONS = (("08:00", "11:30"), ("13:30", "17:00"))
CAPACITY = 20


async def seed_demo(core: Core) -> None:
    try:
        await add_hospital(core, DEMO_HOSPITAL, DEMO_HOSPITAL_NAME, secret=DEMO_HOSPITAL_SECRET)
    except Conflict:
        pass
    today = local_now(core).date()
    rows = [
        SlotRow(0, department, doctor, today + timedelta(days=offset), start, end, CAPACITY, fee_fen)
        for offset in range(BOOKING_DAYS)
        for department, doctor, fee_fen in DOCTORS
        for start, end in SESSIONS
    ]
    await import_schedule(core, DEMO_HOSPITAL, rows, source="demo")
    try:
        await add_staff(core, DEMO_STAFF_OPENID, DEMO_STAFF_NAME)
    except Conflict:
        pass
