"""billing.booking: a slot is never overbooked under concurrency (SQLite and PostgreSQL), the
registration fee goes on credit once, a booking that cannot be charged or fails midway
leaves nothing behind, and 退号 releases the place and the fee."""
from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import func, select
from stdnum.cn import ric

from audit import audit
from billing import booking, members
from billing.core import Core
from billing.errors import Conflict, CreditLimitExceeded, NotEligible, NotFound
from billing.registry import COLUMNS, CsvRegistry
from billing.schedule import SlotRow, import_schedule
from storage.models import Booking, Charge, CreditLine, IdempotencyKey, Member, Slot, Visit

RESIDENTS = 12
TOMORROW = date(2026, 3, 3)  # the test clock stands at Monday 2026-03-02 17:00 in China


def resident_number(n: int) -> str:
    body = f"11010519800101{n:03d}"
    return next(body + c for c in "0123456789X" if ric.is_valid(body + c))


@pytest.fixture
async def core(make_core, tmp_path) -> Core:
    registry = tmp_path / "registry.csv"
    rows = [",".join(COLUMNS)] + [f"{resident_number(n)},居民{n},110000,normal,0," for n in range(RESIDENTS)]
    registry.write_text("\n".join(rows) + "\n", encoding="utf-8")
    core = await make_core("beijing-shijingshan")
    core.registry = CsvRegistry(registry)
    return core


async def enrol(core: Core, n: int) -> int:
    done = await members.enrol(core, openid=f"o-{n}", name=f"居民{n}", id_number=resident_number(n),
                               phone="13800138000", consent_version=core.policy.consent_version,
                               commitment_version=core.policy.commitment_version)
    return done.member_id


async def slot(core: Core, capacity: int = 3, fee_fen: int = 5000, day: date = TOMORROW, start: str = "08:00") -> int:
    await import_schedule(core, "H1", [SlotRow(2, "内科", "李医生", day, start, "12:00", capacity, fee_fen)], "test")
    async with core.db.transaction() as session:
        return await session.scalar(select(Slot.id).where(Slot.day == day, Slot.start == start))


async def booked(core: Core, slot_id: int) -> int:
    async with core.db.transaction() as session:
        return (await session.get(Slot, slot_id)).booked


async def used(core: Core, member_id: int) -> int:
    async with core.db.transaction() as session:
        return await session.scalar(select(CreditLine.used_fen).where(CreditLine.member_id == member_id))


async def test_a_slot_is_never_overbooked(core):
    slot_id = await slot(core, capacity=3)
    people = [await enrol(core, n) for n in range(10)]
    results = await asyncio.gather(*(booking.book(core, booker_id=p, patient_id=p, slot_id=slot_id) for p in people),
                                   return_exceptions=True)
    made = [r for r in results if isinstance(r, booking.BookingView)]
    refused = [r for r in results if not isinstance(r, booking.BookingView)]
    assert len(made) == 3 and await booked(core, slot_id) == 3
    assert all(isinstance(e, Conflict) and e.details["reason"] == "slot_full" for e in refused), refused
    assert sorted([await used(core, p) for p in people]) == [0] * 7 + [5000] * 3
    await audit(core)


async def test_the_same_patient_holds_one_place_per_slot(core):
    slot_id = await slot(core)
    me = await enrol(core, 0)
    await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    with pytest.raises(Conflict) as refused:
        await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    assert refused.value.details["reason"] == "already_booked"
    assert await booked(core, slot_id) == 1 and await used(core, me) == 5000


async def nothing_left(core: Core, slot_id: int, member_id: int) -> None:
    assert await booked(core, slot_id) == 0 and await used(core, member_id) == 0
    async with core.db.transaction() as session:
        for model in (Booking, Visit, Charge, IdempotencyKey):
            assert await session.scalar(select(func.count()).select_from(model)) == 0, model


async def test_a_fee_the_line_cannot_carry_leaves_nothing_behind(core):
    slot_id = await slot(core, fee_fen=250_000)  # above the 2000-yuan Beijing line
    me = await enrol(core, 0)
    with pytest.raises(CreditLimitExceeded):
        await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    await nothing_left(core, slot_id, me)
    await audit(core)


async def test_a_booking_that_fails_midway_leaves_nothing_behind(core, monkeypatch):
    slot_id = await slot(core)
    me = await enrol(core, 0)

    def broken(*args):  # the process dies, or the database fails, after the visit is open
        raise ConnectionError("lost the database")

    monkeypatch.setattr(booking, "charge_posting", broken)
    with pytest.raises(ConnectionError):
        await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    await nothing_left(core, slot_id, me)
    monkeypatch.undo()
    made = await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)  # tried again: booked once
    assert made.status == "booked" and await booked(core, slot_id) == 1 and await used(core, me) == 5000
    await audit(core)


async def test_a_patient_off_credit_leaves_nothing_behind(core):
    slot_id = await slot(core)
    me, spouse = await enrol(core, 0), await enrol(core, 1)
    await members.bind_dependent(core, me, "spouse", "居民1", resident_number(1))
    async with core.db.transaction() as session:
        (await session.get(Member, spouse)).status = "suspended"  # their own overdue bill: no credit anywhere
    with pytest.raises(NotEligible) as refused:
        await booking.book(core, booker_id=me, patient_id=spouse, slot_id=slot_id)
    assert refused.value.details["reason"] == "suspended"
    await nothing_left(core, slot_id, me)


async def test_only_the_booker_and_their_family(core):
    slot_id = await slot(core)
    me, stranger = await enrol(core, 0), await enrol(core, 1)
    with pytest.raises(NotFound):
        await booking.book(core, booker_id=me, patient_id=stranger, slot_id=slot_id)
    await members.cancel_agreement(core, stranger)
    with pytest.raises(NotEligible):
        await booking.book(core, booker_id=stranger, patient_id=stranger, slot_id=slot_id)
    assert await booked(core, slot_id) == 0


async def test_cancel_releases_the_place_and_the_fee_once(core, clock):
    slot_id = await slot(core)
    me = await enrol(core, 0)
    made = await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    assert [b.id for b in await booking.upcoming(core, me)] == [made.id]
    await booking.cancel_booking(core, me, made.id)
    assert await booked(core, slot_id) == 0 and await used(core, me) == 0
    with pytest.raises(NotFound):
        await booking.cancel_booking(core, me, made.id)
    await core.db.run(booking._give_back, core, made.id)  # a second tap that got past the list changes nothing
    assert await booked(core, slot_id) == 0
    async with core.db.transaction() as session:
        charge = await session.scalar(select(Charge).where(Charge.charge_no == made.visit_no + "-REG"))
    assert charge.status == "released"
    await audit(core)


async def test_two_cancels_at_once_give_the_place_back_once(core):
    slot_id = await slot(core)
    me = await enrol(core, 0)
    made = await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    results = await asyncio.gather(*(booking.cancel_booking(core, me, made.id) for _ in range(2)), return_exceptions=True)
    assert all(r is None or isinstance(r, NotFound) for r in results), results
    assert await booked(core, slot_id) == 0 and await used(core, me) == 0
    await audit(core)


async def test_a_fee_the_hospital_cancelled_first_still_lets_the_booking_go(core):
    from billing.visits import cancel_charge

    slot_id = await slot(core)
    me = await enrol(core, 0)
    made = await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    await cancel_charge(core, "H1", made.visit_no, made.visit_no + "-REG")
    await booking.cancel_booking(core, me, made.id)
    assert await booked(core, slot_id) == 0 and await used(core, me) == 0 and await booking.upcoming(core, me) == []
    async with core.db.transaction() as session:
        assert (await session.scalar(select(Visit))).status == "checked_out"
    await audit(core)


async def test_a_booking_cannot_be_cancelled_once_its_slot_began(core, clock):
    slot_id = await slot(core)
    me = await enrol(core, 0)
    made = await booking.book(core, booker_id=me, patient_id=me, slot_id=slot_id)
    clock.advance(hours=15, minutes=1)  # Tuesday 08:01 in China
    assert await booking.upcoming(core, me) == []
    with pytest.raises(NotFound):
        await booking.cancel_booking(core, me, made.id)
    assert await used(core, me) == 5000


async def test_what_is_offered(core, clock):
    await slot(core, capacity=1, day=date(2026, 3, 2))  # this morning: over by 17:00
    await import_schedule(core, "H1", [
        SlotRow(2, "内科", "李医生", date(2026, 3, 2), "18:00", "20:00", 1, 0),  # tonight: open
        SlotRow(3, "外科", "周医生", date(2026, 3, 9), "08:00", "12:00", 1, 0),  # a week ahead: not yet
        SlotRow(4, "骨科", "陈医生", date(2026, 3, 8), "08:00", "12:00", 1, 0),
    ], "test")
    assert await booking.open_hospitals(core) == [("H1", "测试医院")]
    assert await booking.open_departments(core, "H1") == ["内科", "骨科"]
    assert await booking.open_days(core, "H1", "内科") == [date(2026, 3, 2)]
    me = await enrol(core, 0)
    (only,) = await booking.open_slots(core, "H1", "骨科", date(2026, 3, 8))
    await booking.book(core, booker_id=me, patient_id=me, slot_id=only.id)
    assert await booking.open_departments(core, "H1") == ["内科"]  # a full slot is not offered
