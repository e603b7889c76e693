"""What the programme's partners take away: the insurer's overdue list and the credit office's
report list, as streams of rows with personal numbers masked.

Rows come from the database in keyset batches (bills by stage and due date, reports by outbox
id), each batch a short transaction of its own, and the event loop is handed back between
batches. So an export of a million bills keeps memory flat and never holds the loop, nor on
SQLite the writers' queue, for longer than one batch. Rows changed while an export runs show as
they are when their batch is read.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator, Sequence

from sqlalchemy import Row, Select, and_, func, or_, select

from billing.core import Core
from billing.interest import owed
from billing.errors import NotFound
from billing.events import CREDIT_REPORT_KEY
from billing.ladder import DAY, UNPAID
from billing.outbox import EVENT
from billing.pii import mask_id_number, mask_phone
from storage.models import Bill, Hospital, Member, Outbox, StatusChange, Visit

BATCH = 250  # rows a batch reads; with the writing of them, how long the loop is held at most
# The ladder writes a report as the programme event credit_report (billing.events): its outbox row.
REPORTS = (Outbox.kind == EVENT) & Outbox.dedupe_key.startswith(CREDIT_REPORT_KEY)


@dataclass(frozen=True)
class Scope:
    """What a reader may see: one hospital's bills (the hospital role), the members some
    community staff onboarded (the community role), within a date range (from inclusive, to
    exclusive; the due date of an overdue bill, the day a report was decided). None: no limit."""

    hospital: str | None = None
    staff_ids: frozenset[int] | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class OverdueRow:
    bill_no: str
    hospital_code: str
    hospital_name: str
    member_name: str
    id_number_masked: str
    phone_masked: str  # empty for a dependent without a phone
    member_status: str
    self_pay_fen: int
    paid_fen: int
    unpaid_fen: int
    due_at: datetime
    days_overdue: int
    bill_status: str  # open (past due, the sweep has not moved it yet), overdue or advanced
    advance_due_at: datetime | None  # when the policy has the insurer advance the bill; None: it never does
    advanced_at: datetime | None  # when the sweep asked the insurer for the advance
    interest_fen: int = 0  # accrued past the interest-free period up to the export's time (billing/interest.py)
    interest_paid_fen: int = 0


@dataclass(frozen=True)
class CreditReportRow:
    member_name: str
    id_number_masked: str
    phone_masked: str
    member_status: str  # now
    report: str  # the ladder rule's `report`: personal_credit_file, central_bank_credit_system, ...
    stage: str  # the stage the member was moved to when the report was decided
    ladder_reason: str  # the rule that matched, as the status change records it
    stage_since: datetime | None
    decided_at: datetime
    delivery: str  # the outbox entry's status: pending, sent, dead
    sent_at: datetime | None
    unpaid_bills: int  # now, within the scope's hospital
    unpaid_fen: int
    oldest_due_at: datetime | None
    days_overdue: int | None


async def overdue_bills(core: Core, now: datetime, scope: Scope = Scope(), *, batch: int = BATCH) -> AsyncIterator[OverdueRow]:
    """Unpaid bills past due at `now`: those the insurer advanced, those overdue, then those the
    sweep has not moved yet; oldest first within each. Each stage is read along the bills'
    (status, due_at) index, so a batch costs the same at the end of a million bills as at the start."""
    hospital_id = await _hospital_id(core, scope)
    advance_days = core.policy.advance_after_days
    for status in ("advanced", "overdue", "open"):
        query = (
            select(Bill.due_at, Bill.id, Bill.bill_no, Hospital.code.label("hospital_code"),
                   Hospital.name.label("hospital_name"), Member.name.label("member_name"), Member.id_number_enc,
                   Member.phone_enc, Member.status.label("member_status"), Bill.self_pay_fen, Bill.paid_fen, Bill.advanced_at, Bill.status,
                   Bill.daily_interest_ppm, Bill.interest_fen, Bill.interest_paid_fen, Bill.interest_through)
            .join(Visit, Visit.id == Bill.visit_id).join(Hospital, Hospital.id == Visit.hospital_id)
            .join(Member, Member.id == Bill.payer_id)
            .where(Bill.status == status, Bill.due_at < now)
        )
        query = _scoped(query, scope, hospital_id, Bill.due_at)
        async for rows in _batches(core, query, (Bill.due_at, Bill.id), batch):
            for row in rows:
                interest = owed(row, now)
                yield OverdueRow(
                    row.bill_no, row.hospital_code, row.hospital_name, row.member_name,
                    *_masked(core, row.id_number_enc, row.phone_enc), row.member_status, row.self_pay_fen, row.paid_fen, row.self_pay_fen - row.paid_fen, row.due_at,
                    (now - row.due_at) // DAY, status,
                    row.due_at + advance_days * DAY if advance_days is not None else None, row.advanced_at,
                    interest.interest_fen, interest.interest_paid_fen,
                )


async def credit_reports(core: Core, now: datetime, scope: Scope = Scope(), *, batch: int = BATCH
                         ) -> AsyncIterator[CreditReportRow]:
    """Every report the ladder decided, oldest first, with the member's unpaid bills as of `now`."""
    query = (
        select(Outbox.id, Outbox.member_id, Outbox.payload, Outbox.status, Outbox.created_at, Outbox.sent_at,
               Member.name, Member.id_number_enc, Member.phone_enc, Member.status)
        .join(Member, Member.id == Outbox.member_id)
        .where(REPORTS)
    )
    hospital_id = await _hospital_id(core, scope)
    query = _scoped(query, scope, hospital_id, Outbox.created_at, bills_of=Outbox.member_id)
    async for rows in _batches(core, query, (Outbox.id,), batch):
        member_ids = sorted({row.member_id for row in rows})
        owed = select(Bill.payer_id, func.count(), func.sum(Bill.self_pay_fen - Bill.paid_fen), func.min(Bill.due_at)) \
            .where(Bill.payer_id.in_(member_ids), Bill.status.in_(UNPAID)).group_by(Bill.payer_id)
        if hospital_id is not None:
            owed = owed.join(Visit, Visit.id == Bill.visit_id).where(Visit.hospital_id == hospital_id)
        moves, unpaid = await core.db.run(lambda session: (
            session.execute(select(StatusChange.member_id, StatusChange.to_status, StatusChange.reason, StatusChange.at)
                            .where(StatusChange.member_id.in_(member_ids)).order_by(StatusChange.at, StatusChange.id)).all(),
            {payer_id: (count, int(fen), oldest) for payer_id, count, fen, oldest in session.execute(owed)}))
        history: dict[int, list[tuple[str, str, datetime]]] = defaultdict(list)
        for member_id, to_status, reason, at in moves:
            history[member_id].append((to_status, reason, at))
        for _, member_id, event, delivery, decided_at, sent_at, name, id_number_enc, phone_enc, member_status in rows:
            report = event["data"]
            # The move the report came with: the latest to its stage up to the moment it was decided.
            move = next((m for m in reversed(history[member_id]) if m[0] == report["stage"] and m[2] <= decided_at), None)
            count, unpaid_fen, oldest = unpaid.get(member_id, (0, 0, None))
            yield CreditReportRow(
                name, *_masked(core, id_number_enc, phone_enc), member_status, report["report"], report["stage"],
                move[1] if move else "", move[2] if move else None, decided_at, delivery, sent_at,
                count, unpaid_fen, oldest, (now - oldest) // DAY if oldest is not None and oldest < now else None,
            )


def _scoped(query: Select, scope: Scope, hospital_id: int | None, dated, bills_of=None) -> Select:
    """`query` limited to the scope; `bills_of` (a member id column) when the rows are not bills
    themselves: then the hospital scope keeps members with a bill there."""
    if hospital_id is not None:
        if bills_of is None:
            query = query.where(Visit.hospital_id == hospital_id)
        else:
            query = query.where(
                select(Bill.id).join(Visit, Visit.id == Bill.visit_id)
                .where(Bill.payer_id == bills_of, Visit.hospital_id == hospital_id).exists()
            )
    if scope.staff_ids is not None:
        query = query.where(Member.onboarded_by_staff_id.in_(sorted(scope.staff_ids)))
    if scope.since is not None:
        query = query.where(dated >= scope.since)
    if scope.until is not None:
        query = query.where(dated < scope.until)
    return query


async def _hospital_id(core: Core, scope: Scope) -> int | None:
    if scope.hospital is None:
        return None
    hospital_id = await core.db.run(lambda session: session.scalar(select(Hospital.id).where(Hospital.code == scope.hospital)))
    if hospital_id is None:
        raise NotFound(f"no hospital with the code {scope.hospital!r}", field="hospital")
    return hospital_id


async def _batches(core: Core, query: Select, keys: tuple, size: int) -> AsyncIterator[Sequence[Row]]:
    """`query`'s rows in batches of `size` in the order of `keys` (its first columns, the last
    one unique), each batch read in a transaction of its own; the loop is handed back before each."""
    last = None
    while True:
        await asyncio.sleep(0)
        page = query if last is None else query.where(_after(keys, last))
        rows = await core.db.run(lambda session: session.execute(page.order_by(*keys).limit(size)).all())
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = tuple(rows[-1])[:len(keys)]


def _after(keys: tuple, last: tuple):
    """Past `last` in the order of `keys`. The first key is bounded on its own too, so that both
    SQLite and PostgreSQL start the index scan there instead of filtering from the beginning."""
    if len(keys) == 1:
        return keys[0] > last[0]
    first, second = keys
    return and_(first >= last[0], or_(first > last[0], second > last[1]))


def _masked(core: Core, id_number_enc: str, phone_enc: str | None) -> tuple[str, str]:
    phone = mask_phone(core.pii.decrypt(phone_enc)) if phone_enc else ""
    return mask_id_number(core.pii.decrypt(id_number_enc)), phone
