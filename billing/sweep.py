"""`xinyi sweep`: bills past due, reminders, the overdue ladder and the outbox, once; then
the audit of the members it touched and of a rolling slice of the others.

Set-based and batched, so that a million bills take seconds and little memory: each
step moves at most BATCH rows per transaction and repeats until nothing is left.
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from sqlalchemy import select, union, update
from sqlalchemy.orm import Session

from billing import events, interest, outbox
from billing.audit import RollingAudit
from billing.core import Core
from billing.ladder import DAY, UNPAID, decide, facts_for, reassess_members
from billing.metrics import SWEEP_MOVES, SWEEP_SECONDS
from billing.policy import Policy
from storage.db import insert_unless_present
from storage.models import Bill, CreditLine, Member, Reminder

BATCH = 1000  # rows a sweep transaction moves: on SQLite, how long a request may queue behind one
# Sweeps of several workers may pick the same bills for a reminder at once (PostgreSQL reads
# without locks): the reminder's unique key decides, and only the rows inserted are sent.
_NEW_REMINDERS = {name: insert.returning(Reminder.bill_id) for name, insert in insert_unless_present(Reminder.__table__).items()}


@dataclass
class SweepReport:
    bills_overdue: int = 0
    bills_advanced: int = 0
    interest_accrued: int = 0  # bills whose interest was brought up to the sweep's time
    reminders: int = 0
    status_changes: int = 0
    reconciled: int = 0
    sent: int = 0
    failed: int = 0
    events_sent: int = 0
    events_failed: int = 0
    audited: int = 0  # members
    breaches: int = 0

    @property
    def quiet(self) -> bool:
        """Nothing moved, was sent or broke: at most the audit ran, and found nothing."""
        return not any(value for name, value in vars(self).items() if name != "audited")


async def sweep(
    core: Core,
    now: datetime | None = None,
    sender: outbox.Sender | None = None,
    reconcile: Callable[[], Awaitable[int]] | None = None,
    audit: RollingAudit | None = None,
    events: outbox.Sender | None = None,
) -> SweepReport:
    """`reconcile` settles trades whose notice is late; it runs first, so that money
    already paid at the gateway never counts as overdue. `audit`, kept by the caller from
    one sweep to the next, checks the invariants after it; a breach is logged and counted,
    and the sweep goes on. `sender` drains the notices to people, `events` the programme events."""
    started = core.clock.now()
    now = now or started
    report = SweepReport()
    touched: set[int] = set()  # members whose bills or status the sweep changed
    with SWEEP_SECONDS.time():
        if reconcile is not None:
            report.reconciled = await reconcile()
        report.bills_overdue = await _move_bills(core, now, "open", "overdue", Bill.due_at < now, "bill_overdue", touched)
        if core.policy.advance_after_days is not None:
            threshold = now - core.policy.advance_after_days * DAY
            report.bills_advanced = await _move_bills(core, now, "overdue", "advanced", Bill.due_at <= threshold, None,
                                                      touched)
        report.interest_accrued = await _accrue(core, now)
        report.reminders = await _remind(core, now)
        report.status_changes = await _run_ladder(core, now, touched)
    for move in ("reconciled", "bills_overdue", "bills_advanced", "interest_accrued", "reminders", "status_changes"):  # xinyi serve: reconciled apart
        SWEEP_MOVES.labels(move).inc(getattr(report, move))

    def moving_on() -> datetime:  # the outbox's time: the sweep's instant (travelled, with --now), at the clock's pace
        return now + (core.clock.now() - started)

    if sender is not None:
        report.sent, report.failed = await outbox.drain(core.db, sender, moving_on)
    if events is not None:
        report.events_sent, report.events_failed = await outbox.drain(core.db, events, moving_on, lane=outbox.EVENTS)
    if audit is not None:
        audited = await audit.run(core, touched)
        report.audited, report.breaches = audited.members, len(audited.breaches)
    return report


async def sweep_apart(core: Core, audit: RollingAudit | None = None) -> SweepReport:
    """`sweep(core, audit=audit)` on a thread of its own, with an event loop and a twin Database of
    its own, so that this loop (the web server's) is not held by the sweep's long statements and
    Python work; on SQLite its transactions queue in turn with this loop's. Its commits wake that
    thread's listeners only: the caller announces the notices it queued."""
    twin = core.db.twin()

    async def apart() -> SweepReport:
        try:
            return await sweep(dataclasses.replace(core, db=twin), audit=audit)
        finally:
            await twin.close()

    return await asyncio.to_thread(asyncio.run, apart())


async def _move_bills(core: Core, now: datetime, old: str, new: str, condition, notice: str | None,
                      touched: set[int]) -> int:
    """Bills from `old` to `new`, each with the member's `notice` (if any) and the programme's event."""
    stamp = {"overdue": {"overdue_at": now}, "advanced": {"advanced_at": now}}[new]
    event = {"overdue": "bill_overdue", "advanced": "advance_requested"}[new]
    moved = 0
    batch = select(Bill.id).where(Bill.status == old, condition).limit(BATCH).scalar_subquery()

    def move(session: Session) -> list:
        rows = session.execute(
            # The status is checked again outside the batch: a sweep in another worker may have
            # moved some of these bills while this one waited for their row locks.
            update(Bill).where(Bill.id.in_(batch), Bill.status == old).values(status=new, **stamp)
            .returning(Bill.id, Bill.bill_no, Bill.payer_id, Bill.self_pay_fen - Bill.paid_fen)
            .execution_options(synchronize_session=False)
        ).all()
        if notice is not None:
            outbox.enqueue_many(session, notice, [
                (f"{notice}:{bill_id}", payer_id, {"bill_no": bill_no, "unpaid_fen": unpaid})
                for bill_id, bill_no, payer_id, unpaid in rows
            ], now)
        if rows:
            events.record_bill_moves(session, core.pii, event,
                                     [(bill_id, payer_id, unpaid) for bill_id, _, payer_id, unpaid in rows], now)
        return rows

    while True:
        rows = await core.db.run(move)
        moved += len(rows)
        touched.update(payer_id for _, _, payer_id, _ in rows)
        if len(rows) < BATCH:
            return moved


async def _accrue(core: Core, now: datetime) -> int:
    """Interest up to `now` on every bill a whole day or more past its interest-free period (billing/interest.py),
    under the terms it was issued with, whatever the policy lists now."""
    accrued = 0
    while True:
        read = await core.db.run(interest.accrue_due, now, BATCH)
        accrued += read
        if read < BATCH:
            return accrued


def _reminder_due(policy: Policy, offset: int, now: datetime):
    """Which bills a reminder is due for. Offsets are hours after checkout for a bill due after
    `due_hours`; a bill due later (an institution's longer interest-free period) has each reminder
    but the one at checkout moved with its due time, so that "on the due day" stays on its due day."""
    if offset == 0:
        return Bill.issued_at <= now
    return Bill.due_at <= now + timedelta(hours=policy.due_hours - offset)


async def _remind(core: Core, now: datetime) -> int:
    """Each bill gets each reminder once; when several are due at once only the latest goes."""
    sent = 0
    for offset in sorted(core.policy.reminder_offsets_hours, reverse=True):
        later = select(Reminder.id).where(Reminder.bill_id == Bill.id, Reminder.offset_hours >= offset).exists()
        def remind(session: Session, offset: int = offset, later=later) -> tuple[int, int]:
            rows = session.execute(
                select(Bill.id, Bill.bill_no, Bill.payer_id, interest.STORED_OWED_FEN, Bill.due_at)
                .where(Bill.status.in_(UNPAID), _reminder_due(core.policy, offset, now), ~later)
                .limit(BATCH)
            ).all()
            if not rows:
                return 0, 0
            mine = set(session.scalars(_NEW_REMINDERS[session.get_bind().dialect.name], [
                {"bill_id": bill_id, "offset_hours": offset, "at": now} for bill_id, *_ in rows
            ]))
            outbox.enqueue_many(session, "bill_reminder", [
                (f"reminder:{bill_id}:{offset}", payer_id,
                 {"bill_no": bill_no, "unpaid_fen": unpaid, "due_at": due_at.isoformat(), "offset_hours": offset})
                for bill_id, bill_no, payer_id, unpaid, due_at in rows if bill_id in mine
            ], now)
            return len(rows), len(mine)

        while True:
            read, reminded = await core.db.run(remind)
            sent += reminded
            if read < BATCH:
                break
    return sent


async def _run_ladder(core: Core, now: datetime, touched: set[int]) -> int:
    """Facts for every member who could move are read in bulk without locks; only those
    whose stage changes are locked and re-read before anything is written."""
    candidates = sorted(await core.db.run(lambda session: session.scalars(union(
        select(Bill.payer_id).where(Bill.status.in_(UNPAID), Bill.due_at < now),
        select(Member.id).where(Member.status == "suspended"),
        select(CreditLine.member_id).where(CreditLine.used_fen > CreditLine.limit_fen),
    )).all()))

    def climb(session: Session, members: list[int]) -> tuple[int, list[int]]:
        facts = facts_for(session, core.policy, members, now)
        changing = [member_id for member_id, f in facts.items() if decide(core.policy, f) is not None]
        return (reassess_members(session, core, changing, now) if changing else 0), changing

    moved = 0
    for start in range(0, len(candidates), BATCH):
        batch_moved, changing = await core.db.run(climb, candidates[start:start + BATCH])
        moved += batch_moved
        touched.update(changing)
    return moved
