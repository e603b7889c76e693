"""The programme's figures, from one set of queries: `xinyi stats`, the console's dashboard.

A `Scope` is a range of China days [start, end), optionally one hospital and optionally the
residents a set of community staff onboarded. Figures are counted in SQL, one aggregate a
figure group, in one read transaction that holds neither the server's event loop nor the
database's writers (`read_apart`).

What each figure counts:
- enrolled: members who signed the credit commitment in the range (per China day, per staff
  member who onboarded them; their QR scene is `staff:<id>`, the only scene members record).
- visits_on_credit: visits opened on credit in the range; patients_served: distinct patients.
- repeat_rate, as seed 000 publishes it (二次以上重复使用患者占比 81.08% of 累计服务患者): of
  the patients served on credit in the range, the share served on credit twice or more in it.
- credit_fen, overdue_*, advanced_*, recovered_fen: the bills issued in the range (a cohort, so
  that the overdue rate has its own denominator), followed up to now: overdue = fell past due
  unpaid (the ladder's count), advanced = the insurer paid the hospital, advanced_fen = what
  was unpaid when it did, recovered_fen = what the payer paid on them after it.
- repaid_fen: payments received in the range (per day, beside credit_fen per day of issue).
- suspended, revoked, blacklisted: members moved to that status in the range.
A rate whose denominator is 0 is None (JSON null): nothing to measure, not 0%.
Member figures (enrolment, status moves) belong to the programme, not a hospital: the hospital
filter narrows visits, bills and payments only. The staff filter narrows everything to the
residents those staff onboarded (visits by patient, bills and payments by payer).
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, TypeVar

from sqlalchemy import Select, and_, case, create_engine, event, func, literal, make_url, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from billing.clock import CHINA_TIME
from billing.core import Core
from billing.hospitals import hospital_by_code
from billing.ladder import UNPAID
from billing.staff import onboarding_scene
from storage.db import Database
from storage.models import (
    MEMBER_STATUSES, Bill, Hospital, Member, Outbox, Payment, Refund, Staff, StatusChange, Visit,
)

T = TypeVar("T")
LADDER_STAGES = ("bills_issued", "bills_overdue", "bills_advanced", "members_suspended", "members_revoked",
                 "members_blacklisted")
MEMBER_MOVES = ("suspended", "revoked", "blacklisted")


@dataclass(frozen=True)
class Scope:
    start: date  # the first China day counted
    end: date  # the day after the last one
    hospital: str | None = None  # a hospital code
    staff_ids: frozenset[int] | None = None  # the community staff whose residents are counted

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), CHINA_TIME)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time(), CHINA_TIME)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days)]


@dataclass(frozen=True)
class Day:
    day: date
    enrolled: int = 0
    credit_fen: int = 0  # self-pay of the bills issued that day
    repaid_fen: int = 0  # payments received that day


@dataclass(frozen=True)
class Onboarder:
    staff_id: int | None  # None: members who enrolled by themselves
    name: str
    scene: str | None
    enrolled: int


@dataclass(frozen=True)
class BillTotals:
    count: int = 0
    self_pay_fen: int = 0
    unpaid_fen: int = 0


@dataclass(frozen=True)
class OnCall:
    """The programme as it stands now, for whoever keeps it running; not narrowed by a scope."""

    members: dict[str, int]  # every member status, in MEMBER_STATUSES order
    bills: dict[str, BillTotals]  # the unpaid statuses (open, overdue, advanced), in that order
    outbox_pending: int
    outbox_dead: int
    refunds_pending: int
    refunds_pending_fen: int


@dataclass(frozen=True)
class Figures:
    scope: Scope
    enrolled: int
    onboarders: list[Onboarder]
    visits_on_credit: int
    patients_served: int
    patients_repeat: int
    repeat_rate: float | None
    bills_issued: int
    credit_fen: int
    repaid_fen: int
    overdue_bills: int
    overdue_fen: int  # self-pay of the bills that fell overdue
    overdue_unpaid_fen: int  # what of it is still unpaid now
    overdue_rate: float | None  # overdue_bills / bills_issued
    advanced_bills: int
    advanced_fen: int
    recovered_fen: int
    suspended: int
    revoked: int
    blacklisted: int
    days: list[Day]  # every day of the range, in order
    ladder: dict[str, int]  # LADDER_STAGES -> bills or members that reached it
    on_call: OnCall | None  # only for the whole programme (no hospital or staff filter)

    def as_json(self) -> dict:
        figures = asdict(self)
        scope = figures.pop("scope")
        figures["from"], figures["to"] = scope["start"].isoformat(), scope["end"].isoformat()
        figures["hospital"] = scope["hospital"]
        figures["staff_ids"] = sorted(scope["staff_ids"]) if scope["staff_ids"] is not None else None
        figures["days"] = [{**day, "day": day["day"].isoformat()} for day in figures["days"]]
        return figures


async def programme_figures(core: Core, scope: Scope) -> Figures:
    """The figures of `scope` as of `core.clock.now()`; an unknown hospital is NotFound."""
    return await read_apart(core.db, figures_of, scope, core.clock.now())


async def hospitals_to_choose(core: Core) -> list[tuple[str, str]]:
    """(code, name) of every hospital of the programme, by code: the dashboard's choice."""
    return await core.db.run(lambda session: [
        tuple(row) for row in session.execute(select(Hospital.code, Hospital.name).order_by(Hospital.code))])


async def programme_start(core: Core, fallback: date) -> date:
    """The China day the programme's first hospital joined: where cumulative figures begin."""
    first = await core.db.run(lambda session: session.scalar(select(func.min(Hospital.created_at))))
    return first.astimezone(CHINA_TIME).date() if first is not None else fallback - timedelta(days=1)


async def read_apart(db: Database, fn: Callable[..., T], *args) -> T:
    """`fn(session, *args)` in one read-only transaction, without holding this event loop or
    the database's writers. PostgreSQL (asyncpg) waits on the network, so it runs here. A SQLite
    scan would run on the loop (`sqlite+inline`) inside an IMMEDIATE transaction that holds the
    write lock: it runs on a thread instead, over a connection of its own in a plain deferred
    transaction, which WAL gives a snapshot that writers do not wait for."""
    if not db.is_sqlite:
        return await db.run(fn, *args)
    return await asyncio.to_thread(_read_snapshot, db.url, fn, args)


def _read_snapshot(url: str, fn: Callable[..., T], args: tuple) -> T:
    engine = create_engine(make_url(url).set(drivername="sqlite"), poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def take_transaction_control(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def begin_deferred(connection) -> None:
        connection.exec_driver_sql("BEGIN")

    try:
        with Session(engine) as session, session.begin():
            return fn(session, *args)
    finally:
        engine.dispose()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def utc_hour(session: Session, column):
    """The UTC hour of a stored time as 'YYYY-MM-DD HH' text: cheap to group by (a prefix of SQLite's
    stored text), and exact to fold into China days, China time being UTC+8 all year."""
    if session.bind.dialect.name == "sqlite":
        return func.substr(column, 1, 13)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")


def china_day_of(utc_hour_text: str) -> date:
    return datetime.strptime(utc_hour_text, "%Y-%m-%d %H").replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).date()


def figures_of(session: Session, scope: Scope, now: datetime) -> Figures:
    hospital_id = hospital_by_code(session, scope.hospital).id if scope.hospital is not None else None
    residents = (select(Member.id).where(Member.onboarded_by_staff_id.in_(scope.staff_ids))
                 if scope.staff_ids is not None else None)

    def within(column):
        """The range on `column`; only "has a value" when the range holds every value (cumulative
        figures), where a scan of the table is faster than walking its index, as SQLite would."""
        first = session.scalar(select(func.min(column)))
        last = session.scalar(select(func.max(column)))
        if first is not None and scope.start_at <= first and last < scope.end_at:
            return column.is_not(None) if column.expression.nullable else true()
        return and_(column >= scope.start_at, column < scope.end_at)

    def bills_in_scope(query: Select) -> Select:
        if hospital_id is not None:
            query = query.join(Visit, Visit.id == Bill.visit_id).where(Visit.hospital_id == hospital_id)
        return query.where(Bill.payer_id.in_(residents)) if residents is not None else query

    def payments_in_scope(query: Select) -> Select:
        narrowed = hospital_id is not None or residents is not None
        return bills_in_scope(query.join(Bill, Bill.id == Payment.bill_id)) if narrowed else query

    days = {day: Day(day) for day in scope.days()}

    def add_to_days(rows, field: str) -> None:
        for hour, value in rows:
            day = china_day_of(hour)
            days[day] = dataclasses.replace(days[day], **{field: getattr(days[day], field) + int(value)})

    # Enrolment, per day and per onboarding staff member.
    enrolled_day = utc_hour(session, Member.commitment_signed_at)
    members = select(enrolled_day, func.count()).where(within(Member.commitment_signed_at))
    if residents is not None:
        members = members.where(Member.onboarded_by_staff_id.in_(scope.staff_ids))
    add_to_days(session.execute(members.group_by(enrolled_day)).all(), "enrolled")
    by_staff = select(Staff.id, Staff.name, func.count(Member.id)).select_from(Member).outerjoin(
        Staff, Staff.id == Member.onboarded_by_staff_id).where(within(Member.commitment_signed_at))
    if residents is not None:
        by_staff = by_staff.where(Member.onboarded_by_staff_id.in_(scope.staff_ids))
    onboarders = sorted(
        (Onboarder(staff_id, name or "", onboarding_scene(staff_id) if staff_id is not None else None, count)
         for staff_id, name, count in session.execute(by_staff.group_by(Staff.id, Staff.name))),
        key=lambda o: (-o.enrolled, o.staff_id is None, o.staff_id or 0),
    )

    # Visits on credit and the patients who came back.
    visits = select(Visit.patient_id, func.count().label("visits")).where(Visit.on_credit.is_(True), within(Visit.created_at))
    if hospital_id is not None:
        visits = visits.where(Visit.hospital_id == hospital_id)
    if residents is not None:
        visits = visits.where(Visit.patient_id.in_(residents))
    per_patient = visits.group_by(Visit.patient_id).subquery()
    visit_count, patients, repeat = session.execute(select(
        func.coalesce(func.sum(per_patient.c.visits), 0), func.count(),
        func.coalesce(func.sum(case((per_patient.c.visits >= 2, 1), else_=0)), 0),
    )).one()

    # The bills issued in the range, followed up to now.
    overdue = or_(Bill.overdue_at.is_not(None), and_(Bill.status.in_(UNPAID), Bill.due_at < now))
    advanced = Bill.advanced_at.is_not(None)

    def when(condition, value=None):
        """The sum of `value` (a count without one) over the rows that meet `condition`."""
        return func.coalesce(func.sum(case((condition, literal(1) if value is None else value), else_=0)), 0)

    issued_day = utc_hour(session, Bill.issued_at)
    cohort = session.execute(bills_in_scope(select(
        issued_day, func.count(), func.sum(Bill.self_pay_fen), when(overdue), when(overdue, Bill.self_pay_fen),
        when(overdue, Bill.self_pay_fen - Bill.paid_fen), when(advanced), when(advanced, Bill.self_pay_fen - Bill.paid_fen),
    ).where(within(Bill.issued_at))).group_by(issued_day)).all()
    add_to_days([(day, credit) for day, _, credit, *_ in cohort], "credit_fen")
    issued, credit, overdue_count, overdue_fen, overdue_unpaid, advanced_count, advanced_unpaid = (
        sum(int(row[i]) for row in cohort) for i in range(1, 8))
    recovered = int(session.scalar(bills_in_scope(
        select(func.coalesce(func.sum(Payment.applied_fen), 0)).select_from(Bill).join(Payment, Payment.bill_id == Bill.id)
    ).where(advanced, within(Bill.issued_at), Payment.created_at >= Bill.advanced_at)))

    # Repayments received in the range.
    paid_day = utc_hour(session, Payment.created_at)
    add_to_days(session.execute(payments_in_scope(
        select(paid_day, func.sum(Payment.applied_fen)).select_from(Payment)
    ).where(within(Payment.created_at)).group_by(paid_day)).all(), "repaid_fen")

    # Members moved down the ladder in the range.
    moves = select(StatusChange.to_status, func.count(func.distinct(StatusChange.member_id))).where(
        within(StatusChange.at), StatusChange.to_status.in_(MEMBER_MOVES))
    if residents is not None:
        moves = moves.where(StatusChange.member_id.in_(residents))
    moved = dict(session.execute(moves.group_by(StatusChange.to_status)).all())

    whole_programme = hospital_id is None and residents is None
    return Figures(
        scope=scope,
        enrolled=sum(day.enrolled for day in days.values()),
        onboarders=onboarders,
        visits_on_credit=int(visit_count), patients_served=patients, patients_repeat=int(repeat),
        repeat_rate=_ratio(int(repeat), patients),
        bills_issued=issued, credit_fen=credit, repaid_fen=sum(day.repaid_fen for day in days.values()),
        overdue_bills=overdue_count, overdue_fen=overdue_fen, overdue_unpaid_fen=overdue_unpaid,
        overdue_rate=_ratio(overdue_count, issued),
        advanced_bills=advanced_count, advanced_fen=advanced_unpaid + recovered, recovered_fen=recovered,
        suspended=moved.get("suspended", 0), revoked=moved.get("revoked", 0), blacklisted=moved.get("blacklisted", 0),
        days=list(days.values()),
        ladder=dict(zip(LADDER_STAGES, (issued, overdue_count, advanced_count, *(moved.get(s, 0) for s in MEMBER_MOVES)))),
        on_call=on_call(session) if whole_programme else None,
    )


def on_call(session: Session) -> OnCall:
    members = dict(session.execute(select(Member.status, func.count()).group_by(Member.status)).all())
    # The unpaid bills only, through their index: paid ones are most of a million rows, and the
    # range's figures count them.
    bills = {status: BillTotals(count, int(self_pay), int(unpaid)) for status, count, self_pay, unpaid in session.execute(
        select(Bill.status, func.count(), func.sum(Bill.self_pay_fen), func.sum(Bill.self_pay_fen - Bill.paid_fen))
        .where(Bill.status.in_(UNPAID)).group_by(Bill.status)
    )}
    outbox = dict(session.execute(
        select(Outbox.status, func.count()).where(Outbox.status.in_(("pending", "dead"))).group_by(Outbox.status)
    ).all())
    refunds, refunds_fen = session.execute(
        select(func.count(), func.coalesce(func.sum(Refund.amount_fen), 0)).where(Refund.status == "pending")
    ).one()
    return OnCall(
        members={status: members.get(status, 0) for status in MEMBER_STATUSES},
        bills={status: bills.get(status, BillTotals()) for status in UNPAID},
        outbox_pending=outbox.get("pending", 0),
        outbox_dead=outbox.get("dead", 0),
        refunds_pending=refunds,
        refunds_pending_fen=int(refunds_fen),
    )
