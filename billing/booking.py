"""挂号 from chat: the slots of a hospital, booking a place and cancelling it.

A place is taken by one conditional statement (`booked < capacity`), so a slot is never
overbooked under any concurrency. The visit is opened and the registration fee goes on
credit through the hospital API's own work (`once_in`, under the booking's visit and charge
numbers), in the transaction that takes the place: a booking that cannot be charged, or
fails midway, leaves nothing behind.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.clock import CHINA_TIME
from billing.core import Core
from billing.errors import Conflict, NotEligible, NotFound
from billing.idempotency import once_in
from billing.visits import charge_cancelling, charge_posting, visit_opening
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
    rows = await core.db.run(lambda session: session.execute(
        _open_slots(core).with_only_columns(Hospital.code, Hospital.name).distinct().order_by(Hospital.name)).all())
    return [tuple(row) for row in rows]


async def open_departments(core: Core, hospital_code: str) -> list[str]:
    return await core.db.run(lambda session: list(session.scalars(
        _open_slots(core).with_only_columns(Slot.department).where(Hospital.code == hospital_code)
        .distinct().order_by(Slot.department))))


async def open_days(core: Core, hospital_code: str, department: str) -> list[date]:
    return await core.db.run(lambda session: list(session.scalars(
        _open_slots(core).with_only_columns(Slot.day)
        .where(Hospital.code == hospital_code, Slot.department == department).distinct().order_by(Slot.day))))


async def open_slots(core: Core, hospital_code: str, department: str, day: date) -> list[SlotView]:
    rows = await core.db.run(lambda session: session.execute(
        _open_slots(core).where(Hospital.code == hospital_code, Slot.department == department, Slot.day == day)
        .order_by(Slot.start, Slot.doctor)).all())
    return [_view(slot, hospital) for slot, hospital in rows]


async def book(core: Core, *, booker_id: int, patient_id: int, slot_id: int) -> BookingView:
    """Take a place for the booker or one of their family and charge the fee on credit, all in
    one transaction: a booking that cannot be charged, or that fails midway, leaves nothing."""
    return await core.db.run(_book, core, booker_id, patient_id, slot_id)


def _book(session: Session, core: Core, booker_id: int, patient_id: int, slot_id: int) -> BookingView:
    booking, patient, slot = _reserve(session, core, booker_id, patient_id, slot_id)
    visit = once_in(session, core, visit_opening(core, slot.hospital_code, {
        "visit_no": booking.visit_no, "id_number": core.pii.decrypt(patient.id_number_enc),
        "department": slot.department, "kind": "outpatient", "exclusion": None,
    }))
    if not visit["on_credit"]:
        raise NotEligible(f"the visit is not on credit ({visit['reason']})", reason=visit["reason"])
    if slot.fee_fen:
        once_in(session, core, charge_posting(core, slot.hospital_code, booking.visit_no, {
            "charge_no": booking.charge_no, "category": "registration",
            "name": f"挂号费 {slot.department} {slot.doctor}", "amount_fen": slot.fee_fen,
        }))
    return BookingView(booking.id, patient.id, patient.name, slot, booking.visit_no, booking.fee_fen, "booked")


def _reserve(session: Session, core: Core, booker_id: int, patient_id: int, slot_id: int) -> tuple[Booking, Member, SlotView]:
    now = core.clock.now()
    booker = session.get(Member, booker_id)
    if booker is None or booker.status != "active":
        raise NotEligible("only an active member can book", reason=booker.status if booker else "not_enrolled")
    patient = _patient(session, booker, patient_id)
    found = session.execute(_open_slots(core).where(Slot.id == slot_id)).first()
    if found is None:
        raise Conflict("this slot is full or closed", reason="slot_full")
    slot, hospital = found
    taken = session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.booked < Slot.capacity)
        .values(booked=Slot.booked + 1).execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise Conflict("this slot is full", reason="slot_full")
    visit_no = f"XYB{now.astimezone(CHINA_TIME):%y%m%d}{secrets.token_hex(5).upper()}"
    booking = Booking(slot_id=slot_id, booker_id=booker_id, patient_id=patient.id, status="booked",
                      visit_no=visit_no, charge_no=f"{visit_no}-REG", fee_fen=slot.fee_fen, created_at=now)
    session.add(booking)
    try:
        session.flush()
    except IntegrityError:  # the partial unique index: this patient already holds a place in the slot
        raise Conflict("already booked in this slot", reason="already_booked") from None
    return booking, patient, replace(_view(slot, hospital), left=slot.capacity - slot.booked - 1)


def _patient(session: Session, booker: Member, patient_id: int) -> Member:
    if patient_id != booker.id:
        link = session.scalar(select(FamilyLink.id).where(
            FamilyLink.payer_id == booker.id, FamilyLink.dependent_id == patient_id))
        if link is None:
            raise NotFound("no such family member", reason="not_family")
    return session.get(Member, patient_id)


async def upcoming(core: Core, booker_id: int) -> list[BookingView]:
    """Live bookings the member made that can still be cancelled (the slot has not begun)."""
    now = local_now(core)
    rows = await core.db.run(lambda session: session.execute(
        select(Booking, Slot, Hospital, Member.name)
        .join(Slot, Slot.id == Booking.slot_id).join(Hospital, Hospital.id == Slot.hospital_id)
        .join(Member, Member.id == Booking.patient_id)
        .where(Booking.booker_id == booker_id, Booking.status == "booked",
               or_(Slot.day > now.date(), and_(Slot.day == now.date(), Slot.start > now.strftime("%H:%M"))))
        .order_by(Slot.day, Slot.start, Booking.id)).all())
    return [BookingView(b.id, b.patient_id, name, _view(slot, hospital), b.visit_no, b.fee_fen, b.status)
            for b, slot, hospital, name in rows]


async def cancel_booking(core: Core, booker_id: int, booking_id: int) -> None:
    """退号 before the slot begins: the fee charge is cancelled and the place given back."""
    live = {b.id: b for b in await upcoming(core, booker_id)}
    if booking_id not in live:
        raise NotFound("no such booking to cancel", reason="no_booking")
    await core.db.run(_give_back, core, booking_id)


def _give_back(session: Session, core: Core, booking_id: int) -> None:
    """The fee cancelled, the place given back and the visit closed, in one transaction."""
    booking = session.scalar(select(Booking).where(Booking.id == booking_id).with_for_update())
    if booking.status != "booked":  # cancelled meanwhile (a second tap): nothing left to do
        return
    slot = session.get(Slot, booking.slot_id)
    if booking.fee_fen:
        code = session.scalar(select(Hospital.code).where(Hospital.id == slot.hospital_id))
        try:  # refusals raised before any write, so the transaction goes on
            once_in(session, core, charge_cancelling(core, code, booking.visit_no, booking.charge_no))
        except NotFound:  # the visit or its fee is not there: nothing to cancel
            pass
        except Conflict as exc:  # the hospital cancelled the fee first
            if exc.details.get("reason") not in ("already_released", "already_refunded"):
                raise
    booking.status, booking.cancelled_at = "cancelled", core.clock.now()
    session.execute(update(Slot).where(Slot.id == booking.slot_id).values(booked=Slot.booked - 1)
                    .execution_options(synchronize_session=False))
    _close_empty_visit(session, slot.hospital_id, booking.visit_no)


def _close_empty_visit(session: Session, hospital_id: int, visit_no: str) -> None:
    """A visit left with nothing on it is over: it must not count as a visit in progress."""
    visit = session.scalar(
        select(Visit).where(Visit.hospital_id == hospital_id, Visit.visit_no == visit_no).with_for_update()
    )
    if visit is None or visit.status != "open":
        return
    live = session.scalar(
        select(func.count()).select_from(Charge).where(Charge.visit_id == visit.id, Charge.status.in_(LIVE_CHARGES))
    )
    if not live:
        visit.status = "checked_out"
