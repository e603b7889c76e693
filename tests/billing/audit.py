"""The invariant auditor: reads the whole database and recomputes every cached figure
from the facts it summarises (TigerBeetle-style: check after every step, not at the end).

`await audit(core)` raises AssertionError listing each broken invariant with the row
and the numbers that disagree. Import it as `from audit import audit` (pytest puts this
folder on sys.path).
"""
from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from billing.core import Core
from billing.ladder import UNPAID, bill_stage, decide, facts_for
from billing.status import LEGAL_MOVES
from storage.models import Bill, Charge, CreditLine, Member, Payment, Refund, StatusChange, Visit

MAX_REPORTED = 20


async def audit(core: Core, *, swept: bool = False, limit_lowered: bool = False) -> None:
    """Check every invariant of the money and status tables.

    swept: a sweep ran at `core.clock.now()` and nothing since, so every unpaid bill is at
        the stage `bill_stage` gives and no member's facts call for a move.
    limit_lowered: a test lowered a limit, so a line may carry more than its limit.
    """
    async with core.db.transaction() as session:
        lines = (await session.execute(select(CreditLine.id, CreditLine.member_id, CreditLine.limit_fen, CreditLine.used_fen))).all()
        visits = (await session.execute(select(Visit.id, Visit.visit_no, Visit.line_id, Visit.on_credit, Visit.status))).all()
        charges = (await session.execute(select(
            Charge.id, Charge.charge_no, Charge.visit_id, Charge.amount_fen, Charge.status,
            Charge.insurance_fen, Charge.personal_account_fen, Charge.self_pay_fen,
        ))).all()
        bills = (await session.execute(select(
            Bill.id, Bill.bill_no, Bill.visit_id, Bill.payer_id, Bill.line_id, Bill.self_pay_fen, Bill.paid_fen,
            Bill.status, Bill.due_at,
        ))).all()
        payments = (await session.execute(select(Payment.id, Payment.source, Payment.payment_no, Payment.bill_id,
                                                 Payment.amount_fen, Payment.applied_fen))).all()
        refunds = (await session.execute(select(Refund.bill_id, Refund.payment_id, Refund.amount_fen, Refund.reason))).all()
        members = dict((await session.execute(select(Member.id, Member.status))).all())
        changes = (await session.execute(
            select(StatusChange.member_id, StatusChange.from_status, StatusChange.to_status).order_by(StatusChange.id)
        )).all()
        pending_moves = {}
        if swept and members:
            facts = await session.run_sync(facts_for, core.policy, sorted(members), core.clock.now())
            pending_moves = {m: d for m, f in facts.items() if (d := decide(core.policy, f)) is not None}

    problems: list[str] = []
    visit_by_id = {v.id: v for v in visits}
    line_by_id = {line.id: line for line in lines}

    held_fen: Counter[int] = Counter()
    posted_self_pay: Counter[int] = Counter()  # by visit
    for c in charges:
        visit = visit_by_id[c.visit_id]
        split = (c.insurance_fen, c.personal_account_fen, c.self_pay_fen)
        if c.status in ("held", "posted") and visit.line_id is None:
            problems.append(f"charge {c.charge_no} is {c.status} on visit {visit.visit_no}, which has no credit line")
        if c.status == "off_credit" and visit.on_credit:
            problems.append(f"charge {c.charge_no} is off_credit on visit {visit.visit_no}, which is on credit")
        if c.status == "held":
            held_fen[visit.line_id] += c.amount_fen
            if visit.status != "open":
                problems.append(f"charge {c.charge_no} is still held on checked-out visit {visit.visit_no}")
        if c.status == "posted":
            posted_self_pay[c.visit_id] += c.self_pay_fen or 0
            if None in split:
                problems.append(f"posted charge {c.charge_no} has no insurance split")
        if c.status in ("posted", "refunded") and None not in split and sum(split) != c.amount_fen:
            problems.append(f"charge {c.charge_no}: split {split} adds up to {sum(split)}, not {c.amount_fen}")

    applied_fen: Counter[int] = Counter()  # by bill
    payment_refund_fen: Counter[int] = Counter()
    abandoned_fen: Counter[int] = Counter()  # by bill
    payment_abandoned_fen: Counter[int] = Counter()  # refunds of abandoned items, by the payment that returns them
    for r in refunds:
        if r.reason == "item_abandoned":
            abandoned_fen[r.bill_id] += r.amount_fen
            if r.payment_id is None:
                problems.append(f"refund of an abandoned item on bill {r.bill_id} names no payment to return it through")
            else:
                payment_abandoned_fen[r.payment_id] += r.amount_fen
        elif r.payment_id is not None:
            payment_refund_fen[r.payment_id] += r.amount_fen
    for key, count in Counter((p.source, p.payment_no) for p in payments).items():
        if count > 1:
            problems.append(f"payment {key[0]}/{key[1]} is recorded {count} times")
    for p in payments:
        applied_fen[p.bill_id] += p.applied_fen
        if p.applied_fen + payment_refund_fen[p.id] != p.amount_fen:
            problems.append(f"payment {p.source}/{p.payment_no}: applied {p.applied_fen} + refunded "
                            f"{payment_refund_fen[p.id]} != received {p.amount_fen}")
        if payment_abandoned_fen[p.id] > p.applied_fen:
            problems.append(f"payment {p.source}/{p.payment_no}: {payment_abandoned_fen[p.id]} refunded for abandoned "
                            f"items, more than the {p.applied_fen} it paid")

    unpaid_fen: Counter[int] = Counter()  # by line
    for b in bills:
        if b.status in UNPAID:
            unpaid_fen[b.line_id] += b.self_pay_fen - b.paid_fen
        if not 0 <= b.paid_fen <= b.self_pay_fen:
            problems.append(f"bill {b.bill_no}: paid {b.paid_fen} outside 0..{b.self_pay_fen}")
        if b.self_pay_fen != posted_self_pay[b.visit_id]:
            problems.append(f"bill {b.bill_no}: self_pay {b.self_pay_fen} != posted charges' self-pay {posted_self_pay[b.visit_id]}")
        expected_paid = applied_fen[b.id] - abandoned_fen[b.id]
        if b.paid_fen != expected_paid:
            problems.append(f"bill {b.bill_no}: paid {b.paid_fen} != applied {applied_fen[b.id]} - refunded for "
                            f"abandoned items {abandoned_fen[b.id]}")
        if (b.status == "paid") != (b.paid_fen == b.self_pay_fen):
            problems.append(f"bill {b.bill_no} is {b.status} with {b.paid_fen} of {b.self_pay_fen} paid")
        visit = visit_by_id[b.visit_id]
        if visit.status != "checked_out" or visit.line_id != b.line_id:
            problems.append(f"bill {b.bill_no}: visit {visit.visit_no} is {visit.status} on line {visit.line_id}, bill on {b.line_id}")
        if line_by_id[b.line_id].member_id != b.payer_id:
            problems.append(f"bill {b.bill_no}: payer {b.payer_id} does not own line {b.line_id}")
        if swept and b.status in UNPAID:
            stage = bill_stage(core.policy, self_pay_fen=b.self_pay_fen, paid_fen=b.paid_fen, due_at=b.due_at, now=core.clock.now())
            if b.status != stage:
                problems.append(f"bill {b.bill_no} due {b.due_at.isoformat()} is {b.status} after the sweep, "
                                f"should be {stage} at {core.clock.now().isoformat()}")
    for count in Counter(b.visit_id for b in bills).values():
        if count > 1:
            problems.append(f"a visit has {count} bills")

    for line in lines:
        expected = held_fen[line.id] + unpaid_fen[line.id]
        if line.used_fen != expected:
            problems.append(f"line {line.id}: used {line.used_fen} != held {held_fen[line.id]} + unpaid {unpaid_fen[line.id]}")
        if line.used_fen < 0 or (line.used_fen > line.limit_fen and not limit_lowered):
            problems.append(f"line {line.id}: used {line.used_fen} outside 0..{line.limit_fen}")

    last_status: dict[int, str] = {}
    for member_id, old, new in changes:
        before = last_status.get(member_id, "prospect")
        if old != before:
            problems.append(f"member {member_id}: a move from {old} follows a move to {before}")
        if new not in LEGAL_MOVES.get(old, ()):
            problems.append(f"member {member_id}: illegal move {old} -> {new}")
        last_status[member_id] = new
    for member_id, status in members.items():
        if status != last_status.get(member_id, "prospect"):
            problems.append(f"member {member_id} is {status}; the status history ends at {last_status.get(member_id, 'prospect')}")
    for member_id, decision in pending_moves.items():
        problems.append(f"member {member_id} is {members[member_id]} after the sweep, but the facts call for {decision.to} ({decision.reason})")

    if problems:
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise AssertionError(f"{len(problems)} invariant(s) broken:\n" + "\n".join(problems[:MAX_REPORTED]) + more)
