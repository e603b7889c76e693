"""Doctors' schedules imported from a hospital's CSV into bookable slots.

The whole file is checked first and every bad row reported as `FILE:LINE: problem`;
one bad row imports nothing. A slot is keyed by (hospital, department, doctor, date,
start): importing it again updates it in place and keeps its bookings.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import InvalidInput
from billing.hospitals import hospital_by_code
from billing.money import MAX_AMOUNT_FEN
from storage.models import Slot

COLUMNS = ("department", "doctor", "date", "start", "end", "capacity", "fee_fen")
MAX_CAPACITY = 10_000
BATCH = 1000
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_WHOLE = re.compile(r"[0-9]+")


class ScheduleError(InvalidInput):
    """The file has bad rows; `problems` lists each as `FILE:LINE: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the schedule; nothing was imported", problems=problems)
        self.problems = problems


@dataclass(frozen=True)
class SlotRow:
    line: int
    department: str
    doctor: str
    day: date
    start: str
    end: str
    capacity: int
    fee_fen: int

    @property
    def key(self) -> tuple[str, str, date, str]:
        return self.department, self.doctor, self.day, self.start


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    unchanged: int


def read_schedule(path: Path) -> list[SlotRow]:
    """Every row of the file, checked; raises ScheduleError listing all the bad ones."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(name.strip() for name in reader.fieldnames or ()) != COLUMNS:
                raise ScheduleError([f"{path}:1: the header must be {','.join(COLUMNS)}"])
            reader.fieldnames = list(COLUMNS)
            rows, problems, first_seen = [], [], {}
            for row in reader:
                line = reader.line_num
                try:
                    slot = _check_row(line, row)
                except ValueError as exc:
                    problems.append(f"{path}:{line}: {exc}")
                    continue
                if slot.key in first_seen:
                    problems.append(f"{path}:{line}: the same slot as line {first_seen[slot.key]}")
                    continue
                first_seen[slot.key] = line
                rows.append(slot)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScheduleError([f"{path}: cannot read the file: {exc}"]) from None
    if problems:
        raise ScheduleError(problems)
    return rows


def _check_row(line: int, row: dict[str, str | None]) -> SlotRow:
    if None in row or any(value is None for value in row.values()):
        raise ValueError(f"expected {len(COLUMNS)} columns")
    department, doctor, day, start, end, capacity, fee = (row[name].strip() for name in COLUMNS)
    for name, value in (("department", department), ("doctor", doctor)):
        if not value or len(value) > 100:
            raise ValueError(f"{name} must have 1 to 100 characters")
    if not _DATE.fullmatch(day):
        raise ValueError(f"date must be YYYY-MM-DD, got {day!r}")
    try:
        parsed_day = date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"no such date {day}") from None
    for name, value in (("start", start), ("end", end)):
        if not _TIME.fullmatch(value):
            raise ValueError(f"{name} must be HH:MM (00:00 to 23:59), got {value!r}")
    if start >= end:
        raise ValueError(f"start {start} must be before end {end}")
    if not _WHOLE.fullmatch(capacity) or not 0 < int(capacity) <= MAX_CAPACITY:
        raise ValueError(f"capacity must be a whole number from 1 to {MAX_CAPACITY}, got {capacity!r}")
    if not _WHOLE.fullmatch(fee) or int(fee) > MAX_AMOUNT_FEN:
        raise ValueError(f"fee_fen must be a whole number of fen, 0 or more, got {fee!r}")
    return SlotRow(line, department, doctor, parsed_day, start, end, int(capacity), int(fee))


async def import_schedule(core: Core, hospital_code: str, rows: Iterable[SlotRow], source: str) -> ImportResult:
    """Upsert the slots in one transaction; a capacity below the bookings already taken stops it all.
    `source` names the file in problems."""
    return await core.db.run(_upsert, hospital_code, rows, source)


def _upsert(session: Session, hospital_code: str, rows: Iterable[SlotRow], source: str) -> ImportResult:
    added = updated = unchanged = 0
    hospital = hospital_by_code(session, hospital_code)
    for batch in _batches(rows):
        existing = {
            (s.department, s.doctor, s.day, s.start): s
            for s in session.scalars(select(Slot).where(
                Slot.hospital_id == hospital.id,
                tuple_(Slot.department, Slot.doctor, Slot.day, Slot.start).in_([r.key for r in batch]),
            ))
        }
        for row in batch:
            slot = existing.get(row.key)
            if slot is None:
                session.add(Slot(hospital_id=hospital.id, department=row.department, doctor=row.doctor, day=row.day,
                                 start=row.start, end=row.end, capacity=row.capacity, booked=0, fee_fen=row.fee_fen))
                added += 1
            elif (slot.end, slot.capacity, slot.fee_fen) == (row.end, row.capacity, row.fee_fen):
                unchanged += 1
            elif row.capacity < slot.booked:
                raise ScheduleError([f"{source}:{row.line}: capacity {row.capacity} is below the {slot.booked} already booked"])
            else:
                slot.end, slot.capacity, slot.fee_fen = row.end, row.capacity, row.fee_fen
                updated += 1
        session.flush()
    return ImportResult(added, updated, unchanged)


def _batches(rows: Iterable[SlotRow]) -> Iterable[list[SlotRow]]:
    batch: list[SlotRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
