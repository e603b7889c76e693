"""挂号 from chat: the slots of a hospital, booking a place and cancelling it.

A place is taken by one conditional statement (`booked < capacity`), so a slot is never
overbooked under any concurrency. The registration fee goes on credit through the
hospital API's own service functions, under the booking's visit and charge numbers, so
a retried step charges once. A booking that cannot be charged gives its place back.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import CHINA_TIME
from billing.core import Core
from billing.errors import BillingError, Conflict, NotEligible, NotFound
from billing.visits import cancel_charge, open_visit, post_charge
from storage.models import Booking, Charge, FamilyLink, Hospital, Member, Slot, Visit

BOOKING_DAYS = 7  # today and the six days after it
LIVE_CHARGES = ("held", "posted", "prepaid", "off_credit")


@dataclass(frozen=True)
class SlotView:
    id: int
    hospital_code: str
    hospital_name: str
    department: str
    doctor: str
    day: date
    start: str
    end: str
    left: int
    fee_fen: int


@dataclass(frozen=True)
class BookingView:
    id: int
    patient_id: int
    patient_name: str
    slot: SlotView
    visit_no: str
    fee_fen: int
    status: str


def local_now(core: Core) -> datetime:
    return core.clock.now().astimezone(CHINA_TIME)


def _open_slots(core: Core):
    """Slots with a free place that have not ended, from today to the booking horizon."""
    now = local_now(core)
    today = now.date()
    return (
        select(Slot, Hospital)
        .join(Hospital, Hospital.id == Slot.hospital_id)
        .where(
            Slot.booked < Slot.capacity,
            Slot.day < today + timedelta(days=BOOKING_DAYS),
            or_(Slot.day > today, and_(Slot.day == today, Slot.end > now.strftime("%H:%M"))),
        )
    )


def _view(slot: Slot, hospital: Hospital) -> SlotView:
    return SlotView(slot.id, hospital.code, hospital.name, slot.department, slot.doctor, slot.day, slot.start,
                    slot.end, slot.capacity - slot.booked, slot.fee_fen)


async def open_hospitals(core: Core) -> list[tuple[str, str]]:
    """(code, name) of the hospitals with a place to book, by name."""
    async with core.db.transaction() as session:
        rows = (await session.execute(_open_slots(core).with_only_columns(Hospital.code, Hospital.name).distinct()
                                      .order_by(Hospital.name))).all()
    return [tuple(row) for row in rows]


async def open_departments(core: Core, hospital_code: str) -> list[str]:
    async with core.db.transaction() as session:
        return list(await session.scalars(
            _open_slots(core).with_only_columns(Slot.department).where(Hospital.code == hospital_code)
            .distinct().order_by(Slot.department)
        ))


async def open_days(core: Core, hospital_code: str, department: str) -> list[date]:
    async with core.db.transaction() as session:
        return list(await session.scalars(
            _open_slots(core).with_only_columns(Slot.day)
            .where(Hospital.code == hospital_code, Slot.department == department).distinct().order_by(Slot.day)
        ))


async def open_slots(core: Core, hospital_code: str, department: str, day: date) -> list[SlotView]:
    async with core.db.transaction() as session:
        rows = (await session.execute(
            _open_slots(core).where(Hospital.code == hospital_code, Slot.department == department, Slot.day == day)
            .order_by(Slot.start, Slot.doctor)
        )).all()
    return [_view(slot, hospital) for slot, hospital in rows]


async def book(core: Core, *, booker_id: int, patient_id: int, slot_id: int) -> BookingView:
    """Take a place for the booker or one of their family, and charge the fee on credit."""
    booking, patient, slot = await _reserve(core, booker_id, patient_id, slot_id)
    try:
        answer = await open_visit(core, slot.hospital_code, {
            "visit_no": booking.visit_no, "id_number": core.pii.decrypt(patient.id_number_enc),
            "department": slot.department, "kind": "outpatient", "exclusion": None,
        })
        if not answer["on_credit"]:
            raise NotEligible(f"the visit is not on credit ({answer['reason']})", reason=answer["reason"])
        if slot.fee_fen:
            await post_charge(core, slot.hospital_code, booking.visit_no, {
                "charge_no": booking.charge_no, "category": "registration",
                "name": f"挂号费 {slot.department} {slot.doctor}", "amount_fen": slot.fee_fen,
            })
    except BillingError:
        await _give_back(core, booking.id)
        raise
    return BookingView(booking.id, patient.id, patient.name, slot, booking.visit_no, booking.fee_fen, "booked")


async def _reserve(core: Core, booker_id: int, patient_id: int, slot_id: int) -> tuple[Booking, Member, SlotView]:
    now = core.clock.now()
    try:
        async with core.db.transaction() as session:
            booker = await session.get(Member, booker_id)
            if booker is None or booker.status != "active":
                raise NotEligible("only an active member can book", reason=booker.status if booker else "not_enrolled")
            patient = await _patient(session, booker, patient_id)
            found = (await session.execute(_open_slots(core).where(Slot.id == slot_id))).first()
            if found is None:
                raise Conflict("this slot is full or closed", reason="slot_full")
            slot, hospital = found
            taken = await session.execute(
                update(Slot).where(Slot.id == slot_id, Slot.booked < Slot.capacity)
                .values(booked=Slot.booked + 1).execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:
                raise Conflict("this slot is full", reason="slot_full")
            visit_no = f"XYB{now.astimezone(CHINA_TIME):%y%m%d}{secrets.token_hex(5).upper()}"
            booking = Booking(slot_id=slot_id, booker_id=booker_id, patient_id=patient.id, status="booked",
                              visit_no=visit_no, charge_no=f"{visit_no}-REG", fee_fen=slot.fee_fen, created_at=now)
            session.add(booking)
            await session.flush()
            return booking, patient, replace(_view(slot, hospital), left=slot.capacity - slot.booked - 1)
    except IntegrityError:  # the partial unique index: this patient already holds a place in the slot
        raise Conflict("already booked in this slot", reason="already_booked") from None


async def _patient(session: AsyncSession, booker: Member, patient_id: int) -> Member:
    if patient_id != booker.id:
        link = await session.scalar(select(FamilyLink.id).where(
            FamilyLink.payer_id == booker.id, FamilyLink.dependent_id == patient_id))
        if link is None:
            raise NotFound("no such family member", reason="not_family")
    return await session.get(Member, patient_id)


async def upcoming(core: Core, booker_id: int) -> list[BookingView]:
    """Live bookings the member made that can still be cancelled (the slot has not begun)."""
    now = local_now(core)
    async with core.db.transaction() as session:
        rows = (await session.execute(
            select(Booking, Slot, Hospital, Member.name)
            .join(Slot, Slot.id == Booking.slot_id).join(Hospital, Hospital.id == Slot.hospital_id)
            .join(Member, Member.id == Booking.patient_id)
            .where(Booking.booker_id == booker_id, Booking.status == "booked",
                   or_(Slot.day > now.date(), and_(Slot.day == now.date(), Slot.start > now.strftime("%H:%M"))))
            .order_by(Slot.day, Slot.start, Booking.id)
        )).all()
    return [BookingView(b.id, b.patient_id, name, _view(slot, hospital), b.visit_no, b.fee_fen, b.status)
            for b, slot, hospital, name in rows]


async def cancel_booking(core: Core, booker_id: int, booking_id: int) -> None:
    """退号 before the slot begins: the fee charge is cancelled and the place given back."""
    live = {b.id: b for b in await upcoming(core, booker_id)}
    if booking_id not in live:
        raise NotFound("no such booking to cancel", reason="no_booking")
    await _give_back(core, booking_id)


async def _give_back(core: Core, booking_id: int) -> None:
    """Undo a booking step by step; each step is idempotent, so a crash midway can be re-run."""
    async with core.db.transaction() as session:
        booking = await session.get(Booking, booking_id)
        slot = await session.get(Slot, booking.slot_id)
        code = await session.scalar(select(Hospital.code).where(Hospital.id == slot.hospital_id))
    try:
        await cancel_charge(core, code, booking.visit_no, booking.charge_no)
    except NotFound:  # the visit or its fee was never recorded: nothing to cancel
        pass
    except Conflict as exc:
        if exc.details.get("reason") not in ("already_released", "already_refunded"):
            raise
    async with core.db.transaction() as session:
        cancelled = await session.execute(
            update(Booking).where(Booking.id == booking_id, Booking.status == "booked")
            .values(status="cancelled", cancelled_at=core.clock.now()).execution_options(synchronize_session=False)
        )
        if cancelled.rowcount == 1:
            await session.execute(update(Slot).where(Slot.id == booking.slot_id).values(booked=Slot.booked - 1)
                                  .execution_options(synchronize_session=False))
        await _close_empty_visit(session, slot.hospital_id, booking.visit_no)


async def _close_empty_visit(session: AsyncSession, hospital_id: int, visit_no: str) -> None:
    """A visit left with nothing on it is over: it must not count as a visit in progress."""
    visit = await session.scalar(
        select(Visit).where(Visit.hospital_id == hospital_id, Visit.visit_no == visit_no).with_for_update()
    )
    if visit is None or visit.status != "open":
        return
    live = await session.scalar(
        select(func.count()).select_from(Charge).where(Charge.visit_id == visit.id, Charge.status.in_(LIVE_CHARGES))
    )
    if not live:
        visit.status = "checked_out"
