"""The money and status invariants, checked over the rows of a few members (pure: no I/O).

A `Rows` holds some members' own rows and whatever those rows refer to elsewhere, so that
every sum a check needs is complete: their lines, the visits on those lines (or theirs,
with no line), those visits' charges, the bills they pay with the lines and visits those
name, the bills' payments and refunds, and their status history. Each row is checked
only with its owner (a visit's owner is its line's member, else its patient; a bill's is
its payer), so a run over all members in batches reports every breach once.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from billing import interest
from billing.ladder import UNPAID, Decision, bill_stage
from billing.policy import Policy
from billing.status import LEGAL_MOVES

Row = Any  # a result row with the columns billing.audit reads


@dataclass(frozen=True)
class Breach:
    invariant: str  # a stable name, the metric's label: "line_used", "bill_paid", ...
    text: str  # what disagrees, with the numbers
    member_id: int | None = None  # None for a visit of someone who is not a member
    bill_no: str | None = None
    charge_no: str | None = None
    line_id: int | None = None

    def __str__(self) -> str:
        member = "no member" if self.member_id is None else f"member {self.member_id}"
        return f"{self.invariant} ({member}): {self.text}"


@dataclass
class Rows:
    members: dict[int, str]  # the members checked: id -> status
    changes: Sequence[Row] = ()  # their status history, oldest first
    lines: dict[int, Row] = field(default_factory=dict)  # theirs, and any other their bills name
    visits: dict[int, Row] = field(default_factory=dict)  # theirs, and any other their bills name
    own_visits: set[int] = field(default_factory=set)  # the visits checked here: on their lines, or theirs with none
    charges: Sequence[Row] = ()  # every charge of `visits`
    bills: Sequence[Row] = ()  # the bills they pay
    payments: Sequence[Row] = ()  # of those bills
    refunds: Sequence[Row] = ()  # of those bills
    bill_twins: Sequence[Row] = ()  # (visit_id, count, first_id): visits of their bills with more than one bill
    payment_twins: Sequence[Row] = ()  # (source, payment_no, count, first_id): their payments' numbers recorded twice
    pending_moves: dict[int, Decision] = field(default_factory=dict)  # when swept: moves the facts call for


def check(rows: Rows, policy: Policy, now: datetime, *, swept: bool = False) -> list[Breach]:
    """swept: a sweep ran at `now` and nothing since, so every unpaid bill is at the stage
        `bill_stage` gives and no member's facts call for a move."""
    found: list[Breach] = []
    held_fen, posted_self_pay = _charges(rows, found)
    applied_fen, abandoned_fen = _payments(rows, found)
    unpaid_fen = _bills(rows, found, policy, now, posted_self_pay, applied_fen, abandoned_fen, swept)
    _lines(rows, found, held_fen, unpaid_fen)
    _statuses(rows, found)
    return found


def _charges(rows: Rows, found: list[Breach]) -> tuple[Counter[int], Counter[int]]:
    held_fen: Counter[int] = Counter()  # by line
    posted_self_pay: Counter[int] = Counter()  # by visit
    for c in rows.charges:
        visit = rows.visits[c.visit_id]
        if c.status == "held":
            held_fen[visit.line_id] += c.held_fen
        if c.status == "posted":
            posted_self_pay[c.visit_id] += c.self_pay_fen or 0
        if c.visit_id not in rows.own_visits:
            continue
        owner = visit.patient_id if visit.line_id is None else rows.lines[visit.line_id].member_id

        def breach(invariant: str, text: str) -> None:
            found.append(Breach(invariant, text, owner, charge_no=c.charge_no, line_id=visit.line_id))

        split = (c.insurance_fen, c.personal_account_fen, c.self_pay_fen)
        if c.status in ("held", "posted") and visit.line_id is None:
            breach("charge_line", f"charge {c.charge_no} is {c.status} on visit {visit.visit_no}, which has no credit line")
        if c.status == "off_credit" and visit.on_credit:
            breach("charge_line", f"charge {c.charge_no} is off_credit on visit {visit.visit_no}, which is on credit")
        if c.status == "held" and visit.status != "open":
            breach("charge_held", f"charge {c.charge_no} is still held on checked-out visit {visit.visit_no}")
        if c.status == "posted" and None in split:
            breach("charge_split", f"posted charge {c.charge_no} has no insurance split")
        if c.status in ("posted", "refunded") and None not in split and sum(split) != c.amount_fen:
            breach("charge_split", f"charge {c.charge_no}: split {split} adds up to {sum(split)}, not {c.amount_fen}")
    return held_fen, posted_self_pay


def _payments(rows: Rows, found: list[Breach]) -> tuple[Counter[int], Counter[int]]:
    bills = {b.id: b for b in rows.bills}
    payments = {p.id: p for p in rows.payments}

    def breach(invariant: str, bill_id: int, text: str) -> None:
        found.append(Breach(invariant, text, bills[bill_id].payer_id, bill_no=bills[bill_id].bill_no))

    applied_fen: Counter[int] = Counter()  # by bill
    abandoned_fen: Counter[int] = Counter()  # by bill
    payment_refund_fen: Counter[int] = Counter()
    payment_abandoned_fen: Counter[int] = Counter()  # refunds of abandoned items, by the payment that returns them
    for r in rows.refunds:
        bill_no = bills[r.bill_id].bill_no
        named = payments.get(r.payment_id)
        if r.payment_id is not None and (named is None or named.bill_id != r.bill_id):
            # Money goes back through a payment of the same bill; this also keeps a payment's refunds in its batch.
            breach("refund_payment", r.bill_id, f"refund {r.id} on bill {bill_no} names payment {r.payment_id} of another bill")
        if r.reason == "item_abandoned":
            abandoned_fen[r.bill_id] += r.amount_fen
            if r.payment_id is None:
                breach("refund_payment", r.bill_id,
                       f"refund of an abandoned item on bill {bill_no} names no payment to return it through")
            else:
                payment_abandoned_fen[r.payment_id] += r.amount_fen
        elif r.payment_id is not None:
            payment_refund_fen[r.payment_id] += r.amount_fen
    for source, payment_no, count, first_id in rows.payment_twins:
        if first_id in payments:  # reported with the first copy's bill
            breach("payment_once", payments[first_id].bill_id, f"payment {source}/{payment_no} is recorded {count} times")
    for p in rows.payments:
        applied_fen[p.bill_id] += p.applied_fen
        if p.applied_fen + payment_refund_fen[p.id] != p.amount_fen:
            breach("payment_balance", p.bill_id, f"payment {p.source}/{p.payment_no}: applied {p.applied_fen} + refunded "
                                                 f"{payment_refund_fen[p.id]} != received {p.amount_fen}")
        if payment_abandoned_fen[p.id] > p.applied_fen:
            breach("payment_balance", p.bill_id, f"payment {p.source}/{p.payment_no}: {payment_abandoned_fen[p.id]} "
                                                 f"refunded for abandoned items, more than the {p.applied_fen} it paid")
    return applied_fen, abandoned_fen


def _bills(rows: Rows, found: list[Breach], policy: Policy, now: datetime, posted_self_pay: Counter[int],
           applied_fen: Counter[int], abandoned_fen: Counter[int], swept: bool) -> Counter[int]:
    unpaid_fen: Counter[int] = Counter()  # by line
    by_id = {b.id: b for b in rows.bills}
    for b in rows.bills:
        def breach(invariant: str, text: str) -> None:
            found.append(Breach(invariant, text, b.payer_id, bill_no=b.bill_no, line_id=b.line_id))

        if b.status in UNPAID:  # the line carries principal only: interest never draws on it
            unpaid_fen[b.line_id] += b.self_pay_fen - b.paid_fen
        if not 0 <= b.paid_fen <= b.self_pay_fen:
            breach("bill_paid", f"bill {b.bill_no}: paid {b.paid_fen} outside 0..{b.self_pay_fen}")
        if b.self_pay_fen != posted_self_pay[b.visit_id]:
            breach("bill_items", f"bill {b.bill_no}: self_pay {b.self_pay_fen} != posted charges' self-pay "
                                 f"{posted_self_pay[b.visit_id]}")
        if b.paid_fen + b.interest_paid_fen != applied_fen[b.id] - abandoned_fen[b.id]:
            breach("bill_paid", f"bill {b.bill_no}: paid {b.paid_fen} + interest paid {b.interest_paid_fen} != applied "
                                f"{applied_fen[b.id]} - refunded for abandoned items {abandoned_fen[b.id]}")
        settled = b.paid_fen == b.self_pay_fen and b.interest_paid_fen == b.interest_fen
        if (b.status == "paid") != settled:
            breach("bill_status", f"bill {b.bill_no} is {b.status} with {b.paid_fen} of {b.self_pay_fen} paid, "
                                  f"interest {b.interest_paid_fen} of {b.interest_fen}")
        _interest(b, breach, now, swept)
        visit = rows.visits[b.visit_id]
        if visit.status != "checked_out" or visit.line_id != b.line_id:
            breach("bill_visit", f"bill {b.bill_no}: visit {visit.visit_no} is {visit.status} on line {visit.line_id}, "
                                 f"bill on {b.line_id}")
        if rows.lines[b.line_id].member_id != b.payer_id:
            breach("bill_payer", f"bill {b.bill_no}: payer {b.payer_id} does not own line {b.line_id}")
        if swept and b.status in UNPAID:
            stage = bill_stage(policy, self_pay_fen=b.self_pay_fen + b.interest_fen, paid_fen=b.paid_fen + b.interest_paid_fen,
                               due_at=b.due_at, now=now)
            if b.status != stage:
                breach("bill_stage", f"bill {b.bill_no} due {b.due_at.isoformat()} is {b.status} after the sweep, "
                                     f"should be {stage} at {now.isoformat()}")
    for visit_id, count, first_id in rows.bill_twins:
        if first_id in by_id:  # reported with the first of them
            first = by_id[first_id]
            found.append(Breach("bill_once", f"visit {rows.visits[visit_id].visit_no} has {count} bills", first.payer_id,
                                bill_no=first.bill_no))
    return unpaid_fen


def _interest(b: Row, breach, now: datetime, swept: bool) -> None:
    """Interest (billing/interest.py): paid no more than accrued, none without the terms that bear it,
    accrued in whole days after the due time; after a sweep, accrued up to it. (Not "never ahead of
    now": `xinyi sweep --now` may run ahead of the clock.)"""
    if not 0 <= b.interest_paid_fen <= b.interest_fen:
        breach("bill_interest", f"bill {b.bill_no}: interest paid {b.interest_paid_fen} outside 0..{b.interest_fen}")
    if b.interest_fen and not b.daily_interest_ppm:
        breach("bill_interest", f"bill {b.bill_no}: interest {b.interest_fen} on a bill that bears none")
    through = b.interest_through
    if through is not None and (through <= b.due_at or (through - b.due_at) % interest.DAY):
        breach("bill_interest", f"bill {b.bill_no}: interest accrued through {through.isoformat()}, not a whole number "
                                f"of days after its due time {b.due_at.isoformat()}")
    if swept and interest.accrual(b, now).through != b.interest_through:
        breach("bill_interest", f"bill {b.bill_no}: interest not accrued up to the sweep at {now.isoformat()}")


def _lines(rows: Rows, found: list[Breach], held_fen: Counter[int], unpaid_fen: Counter[int]) -> None:
    """A line may carry more than its limit (a checkout's real self-pay, a limit lowered since:
    the policy's ladder decides what follows), never less than nothing."""
    for line in rows.lines.values():
        if line.member_id not in rows.members:  # another member's, named by one of these bills
            continue
        if line.used_fen != held_fen[line.id] + unpaid_fen[line.id]:
            found.append(Breach("line_used", f"line {line.id}: used {line.used_fen} != held {held_fen[line.id]} "
                                             f"+ unpaid {unpaid_fen[line.id]}", line.member_id, line_id=line.id))
        if line.used_fen < 0:
            found.append(Breach("line_range", f"line {line.id}: used {line.used_fen} is below 0",
                                line.member_id, line_id=line.id))


def _statuses(rows: Rows, found: list[Breach]) -> None:
    last_status: dict[int, str] = {}
    for member_id, old, new in rows.changes:
        before = last_status.get(member_id, "prospect")
        if old != before:
            found.append(Breach("status_history", f"member {member_id}: a move from {old} follows a move to {before}",
                                member_id))
        if new not in LEGAL_MOVES.get(old, ()):
            found.append(Breach("status_move", f"member {member_id}: illegal move {old} -> {new}", member_id))
        last_status[member_id] = new
    for member_id, status in rows.members.items():
        if status != last_status.get(member_id, "prospect"):
            found.append(Breach("status_history", f"member {member_id} is {status}; the status history ends at "
                                                  f"{last_status.get(member_id, 'prospect')}", member_id))
    for member_id, decision in rows.pending_moves.items():
        found.append(Breach("status_ladder", f"member {member_id} is {rows.members[member_id]} after the sweep, but the "
                                             f"facts call for {decision.to} ({decision.reason})", member_id))
