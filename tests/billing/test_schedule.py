"""Schedule import on SQLite and PostgreSQL: checked rows, upsert by slot key, bookings kept."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, update

from billing import schedule
from billing.errors import NotFound
from billing.schedule import ScheduleError, SlotRow, import_schedule, read_schedule
from storage.models import Slot

HEADER = ",".join(schedule.COLUMNS)


def rows(*lines: str) -> list[SlotRow]:
    return [SlotRow(i, *values) for i, values in enumerate((_parse(line) for line in lines), start=2)]


def _parse(line: str) -> tuple:
    department, doctor, day, start, end, capacity, fee = line.split(",")
    return department, doctor, date.fromisoformat(day), start, end, int(capacity), int(fee)


async def stored(core) -> list[tuple]:
    async with core.db.transaction() as session:
        return [tuple(r) for r in await session.execute(
            select(Slot.doctor, Slot.day, Slot.start, Slot.end, Slot.capacity, Slot.booked, Slot.fee_fen)
            .order_by(Slot.day, Slot.start, Slot.doctor)
        )]


def test_read_schedule_accepts_a_spreadsheet_export(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(("\ufeff" + HEADER + "\r\n 内科 ,王医生,2026-03-09,08:00,12:00,30,5000\r\n\r\n").encode())
    assert read_schedule(path) == [SlotRow(2, "内科", "王医生", date(2026, 3, 9), "08:00", "12:00", 30, 5000)]


@pytest.mark.parametrize("line, problem", [
    ("内科,王医生,09/03/2026,08:00,12:00,30,5000", "date must be YYYY-MM-DD"),
    ("内科,王医生,20260309,08:00,12:00,30,5000", "date must be YYYY-MM-DD"),
    ("内科,王医生,2026-03-09,24:00,24:30,30,5000", "start must be HH:MM"),
    ("内科,王医生,2026-03-09,08:00,08:00,30,5000", "start 08:00 must be before end 08:00"),
    ("内科,王医生,2026-03-09,08:00,12:00,١٢,5000", "capacity must be a whole number"),
    ("内科,王医生,2026-03-09,08:00,12:00,10001,5000", "capacity must be a whole number from 1 to 10000"),
    ("内科,王医生,2026-03-09,08:00,12:00,30,100000000001", "fee_fen must be a whole number of fen"),
    ("内科,王医生,2026-03-09,08:00,12:00,30,5000,extra", "expected 7 columns"),
    ("内科," + "王" * 101 + ",2026-03-09,08:00,12:00,30,5000", "doctor must have 1 to 100 characters"),
])
def test_read_schedule_names_the_line_and_the_problem(tmp_path, line, problem):
    path = tmp_path / "s.csv"
    path.write_text(f"{HEADER}\n内科,李医生,2026-03-09,08:00,12:00,30,5000\n{line}\n", encoding="utf-8")
    with pytest.raises(ScheduleError) as raised:
        read_schedule(path)
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"{path}:3: {problem}")


async def test_import_upserts_by_slot_key_in_batches(make_core, monkeypatch):
    monkeypatch.setattr(schedule, "BATCH", 3)
    core = await make_core()
    week = [f"内科,王医生,2026-03-{day:02d},08:00,12:00,30,5000" for day in range(9, 16)]
    first = await import_schedule(core, "H1", rows(*week), source="week.csv")
    assert (first.added, first.updated, first.unchanged) == (7, 0, 0)

    changed = week[:5] + ["内科,王医生,2026-03-14,08:00,11:00,30,5000", "内科,王医生,2026-03-15,08:00,12:00,30,6000",
                          "内科,王医生,2026-03-15,13:00,17:00,10,5000"]
    second = await import_schedule(core, "H1", rows(*changed), source="week.csv")
    assert (second.added, second.updated, second.unchanged) == (1, 2, 5)
    slots = await stored(core)
    assert len(slots) == 8
    assert slots[-3:] == [
        ("王医生", date(2026, 3, 14), "08:00", "11:00", 30, 0, 5000),
        ("王医生", date(2026, 3, 15), "08:00", "12:00", 30, 0, 6000),
        ("王医生", date(2026, 3, 15), "13:00", "17:00", 10, 0, 5000),
    ]


async def test_bookings_survive_a_reimport_and_bound_the_capacity(make_core):
    core = await make_core()
    await import_schedule(core, "H1", rows("内科,王医生,2026-03-09,08:00,12:00,30,5000",
                                           "外科,李医生,2026-03-09,08:00,12:00,30,5000"), source="a.csv")
    async with core.db.transaction() as session:
        await session.execute(update(Slot).where(Slot.doctor == "王医生").values(booked=12))

    await import_schedule(core, "H1", rows("内科,王医生,2026-03-09,08:00,12:00,12,5000"), source="b.csv")
    assert (await stored(core))[1][4:6] == (12, 12)

    before = await stored(core)
    with pytest.raises(ScheduleError) as raised:
        await import_schedule(core, "H1", rows("外科,李医生,2026-03-09,08:00,12:00,5,0",
                                               "内科,王医生,2026-03-09,08:00,12:00,11,5000"), source="c.csv")
    assert raised.value.problems == ["c.csv:3: capacity 11 is below the 12 already booked"]
    assert await stored(core) == before  # the good first row was not kept either


async def test_an_unknown_hospital_imports_nothing(make_core):
    core = await make_core()
    with pytest.raises(NotFound, match="unknown hospital H9"):
        await import_schedule(core, "H9", rows("内科,王医生,2026-03-09,08:00,12:00,30,5000"), source="a.csv")
    assert await stored(core) == []
