"""Seeded randomized simulation of the billing core, in the spirit of TigerBeetle's VOPR.

Each seed builds a fresh database under one of the three presets, enrols the demo
residents that policy admits (under Xiamen, each with a financial institution the seed picks,
whose interest a payment pays first, checked to the fen), binds some family, then runs random operations: visits,
charges (some over the line, some holding only the HIS's self-pay estimate), cancels, checkouts
with valid and invalid splits (some whose real self-pay passes the limit), payments
(partial, exact, over, replayed, conflicting), replays, clock jumps with sweeps, credit
repair, 解约 and signing again. Each operation checks its own outcome against what the
state before it predicts, and the auditor checks every invariant after every step.

A failure names its seed and how to run it alone:
    XINYI_SIM_SEED=123 .venv/bin/python -m pytest tests/billing/test_simulation.py -k 'test_seeds and sqlite'
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable

import pytest
from sqlalchemy import select, text, update

from audit import audit
from billing.clock import FixedClock
from billing.core import Core
from billing.errors import Conflict, CreditLimitExceeded, InvalidInput, NotEligible
from billing.identity import age_on, birth_date
from billing.interest import owed
from billing.members import (
    UNPAID_BILL_STATUSES, Enrolment, bind_dependent, cancel_agreement, check_eligibility, enrol, owed_fen, renew_commitment, repair_credit,
)
from billing.payments import HOSPITAL_CHANNELS, pay_at_hospital
from billing.registry import Resident
from billing.repair import RepairIncomplete
from billing.sweep import sweep
from billing.visits import CATEGORIES, cancel_charge, checkout, open_visit, post_charge
from conftest import START
from storage.models import Bill, Charge, CreditLine, Member, Visit

PRESETS = ("beijing-shijingshan", "nantong", "xiamen")
EXPECTED_REFUSALS = (CreditLimitExceeded, NotEligible, Conflict, InvalidInput)
STEPS = 60
HOSPITAL = "H1"
REPLAYED_SEEDS = [int(s) for s in os.environ.get("XINYI_SIM_SEED", "").split(",") if s.strip()]
SLOW_BATCHES, SLOW_BATCH_SIZE = 8, 25  # 200 seeds on SQLite
PG_SEEDS = range(5000, 5020)
STRAY_ITEM = {"charge_no": "NO-SUCH-CHARGE", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1}


async def refused(error: type[Exception], call: Awaitable[Any]) -> None:
    """The call must fail with `error`; any other exception goes up as it is."""
    try:
        answer = await call
    except error:
        return
    raise AssertionError(f"expected {error.__name__}, got the answer {answer}")


async def enrol_resident(core: Core, resident: Resident, rng: random.Random | None = None) -> Enrolment:
    """Enrolled with a financial institution `rng` picks where the policy lists them (else the first)."""
    institutions = [institution.code for institution in core.policy.institutions]
    return await enrol(
        core, openid=f"o-{resident.id_number}", name=resident.name, id_number=resident.id_number,
        phone=f"138{int(resident.id_number[-9:-1]):08d}", consent_version=core.policy.consent_version,
        commitment_version=core.policy.commitment_version,
        institution=(rng.choice(institutions) if rng else institutions[0]) if institutions else None,
    )


@dataclass
class Charged:
    visit_no: str
    body: dict
    response: dict


@dataclass
class Simulation:
    core: Core
    clock: FixedClock
    rng: random.Random
    members: dict[int, Resident] = field(default_factory=dict)  # enrolled at least once
    dependents: list[Resident] = field(default_factory=list)
    visit_nos: list[str] = field(default_factory=list)
    charges: dict[str, Charged] = field(default_factory=dict)
    cancels: dict[str, dict] = field(default_factory=dict)
    bill_nos: list[str] = field(default_factory=list)
    checked_out: set[str] = field(default_factory=set)
    payments: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    serial: int = 0
    interest_paid_fen: int = 0  # what payments paid of bills' interest (Xiamen's institutions)
    estimates: int = 0  # charges on credit sent with the HIS's self-pay estimate
    over_limit_checkouts: int = 0  # checkouts whose real self-pay passed the line's limit
    log: list[str] = field(default_factory=list)

    def next_no(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:04d}"

    # --- setup --------------------------------------------------------------------------

    async def enrol_residents(self) -> None:
        residents = list(self.core.registry)
        eligible = [r for r in residents if (await check_eligibility(self.core, r.id_number)).eligible]
        chosen = [r for r in eligible if self.rng.random() < 0.8] or eligible[:1]
        for resident in chosen:
            await self._enrol(resident)
        for payer_id, payer in list(self.members.items()):
            if self.rng.random() < 0.5:
                dependent = self.rng.choice([r for r in residents if r.id_number != payer.id_number])
                try:
                    await bind_dependent(self.core, payer_id, self._relation(payer, dependent), dependent.name, dependent.id_number)
                except EXPECTED_REFUSALS as exc:
                    self.log.append(f"bind {dependent.name} to {payer.name}: {type(exc).__name__} {exc}")
                else:
                    self.dependents.append(dependent)
                    self.log.append(f"bind {dependent.name} to {payer.name}")

    async def _enrol(self, resident: Resident) -> None:
        enrolment = await enrol_resident(self.core, resident, self.rng)
        self.members[enrolment.member_id] = resident
        self.log.append(f"enrol {resident.name} as member {enrolment.member_id}, limit {enrolment.limit_fen}")

    def _relation(self, payer: Resident, dependent: Resident) -> str:
        today = self.clock.now().date()
        dependent_age = age_on(birth_date(dependent.id_number), today)
        if dependent_age < self.core.policy.minor_age:
            return "child"
        if dependent_age - age_on(birth_date(payer.id_number), today) >= 20:
            return "parent"
        return "spouse"

    # --- operations ---------------------------------------------------------------------

    async def step(self) -> bool:
        """One random operation; returns whether it was a sweep (the auditor checks stages then)."""
        operations = [
            (self.open_visit, 10), (self.post_charge, 25), (self.replay_charge, 5), (self.cancel_charge, 7),
            (self.checkout, 10), (self.pay, 15), (self.replay_payment, 5), (self.travel_and_sweep, 8),
            (self.repair, 3), (self.cancel_and_sign_again, 2),
        ]
        operation = self.rng.choices([op for op, _ in operations], weights=[w for _, w in operations])[0]
        await operation()
        return operation == self.travel_and_sweep

    async def open_visit(self) -> None:
        insiders = [*self.members.values(), *self.dependents]
        pool = insiders if insiders and self.rng.random() < 0.8 else list(self.core.registry)
        patient = self.rng.choice(pool)
        exclusion = self.rng.choice(["crime", "third_party_liability"]) if self.rng.random() < 0.05 else None
        body = {"visit_no": self.next_no("V"), "id_number": patient.id_number, "department": "内科",
                "kind": self.rng.choice(["outpatient", "outpatient", "emergency", "inpatient"]), "exclusion": exclusion}
        answer = await open_visit(self.core, HOSPITAL, body)
        self.visit_nos.append(body["visit_no"])
        self.log.append(f"open {body['visit_no']} for {patient.name} ({body['kind']}, {exclusion}): {answer}")
        if self.rng.random() < 0.1:
            assert await open_visit(self.core, HOSPITAL, body) == answer, "a replayed visit answered differently"

    async def post_charge(self) -> None:
        open_visits = [v for v in self.visit_nos if v not in self.checked_out]
        if not open_visits:
            return await self.open_visit()
        visit_no = self.rng.choice(open_visits if self.rng.random() < 0.9 else self.visit_nos)
        large = self.rng.random() < 0.15
        body = {"charge_no": self.next_no("C"), "category": self.rng.choice(CATEGORIES), "name": "项目",
                "amount_fen": self.rng.randint(50_000, 400_000) if large else self.rng.randint(1, 30_000),
                "prepaid": self.rng.random() < 0.08}
        if self.rng.random() < 0.4:  # the HIS's insurance pre-settlement: the line holds only this
            body["self_pay_estimate_fen"] = self.rng.randint(0, body["amount_fen"] // 3)
        hold_fen = body.get("self_pay_estimate_fen", -(-body["amount_fen"] * self.core.policy.hold_percent // 100))
        visit, line, owner_status = await self._visit_state(visit_no)
        if visit.status != "open":
            expected = Conflict
        elif body["prepaid"] or not visit.on_credit:
            expected = None
        elif owner_status != "active":
            expected = NotEligible
        elif hold_fen > line.limit_fen - line.used_fen:
            expected = CreditLimitExceeded
        else:
            expected = None
        try:
            answer = await post_charge(self.core, HOSPITAL, visit_no, body)
        except EXPECTED_REFUSALS as exc:
            assert isinstance(exc, expected or ()), f"charge {body} on {visit_no} refused with {exc!r}, expected {expected}"
            self.log.append(f"charge {body['charge_no']} {body['amount_fen']} on {visit_no}: {type(exc).__name__}")
            return
        assert expected is None, f"charge {body} on {visit_no} accepted, expected {expected.__name__}"
        self.charges[body["charge_no"]] = Charged(visit_no, body, answer)
        self.log.append(f"charge {body['charge_no']} {body['amount_fen']} on {visit_no}: {answer}")
        on_credit = visit.on_credit and not body["prepaid"]
        assert answer["on_credit"] == on_credit
        if on_credit:
            assert answer["available_fen"] == line.limit_fen - line.used_fen - hold_fen, answer
            self.estimates += "self_pay_estimate_fen" in body

    async def replay_charge(self) -> None:
        if not self.charges:
            return await self.post_charge()
        charge_no = self.rng.choice(sorted(self.charges))
        charged = self.charges[charge_no]
        if self.rng.random() < 0.6:
            answer = await post_charge(self.core, HOSPITAL, charged.visit_no, charged.body)
            assert answer == charged.response, f"replayed {charge_no} answered {answer}, first {charged.response}"
            self.log.append(f"replay charge {charge_no}: same answer")
        else:
            changed = {**charged.body, "amount_fen": charged.body["amount_fen"] + 1}
            await refused(Conflict, post_charge(self.core, HOSPITAL, charged.visit_no, changed))
            self.log.append(f"replay charge {charge_no} with another amount: Conflict")

    async def cancel_charge(self) -> None:
        if not self.charges:
            return await self.post_charge()
        charge_no = self.rng.choice(sorted(self.charges))
        visit_no = self.charges[charge_no].visit_no
        answer = await cancel_charge(self.core, HOSPITAL, visit_no, charge_no)
        if charge_no in self.cancels:
            assert answer == self.cancels[charge_no], f"a replayed cancel of {charge_no} answered differently"
        self.cancels.setdefault(charge_no, answer)
        self.log.append(f"cancel {charge_no} on {visit_no}: {answer}")

    async def checkout(self) -> None:
        open_visits = [v for v in self.visit_nos if v not in self.checked_out]
        if not open_visits:
            return await self.open_visit()
        with_holds = await self._visits_with_holds()
        visit_no = self.rng.choice(with_holds if with_holds and self.rng.random() < 0.8 else open_visits)
        visit, _, _ = await self._visit_state(visit_no)
        charges = await self._charges(visit_no)
        held = [c for c in charges if c.status == "held"]
        prepaid = [c for c in charges if c.status == "prepaid" and self.rng.random() < 0.5]
        items = [self._split(c) for c in held + prepaid]
        if not visit.on_credit:
            await refused(Conflict, checkout(self.core, HOSPITAL, visit_no, {"items": items}))
            self.log.append(f"checkout {visit_no} off credit: Conflict")
            return
        if items and self.rng.random() < 0.2:
            return await self._refused_checkout(visit_no, items, held)
        body = {"items": items}
        _, line, owner_status = await self._visit_state(visit_no)
        answer = await checkout(self.core, HOSPITAL, visit_no, body)
        self.log.append(f"checkout {visit_no} {items}: {answer}")
        self_pay = sum(item["self_pay_fen"] for item, c in zip(items, held + prepaid) if c.status == "held")
        assert answer["self_pay_fen"] == self_pay
        _, after, status_after = await self._visit_state(visit_no)
        assert after.used_fen == line.used_fen - sum(c.held_fen for c in held) + self_pay, "checkout did not true up the line"
        if after.used_fen > after.limit_fen:  # the patient was treated: the bill is issued past the limit
            self.over_limit_checkouts += 1
            suspends = any(rule.over_limit for rule in self.core.policy.ladder) and owner_status == "active"
            assert status_after == ("suspended" if suspends else owner_status), \
                f"over the limit after checkout: {owner_status} -> {status_after}"
            self.log.append(f"checkout {visit_no} over the limit by {after.used_fen - after.limit_fen}: {status_after}")
        self.checked_out.add(visit_no)
        self.bill_nos.append(answer["bill_no"])
        if self.rng.random() < 0.2:
            assert await checkout(self.core, HOSPITAL, visit_no, body) == answer, "a replayed checkout answered differently"
            await refused(Conflict, checkout(self.core, HOSPITAL, visit_no, {"items": [STRAY_ITEM]}))

    def _split(self, charge) -> dict:
        insurance = self.rng.choice([0, self.rng.randint(0, charge.amount_fen)])
        personal = self.rng.choice([0, self.rng.randint(0, charge.amount_fen - insurance)])
        return {"charge_no": charge.charge_no, "insurance_fen": insurance, "personal_account_fen": personal,
                "self_pay_fen": charge.amount_fen - insurance - personal}

    async def _refused_checkout(self, visit_no: str, items: list[dict], held: list) -> None:
        flaw = self.rng.choice(["sum", "negative", "unknown", "missing"] if held else ["sum", "negative", "unknown"])
        items = [dict(item) for item in items]
        if flaw == "sum":
            items[0]["self_pay_fen"] += 1
        elif flaw == "negative":
            items[0]["insurance_fen"], items[0]["self_pay_fen"] = -1, items[0]["self_pay_fen"] + 1
        elif flaw == "unknown":
            items.append(STRAY_ITEM)
        else:
            items = [item for item in items if item["charge_no"] != held[0].charge_no]
        await refused(InvalidInput, checkout(self.core, HOSPITAL, visit_no, {"items": items}))
        self.log.append(f"checkout {visit_no} with a split that is wrong ({flaw}): InvalidInput")

    async def pay(self) -> None:
        if not self.bill_nos:
            return await self.checkout()
        unpaid_bills = await self._unpaid_bill_nos()
        bill_no = self.rng.choice(unpaid_bills if unpaid_bills and self.rng.random() < 0.85 else self.bill_nos)
        bill = await self._bill(bill_no)
        before = owed(bill, self.clock.now())  # the interest accrued by now, which the payment pays first
        unpaid = before.total_fen if bill.status in UNPAID_BILL_STATUSES else 0
        mode = self.rng.choice(["partial", "exact", "over"] if unpaid > 1 else ["exact", "over"] if unpaid else ["over"])
        amount = {"partial": lambda: self.rng.randint(1, unpaid - 1), "exact": lambda: unpaid,
                  "over": lambda: unpaid + self.rng.randint(1, 5_000)}[mode]()
        body = {"payment_no": self.next_no("P"), "channel": self.rng.choice(HOSPITAL_CHANNELS), "amount_fen": amount}
        answer = await pay_at_hospital(self.core, HOSPITAL, bill_no, body)
        self.payments[body["payment_no"]] = ({**body, "bill_no": bill_no}, answer)
        self.log.append(f"pay {bill_no} {mode} {amount} of {unpaid}: {answer['status']} {answer['paid_fen']}, "
                        f"interest {answer['interest_paid_fen']} of {answer['interest_fen']}")
        to_interest = min(amount, before.interest_unpaid_fen) if unpaid else 0
        self.interest_paid_fen += to_interest
        assert answer["interest_fen"] == before.interest_fen, answer
        assert answer["interest_paid_fen"] == bill.interest_paid_fen + to_interest, answer
        assert answer["paid_fen"] == min(bill.paid_fen + amount - to_interest, bill.self_pay_fen), answer
        assert answer["owed_fen"] == max(unpaid - amount, 0), answer
        assert (answer["status"] == "paid") == (answer["owed_fen"] == 0), answer

    async def replay_payment(self) -> None:
        if not self.payments:
            return await self.pay()
        payment_no = self.rng.choice(sorted(self.payments))
        (body, answer) = self.payments[payment_no]
        bill_no, request = body["bill_no"], {k: v for k, v in body.items() if k != "bill_no"}
        before = await self._bill(bill_no)
        if self.rng.random() < 0.6:
            assert await pay_at_hospital(self.core, HOSPITAL, bill_no, request) == answer, f"replayed {payment_no} answered differently"
            self.log.append(f"replay payment {payment_no}: same answer")
        else:
            changed = {**request, "amount_fen": request["amount_fen"] + 1}
            await refused(Conflict, pay_at_hospital(self.core, HOSPITAL, bill_no, changed))
            self.log.append(f"replay payment {payment_no} with another amount: Conflict")
        after = await self._bill(bill_no)
        assert (after.paid_fen, after.status) == (before.paid_fen, before.status), f"a replayed payment moved {bill_no}"

    async def travel_and_sweep(self) -> None:
        unit, low, high = self.rng.choice([("hours", 1, 12), ("hours", 20, 50), ("days", 2, 10), ("days", 20, 45), ("days", 100, 100)])
        jump = timedelta(**{unit: self.rng.randint(low, high)})
        self.clock.advance(jump)
        report = await sweep(self.core)
        self.log.append(f"travel {jump} to {self.clock.now().isoformat()} and sweep: {report}")
        again = await sweep(self.core)
        assert (again.bills_overdue, again.bills_advanced, again.reminders, again.status_changes) == (0, 0, 0, 0), \
            f"a second sweep at the same time still moved things: {again}"

    async def repair(self) -> None:
        if not self.members:
            return
        member_id = self.rng.choice(sorted(self.members))
        try:
            status = await repair_credit(self.core, member_id)
        except RepairIncomplete as exc:
            self.log.append(f"repair member {member_id}: missing {exc.repair.missing}")
            if "commitment" in exc.repair.missing:  # the member signs it again in chat
                left = await renew_commitment(self.core, member_id, self.core.policy.commitment_version)
                self.log.append(f"member {member_id} signs the commitment again; repair still needs {left.missing}")
        except Conflict as exc:
            self.log.append(f"repair member {member_id}: Conflict {exc}")
        else:
            self.log.append(f"repair member {member_id}: now {status}")

    async def cancel_and_sign_again(self) -> None:
        if not self.members:
            return
        member_id = self.rng.choice(sorted(self.members))
        status, owed = await self.core.db.run(
            lambda session: (session.scalar(select(Member.status).where(Member.id == member_id)), owed_fen(session, member_id)))
        if status == "cancelled":
            await self._enrol(self.members[member_id])
        elif status == "active":
            try:
                await cancel_agreement(self.core, member_id)
            except Conflict:
                assert owed > 0, f"member {member_id} owes nothing but could not cancel"
                self.log.append(f"cancel agreement of member {member_id} owing {owed}: Conflict")
            else:
                assert owed == 0, f"member {member_id} cancelled while owing {owed}"
                self.log.append(f"cancel agreement of member {member_id}")

    # --- reads --------------------------------------------------------------------------

    async def _visit_state(self, visit_no: str):
        async with self.core.db.transaction() as session:
            visit = await session.scalar(select(Visit).where(Visit.visit_no == visit_no))
            line = await session.get(CreditLine, visit.line_id) if visit.line_id else None
            owner_status = await session.scalar(select(Member.status).where(Member.id == line.member_id)) if line else None
        return visit, line, owner_status

    async def _charges(self, visit_no: str) -> list[Charge]:
        async with self.core.db.transaction() as session:
            return list(await session.scalars(
                select(Charge).join(Visit, Visit.id == Charge.visit_id).where(Visit.visit_no == visit_no).order_by(Charge.id)
            ))

    async def _visits_with_holds(self) -> list[str]:
        async with self.core.db.transaction() as session:
            return list(await session.scalars(
                select(Visit.visit_no).join(Charge, Charge.visit_id == Visit.id).where(Charge.status == "held")
                .distinct().order_by(Visit.visit_no)
            ))

    async def _unpaid_bill_nos(self) -> list[str]:
        async with self.core.db.transaction() as session:
            return list(await session.scalars(select(Bill.bill_no).where(Bill.status != "paid").order_by(Bill.id)))

    async def _bill(self, bill_no: str) -> Bill:
        async with self.core.db.transaction() as session:
            return await session.scalar(select(Bill).where(Bill.bill_no == bill_no))


async def simulate(seed: int, db, clock: FixedClock, make_core, backend: str) -> Simulation:
    """One seed on a fresh schema; any failure says how to replay it alone."""
    await db.drop_all()
    await db.create_all()
    clock.set(START)
    rng = random.Random(seed)
    policy = rng.choice(PRESETS)
    sim = Simulation(await make_core(policy, hospital=HOSPITAL), clock, rng)
    step = "setup"
    try:
        await sim.enrol_residents()
        await audit(sim.core)
        for step in range(STEPS):
            swept = await sim.step()
            await audit(sim.core, swept=swept)
    except Exception as exc:
        replay = (f"XINYI_SIM_SEED={seed} .venv/bin/python -m pytest tests/billing/test_simulation.py "
                  f"-k 'test_seeds and {backend}'")
        recent = "\n  ".join(sim.log[-15:])
        message = f"seed {seed} ({policy}, {backend}) failed at step {step}: {type(exc).__name__}: {exc}\n" \
                  f"reproduce: {replay}\nlast operations:\n  {recent}"
        print(message)
        raise AssertionError(message) from exc
    return sim


def _backend(db) -> str:
    return "sqlite" if db.is_sqlite else "postgres"


async def test_seeds(db, clock, make_core):
    """The fast default: a few seeds on each backend, or the seeds XINYI_SIM_SEED names."""
    for seed in REPLAYED_SEEDS or range(5):
        await simulate(seed, db, clock, make_core, _backend(db))


async def test_xiamen_seeds_bear_and_pay_interest(db, clock, make_core):
    """Seeds whose preset is Xiamen and whose payments meet interest (most Xiamen seeds pay their bills
    inside the interest-free days, or bills too small to bear a fen a day): members with their
    institutions, bills past the interest-free days, payments that pay interest first, to the fen."""
    sims = [await simulate(seed, db, clock, make_core, _backend(db)) for seed in (35, 68, 95, 118)]
    assert {sim.core.policy.name for sim in sims} == {"厦门白鹭分信用就医"}
    assert sum(sim.interest_paid_fen for sim in sims) > 0


async def test_seeds_check_out_past_the_limit_on_an_estimate(db, clock, make_core):
    """Seeds, one per preset, whose orders held the HIS's lower estimate and whose real self-pay then
    passed the limit at checkout: the bill is issued, and only Xiamen suspends the payer for it."""
    sims = [await simulate(seed, db, clock, make_core, _backend(db)) for seed in (5, 8, 9)]
    assert len({sim.core.policy.name for sim in sims}) == 3
    assert all(sim.estimates and sim.over_limit_checkouts for sim in sims), [(s.estimates, s.over_limit_checkouts) for s in sims]


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("batch", range(SLOW_BATCHES))
async def test_many_seeds_sqlite(batch, db, clock, make_core):
    first = 100 + batch * SLOW_BATCH_SIZE
    for seed in range(first, first + SLOW_BATCH_SIZE):
        await simulate(seed, db, clock, make_core, "sqlite")


@pytest.mark.slow
@pytest.mark.parametrize("db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_many_seeds_postgres(db, clock, make_core):
    for seed in PG_SEEDS:
        await simulate(seed, db, clock, make_core, "postgres")


# --- the auditor itself must fail on a broken database ------------------------------------

CORRUPTIONS = {
    "line used": ("UPDATE credit_lines SET used_fen = used_fen + 1", "!= held"),
    "bill paid": ("UPDATE bills SET paid_fen = paid_fen + 1", "!= applied"),
    "bill status": ("UPDATE bills SET status = 'paid'", "is paid with"),
    "payment applied": ("UPDATE payments SET applied_fen = applied_fen - 1", "!= received"),
    "charge split": ("UPDATE charges SET insurance_fen = insurance_fen + 1, self_pay_fen = self_pay_fen - 1",
                     "!= posted charges' self-pay"),
    "member status": ("UPDATE members SET status = 'blacklisted'", "the status history ends at"),
    "interest without terms": ("UPDATE bills SET interest_fen = interest_fen + 1", "on a bill that bears none"),
    "interest paid": ("UPDATE bills SET interest_fen = interest_fen + 1, interest_paid_fen = interest_paid_fen + 1",
                      r"\+ interest paid 1 != applied"),
    "interest accrued through": ("UPDATE bills SET interest_through = due_at", "not a whole number of days after"),
}


async def one_bill(core: Core, self_pay_fen: int) -> str:
    """张伟 enrols, is charged 300 yuan, checks out with `self_pay_fen` to pay; returns the bill number."""
    resident = next(r for r in core.registry if r.name == "张伟")
    await enrol_resident(core, resident)
    await open_visit(core, HOSPITAL, {"visit_no": "V1", "id_number": resident.id_number, "department": "内科",
                                      "kind": "outpatient", "exclusion": None})
    await post_charge(core, HOSPITAL, "V1", {"charge_no": "C1", "category": "exam", "name": "CT", "amount_fen": 30_000})
    split = {"charge_no": "C1", "insurance_fen": 30_000 - self_pay_fen, "personal_account_fen": 0, "self_pay_fen": self_pay_fen}
    return (await checkout(core, HOSPITAL, "V1", {"items": [split]}))["bill_no"]


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
async def test_audit_notices_corruption(corruption, make_core):
    core = await make_core("beijing-shijingshan")
    bill_no = await one_bill(core, self_pay_fen=15_000)
    await pay_at_hospital(core, HOSPITAL, bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 5_000})
    await audit(core)
    statement, complaint = CORRUPTIONS[corruption]
    async with core.db.transaction() as session:
        await session.execute(text(statement))
    with pytest.raises(AssertionError, match=complaint):
        await audit(core)


async def test_audit_notices_what_a_sweep_left_undone(make_core, clock):
    core = await make_core("beijing-shijingshan")
    await one_bill(core, self_pay_fen=30_000)
    clock.advance(days=3)
    await audit(core)  # no sweep yet: the bill may still read open
    with pytest.raises(AssertionError, match="after the sweep, should be advanced"):
        await audit(core, swept=True)
    await sweep(core)
    await audit(core, swept=True)
    async with core.db.transaction() as session:
        await session.execute(update(Member).values(status="active"))
        await session.execute(text("DELETE FROM status_changes WHERE to_status = 'suspended'"))
    with pytest.raises(AssertionError, match="the facts call for suspended"):
        await audit(core, swept=True)
