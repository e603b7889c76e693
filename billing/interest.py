"""Interest after the interest-free period, in integer fen (seed 004: "签约金融机构提供至少42天免息期";
"金融机构……按相关规定和信贷合同约定收取违约金和利息"; the seed names no rate or rounding: the rule is ours).

For each whole 24 hours after a bill's due time that principal stays unpaid, the bill accrues
floor(unpaid principal x daily_interest_ppm / 1,000,000) fen, the principal being what is unpaid
when that day ends: simple interest on principal only, rounded down each day (in the member's
favour), never compounded. A payment goes to the interest first, then to the principal
(billing/payments.py), and only the principal part gives credit back to the line.

`accrual` is the pure rule; whatever changes a bill's unpaid principal writes the accrual up to
its own time first, in its own transaction (a payment, an item abandoned after checkout), and the
sweep writes it for every bill past due (`accrue_due`), so that stored figures stay current. Every
view adds what has accrued since (`owed`), so nothing shown waits for a sweep. Accruing twice to
the same time adds nothing: `interest_through` says up to when it is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from billing.policy import PPM
from storage.models import UNPAID_BILL_STATUSES as UNPAID, Bill

DAY = timedelta(days=1)
BillLike = Any  # a Bill, or a row with its columns: self_pay_fen, paid_fen, status, due_at and the interest ones


def daily_fen(unpaid_principal_fen: int, daily_interest_ppm: int) -> int:
    """One day's interest on what is unpaid, rounded down to the fen."""
    return unpaid_principal_fen * daily_interest_ppm // PPM


@dataclass(frozen=True)
class Accrual:
    interest_fen: int  # accrued in all, this accrual included
    through: datetime | None  # up to when: the due time plus the whole days accrued; None while nothing has been
    added_fen: int


def accrual(bill: BillLike, at: datetime) -> Accrual:
    """What accruing `bill` up to `at` gives: the whole days since it was last accrued (or since its
    due time), each at the principal unpaid now (anything that changed it accrued first)."""
    start = bill.interest_through or bill.due_at
    unpaid = bill.self_pay_fen - bill.paid_fen
    if not bill.daily_interest_ppm or unpaid <= 0 or bill.status not in UNPAID or at < start + DAY:
        return Accrual(bill.interest_fen, bill.interest_through, 0)
    days = (at - start) // DAY
    added = days * daily_fen(unpaid, bill.daily_interest_ppm)
    return Accrual(bill.interest_fen + added, start + days * DAY, added)


def as_quoted(interest_fen: int, quoted_fen: int, interest_paid_fen: int) -> int:
    """A cashier trade settles the bill as of its quote: interest accrued after the trade was made
    (a day that ended while the member paid, a notice that came late) is waived, never below
    what is paid of it already. So paying the amount shown always clears the bill."""
    return max(min(interest_fen, quoted_fen), interest_paid_fen)


@dataclass(frozen=True)
class Owed:
    """What a bill asks for at a moment: the principal unpaid, and its interest as accrued by then."""

    principal_fen: int
    interest_fen: int  # accrued in all
    interest_paid_fen: int

    @property
    def interest_unpaid_fen(self) -> int:
        return self.interest_fen - self.interest_paid_fen

    @property
    def total_fen(self) -> int:
        return self.principal_fen + self.interest_unpaid_fen


# What a bill asks for as stored (principal and the interest accrued so far, less what is paid of
# each), for queries: `owed` adds what has accrued since.
STORED_OWED_FEN = Bill.self_pay_fen - Bill.paid_fen + Bill.interest_fen - Bill.interest_paid_fen


def owed(bill: BillLike, at: datetime) -> Owed:
    return Owed(bill.self_pay_fen - bill.paid_fen, accrual(bill, at).interest_fen, bill.interest_paid_fen)


def accrue(bill: Bill, at: datetime) -> Accrual:
    """Bring a Bill the caller has locked up to `at`; the session writes it."""
    accrued = accrual(bill, at)
    bill.interest_fen, bill.interest_through = accrued.interest_fen, accrued.through
    return accrued


# The sweep's pass: bills with a whole day or more to accrue, a batch at a time. A bill a payment
# changed meanwhile (its principal, or how far it is accrued) is left alone: the payment accrued it.
_BILLS = Bill.__table__
_DUE = (select(_BILLS.c.id, _BILLS.c.self_pay_fen, _BILLS.c.paid_fen, _BILLS.c.status, _BILLS.c.due_at,
               _BILLS.c.daily_interest_ppm, _BILLS.c.interest_fen, _BILLS.c.interest_through)
        .where(_BILLS.c.status.in_(UNPAID), _BILLS.c.due_at <= bindparam("day_ago"),  # along ix_bills_unpaid_due
               _BILLS.c.daily_interest_ppm > 0, _BILLS.c.paid_fen < _BILLS.c.self_pay_fen,
               func.coalesce(_BILLS.c.interest_through, _BILLS.c.due_at) <= bindparam("day_ago"))
        .order_by(_BILLS.c.id).limit(bindparam("limit")))
_ADD = (update(_BILLS)
        .where(_BILLS.c.id == bindparam("bill_id"), _BILLS.c.paid_fen == bindparam("was_paid"),
               _BILLS.c.interest_through.is_not_distinct_from(bindparam("was_through", type_=_BILLS.c.interest_through.type)))
        .values(interest_fen=_BILLS.c.interest_fen + bindparam("added"), interest_through=bindparam("through")))


def accrue_due(session: Session, now: datetime, limit: int) -> int:
    """Accrue up to `now` at most `limit` bills that have a whole day or more to accrue; returns how
    many were read (fewer than `limit`: none is left)."""
    rows = session.execute(_DUE, {"day_ago": now - DAY, "limit": limit}).all()
    changes = []
    for row in rows:
        accrued = accrual(row, now)
        changes.append({"bill_id": row.id, "was_paid": row.paid_fen, "was_through": row.interest_through,
                        "added": accrued.added_fen, "through": accrued.through})
    if changes:
        session.execute(_ADD, changes)
    return len(rows)
