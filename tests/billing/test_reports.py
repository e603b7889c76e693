"""The programme's figures (`xinyi stats`, the dashboard) against a hand count, and the overdue
list of `xinyi export overdue`, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, timedelta

import pytest
from sqlalchemy import make_url

from billing import members
from billing.errors import NotFound
from billing.hospitals import add_hospital
from billing.exports import overdue_bills
from billing.reports import BillTotals, Day, Onboarder, Scope, hospitals_to_choose, programme_figures
from billing.staff import add_staff
from billing.sweep import sweep
from helpers import billed_visit, checkout, enrol, id_number_for, open_visit, pay, visit_with_charges
from storage.models import MEMBER_STATUSES

CHEN_JING = "320602198305160096"
CHEN_DEHUA = "320600195009230102"
ZHANG_WEI = "110105198503120012"
ZHANG_XIUYING = "110105194908150027"
LIU_YANG = "11010819920709006X"
LIU_GUILAN = "110108195203040075"
MARCH = [date(2026, 3, day) for day in range(2, 7)]


def whole_week(**narrowed) -> Scope:
    return Scope(date(2026, 3, 2), date(2026, 3, 7), **narrowed)


async def test_figures_of_an_empty_programme_are_zero_and_rates_have_no_value(make_core):
    figures = await programme_figures(await make_core(), whole_week())
    assert (figures.enrolled, figures.visits_on_credit, figures.credit_fen, figures.repaid_fen, figures.overdue_bills,
            figures.advanced_fen, figures.recovered_fen, figures.blacklisted) == (0, 0, 0, 0, 0, 0, 0, 0)
    assert figures.repeat_rate is None and figures.overdue_rate is None  # nothing to measure, not 0 %
    assert figures.days == [Day(day) for day in MARCH] and figures.onboarders == []
    assert figures.ladder == dict.fromkeys(figures.ladder, 0) and len(figures.ladder) == 6
    assert figures.on_call.members == dict.fromkeys(MEMBER_STATUSES, 0)
    assert figures.on_call.bills == dict.fromkeys(("open", "overdue", "advanced"), BillTotals())
    assert (figures.on_call.outbox_pending, figures.on_call.outbox_dead, figures.on_call.refunds_pending,
            figures.on_call.refunds_pending_fen) == (0, 0, 0, 0)


async def story(make_core, clock) -> dict[str, int]:
    """A Beijing week at two hospitals (the insurer advances as soon as a bill is overdue; any
    overdue suspends until paid). China time is UTC+8: the clock starts at 17:00 on Mon 2 March."""
    core = await make_core()  # with H1
    await add_hospital(core, "H2", "石景山医院", secret="hospital-secret-0123456789")
    staff_a, staff_b = await add_staff(core, "staff-a", "社区甲"), await add_staff(core, "staff-b", "社区乙")

    async def enrol_by(staff_id: int, id_number: str) -> None:
        name = (await core.registry.lookup(id_number)).name
        await members.enrol(core, openid=None, name=name, id_number=id_number, phone="13800138000", staff_id=staff_id,
                            consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)

    # Mon 2 March, 17:00
    await enrol_by(staff_a, ZHANG_WEI)
    await enrol_by(staff_a, ZHANG_XIUYING)
    liu_yang = await enrol(core, LIU_YANG)  # by herself
    await members.bind_dependent(core, liu_yang, "parent", "刘父", id_number_for("19480101", 7))  # not an enrolment
    b1 = await billed_visit(core, ZHANG_WEI, 10000)
    await pay(core, b1, 10000)
    b2 = (await checkout(core, await visit_with_charges(core, ZHANG_XIUYING, 5000, hospital="H2")))["bill_no"]
    # Tue 3 March, 17:00
    clock.advance(hours=24)
    await enrol_by(staff_b, LIU_GUILAN)
    b3 = await billed_visit(core, ZHANG_WEI, 3000)
    await pay(core, b3, 1000)
    b4 = (await checkout(core, await visit_with_charges(core, LIU_YANG, 2000, hospital="H2")))["bill_no"]
    # Thu 5 March, 17:00: b2 fell due an hour ago (issued + 48 h): overdue, advanced, 张秀英 suspended
    await sweep(core, clock.advance(hours=48))
    assert not (await open_visit(core, ZHANG_XIUYING)).on_credit  # served, not on credit
    await pay(core, b2, 2000, hospital="H2")
    # 18:00: b3 and b4 are overdue and advanced too; 张伟 and 刘洋 suspended
    await sweep(core, clock.advance(hours=1))
    await pay(core, b4, 2000, hospital="H2")
    # Fri 6 March, 01:00 China time (still the 5th in UTC): b2 paid in full
    clock.advance(hours=7)
    await pay(core, b2, 3000, hospital="H2")
    await sweep(core, clock.now())  # 张秀英 and 刘洋 restored
    return {"core": core, "staff_a": staff_a, "staff_b": staff_b}


async def test_figures_agree_with_a_hand_count(make_core, clock):
    seeded = await story(make_core, clock)
    figures = await programme_figures(seeded["core"], whole_week())
    assert figures.enrolled == 4
    assert figures.onboarders == [Onboarder(seeded["staff_a"], "社区甲", f"staff:{seeded['staff_a']}", 2),
                                  Onboarder(seeded["staff_b"], "社区乙", f"staff:{seeded['staff_b']}", 1),
                                  Onboarder(None, "", None, 1)]
    # b1..b4 on credit; 张秀英's visit while suspended is not. 张伟 came twice: 1 patient of 3.
    assert (figures.visits_on_credit, figures.patients_served, figures.patients_repeat) == (4, 3, 1)
    assert figures.repeat_rate == pytest.approx(1 / 3)
    assert (figures.bills_issued, figures.credit_fen, figures.repaid_fen) == (4, 20000, 18000)
    # b2, b3, b4 fell overdue (5000 + 3000 + 2000); only b3's 2000 is unpaid now
    assert (figures.overdue_bills, figures.overdue_fen, figures.overdue_unpaid_fen) == (3, 10000, 2000)
    assert figures.overdue_rate == 3 / 4
    # advanced with 5000 + 2000 + 2000 unpaid; then b2's 2000 + 3000 and b4's 2000 came in
    assert (figures.advanced_bills, figures.advanced_fen, figures.recovered_fen) == (3, 9000, 7000)
    assert (figures.suspended, figures.revoked, figures.blacklisted) == (3, 0, 0)
    assert figures.days == [
        Day(date(2026, 3, 2), enrolled=3, credit_fen=15000, repaid_fen=10000),
        Day(date(2026, 3, 3), enrolled=1, credit_fen=5000, repaid_fen=1000),
        Day(date(2026, 3, 4)),
        Day(date(2026, 3, 5), repaid_fen=4000),
        Day(date(2026, 3, 6), repaid_fen=3000),  # at 01:00 China time, 17:00 UTC on the 5th
    ]
    assert figures.ladder == {"bills_issued": 4, "bills_overdue": 3, "bills_advanced": 3, "members_suspended": 3,
                              "members_revoked": 0, "members_blacklisted": 0}
    assert figures.on_call.members["active"] == 3 and figures.on_call.members["suspended"] == 1
    assert figures.on_call.bills == {"open": BillTotals(), "overdue": BillTotals(), "advanced": BillTotals(1, 3000, 2000)}


async def test_a_hospital_narrows_visits_bills_and_payments_not_enrolment(make_core, clock):
    seeded = await story(make_core, clock)
    figures = await programme_figures(seeded["core"], whole_week(hospital="H2"))  # b2 and b4
    assert figures.enrolled == 4  # members belong to the programme
    assert (figures.visits_on_credit, figures.patients_served, figures.repeat_rate) == (2, 2, 0.0)
    assert (figures.bills_issued, figures.credit_fen, figures.repaid_fen) == (2, 7000, 7000)
    assert (figures.overdue_bills, figures.overdue_fen, figures.overdue_unpaid_fen, figures.overdue_rate) == (2, 7000, 0, 1.0)
    assert (figures.advanced_bills, figures.advanced_fen, figures.recovered_fen) == (2, 7000, 7000)
    assert [day.credit_fen for day in figures.days] == [5000, 2000, 0, 0, 0]
    assert figures.on_call is None  # the whole programme's state is not a hospital's to see

    with pytest.raises(NotFound):
        await programme_figures(seeded["core"], whole_week(hospital="H9"))
    assert await hospitals_to_choose(seeded["core"]) == [("H1", "测试医院"), ("H2", "石景山医院")]


async def test_a_date_range_counts_its_own_days_in_china_time(make_core, clock):
    seeded = await story(make_core, clock)
    tuesday = await programme_figures(seeded["core"], Scope(date(2026, 3, 3), date(2026, 3, 4)))  # b3 and b4
    assert (tuesday.enrolled, tuesday.visits_on_credit, tuesday.patients_served, tuesday.patients_repeat) == (1, 2, 2, 0)
    assert (tuesday.bills_issued, tuesday.credit_fen, tuesday.repaid_fen) == (2, 5000, 1000)
    assert (tuesday.overdue_bills, tuesday.overdue_fen, tuesday.overdue_unpaid_fen) == (2, 5000, 2000)
    assert (tuesday.advanced_bills, tuesday.advanced_fen, tuesday.recovered_fen) == (2, 4000, 2000)
    assert tuesday.suspended == 0 and tuesday.days == [Day(date(2026, 3, 3), enrolled=1, credit_fen=5000, repaid_fen=1000)]

    to_thursday = await programme_figures(seeded["core"], Scope(date(2026, 3, 2), date(2026, 3, 6)))
    assert to_thursday.repaid_fen == 15000  # the payment at 01:00 on Friday is left out


async def test_community_staff_see_their_own_residents(make_core, clock):
    seeded = await story(make_core, clock)
    figures = await programme_figures(seeded["core"], whole_week(staff_ids=frozenset({seeded["staff_a"]})))
    # 张伟 (b1, b3) and 张秀英 (b2)
    assert figures.enrolled == 2 and [o.staff_id for o in figures.onboarders] == [seeded["staff_a"]]
    assert (figures.visits_on_credit, figures.patients_served, figures.repeat_rate) == (3, 2, 0.5)
    assert (figures.bills_issued, figures.credit_fen, figures.repaid_fen) == (3, 18000, 16000)
    assert (figures.overdue_bills, figures.overdue_fen, figures.overdue_unpaid_fen) == (2, 8000, 2000)
    assert figures.overdue_rate == pytest.approx(2 / 3)
    assert (figures.advanced_bills, figures.advanced_fen, figures.recovered_fen) == (2, 7000, 5000)
    assert figures.suspended == 2 and figures.on_call is None

    nobody = await programme_figures(seeded["core"], whole_week(staff_ids=frozenset()))
    assert (nobody.enrolled, nobody.visits_on_credit, nobody.credit_fen, nobody.repeat_rate) == (0, 0, 0, None)


async def test_on_call_figures_and_overdue_list_follow_bills_payments_and_time(make_core, clock):
    core = await make_core("nantong")  # due in 24 h, no insurer advance, suspended after 30 days
    await enrol(core, CHEN_JING)
    await enrol(core, CHEN_DEHUA)
    old = await billed_visit(core, CHEN_JING, 30000)
    clock.advance(hours=12)
    partly_paid = await billed_visit(core, CHEN_DEHUA, 8000)
    await pay(core, partly_paid, 3000)
    paid = await billed_visit(core, CHEN_DEHUA, 500)
    await pay(core, paid, 700)  # 2.00 yuan too much: a refund is owed
    clock.advance(hours=20)
    not_yet_due = await billed_visit(core, CHEN_JING, 1000)

    now = clock.advance(hours=10)  # 42 h after the first bill
    await sweep(core, now)
    rows = [row async for row in overdue_bills(core, now)]
    assert [(r.bill_no, r.member_name, r.id_number_masked, r.member_status, r.unpaid_fen, r.days_overdue, r.bill_status)
            for r in rows] == [
        (old, "陈静", "320602********0096", "active", 30000, 0, "overdue"),
        (partly_paid, "陈德华", "320600********0102", "active", 5000, 0, "overdue"),
    ]
    assert rows[0].due_at == now - timedelta(hours=42) + timedelta(hours=24)

    later = now + timedelta(days=31)
    assert [(r.bill_no, r.days_overdue) for r in [row async for row in overdue_bills(core, later)]] == [
        (old, 31), (partly_paid, 31), (not_yet_due, 30),
    ]

    stats = (await programme_figures(core, whole_week())).on_call
    assert stats.members["active"] == 2 and sum(stats.members.values()) == 2
    assert stats.bills["open"] == BillTotals(1, 1000, 1000)
    assert stats.bills["overdue"] == BillTotals(2, 38000, 35000)
    assert list(stats.bills) == ["open", "overdue", "advanced"]  # what is still owed
    assert (stats.refunds_pending, stats.refunds_pending_fen) == (1, 200)
    assert stats.outbox_pending > 0 and stats.outbox_dead == 0


async def test_figures_are_read_while_another_process_holds_the_write_lock(make_core, db):
    if not db.is_sqlite:
        pytest.skip("SQLite's one write lock")
    core = await make_core()
    await enrol(core, ZHANG_WEI)
    writer = sqlite3.connect(make_url(db.url).database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a writer that has not committed: the figures do not wait for it
    try:
        figures = await asyncio.wait_for(programme_figures(core, whole_week()), timeout=10)
    finally:
        writer.close()
    assert figures.enrolled == 1
