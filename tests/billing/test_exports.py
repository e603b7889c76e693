"""The overdue list and the credit-report list: exact rows from a seeded programme, on SQLite,
aiosqlite and PostgreSQL, read in batches smaller than the set so that paging is crossed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from billing import members
from billing.errors import NotFound
from billing.exports import CreditReportRow, OverdueRow, Scope, credit_reports, overdue_bills
from billing.hospitals import add_hospital
from billing.staff import add_staff
from billing.sweep import sweep
from conftest import DUE, START
from helpers import checkout, enrol, pay, visit_with_charges

ZHANG_WEI = "110105198503120012"
LIU_YANG = "11010819920709006X"
WANG_PHONE = "13912345678"
CHEN_JING = "320602198305160096"  # Nantong


async def _seed(core) -> dict:
    """Beijing (due in 48 h, the insurer advances on the due day). Zhang Wei, onboarded by a
    community worker, owes 100.00 at H1 and 20.00 at H2; Liu Yang owes 50.00 of 80.00 at H1 and
    paid another bill in full; a bill of Liu Yang's issued a day later is not due at first."""
    await add_hospital(core, "H2", "第二医院", secret="hospital-secret-0123456789")
    staff_id = await add_staff(core, "oStaffWang", "王社工")
    zhang = (await members.enrol(core, openid=None, name="张伟", id_number=ZHANG_WEI, phone=WANG_PHONE,
                                 consent_version=core.policy.consent_version,
                                 commitment_version=core.policy.commitment_version, staff_id=staff_id)).member_id
    liu = (await members.enrol(core, openid=None, name="刘洋", id_number=LIU_YANG, phone="13800138000",
                               consent_version=core.policy.consent_version,
                               commitment_version=core.policy.commitment_version)).member_id
    bills = {
        "zhang_h1": await _bill(core, ZHANG_WEI, 10000, "H1"),
        "liu_partly": await _bill(core, LIU_YANG, 8000, "H1"),
        "liu_paid": await _bill(core, LIU_YANG, 500, "H1"),
        "zhang_h2": await _bill(core, ZHANG_WEI, 2000, "H2"),
    }
    await pay(core, bills["liu_partly"], 3000)
    await pay(core, bills["liu_paid"], 500)
    core.clock.advance(days=1)
    bills["liu_later"] = await _bill(core, LIU_YANG, 1200, "H1")
    return {"staff_id": staff_id, "zhang": zhang, "liu": liu, **bills}


async def _bill(core, id_number: str, amount_fen: int, hospital: str) -> str:
    return (await checkout(core, await visit_with_charges(core, id_number, amount_fen, hospital=hospital)))["bill_no"]


async def _rows(stream) -> list:
    return [row async for row in stream]


async def test_the_overdue_list_holds_every_unpaid_bill_past_due_and_nothing_else(make_core, clock):
    core = await make_core()
    seed = await _seed(core)
    swept_at = DUE + timedelta(hours=1)
    clock.set(swept_at)
    await sweep(core, swept_at)  # the first four bills are past due: overdue and advanced at once
    now = clock.advance(days=3)  # 3 days and 1 hour after the first due date; the later bill is 2 days overdue

    def row(bill_no, hospital, name, id_masked, phone, self_pay, paid, due, status, advanced_at):
        return OverdueRow(bill_no, hospital, {"H1": "测试医院", "H2": "第二医院"}[hospital], name, id_masked, phone,
                          "suspended", self_pay, paid, self_pay - paid, due, (now - due) // timedelta(days=1), status,
                          due, advanced_at)

    zhang_h1 = row(seed["zhang_h1"], "H1", "张伟", "110105********0012", "139****5678", 10000, 0, DUE, "advanced", swept_at)
    liu_partly = row(seed["liu_partly"], "H1", "刘洋", "110108********006X", "138****8000", 8000, 3000, DUE, "advanced",
                     swept_at)
    zhang_h2 = row(seed["zhang_h2"], "H2", "张伟", "110105********0012", "139****5678", 2000, 0, DUE, "advanced", swept_at)
    # Past due since the sweep: still `open` in the database until the next sweep moves it.
    liu_later = row(seed["liu_later"], "H1", "刘洋", "110108********006X", "138****8000", 1200, 0, DUE + timedelta(days=1),
                    "open", None)
    assert (zhang_h1.days_overdue, liu_later.days_overdue) == (3, 2)

    assert await _rows(overdue_bills(core, now, batch=2)) == [zhang_h1, liu_partly, zhang_h2, liu_later]
    assert await _rows(overdue_bills(core, now, batch=1)) == [zhang_h1, liu_partly, zhang_h2, liu_later]
    assert await _rows(overdue_bills(core, now, Scope(hospital="H2"))) == [zhang_h2]
    assert await _rows(overdue_bills(core, now, Scope(hospital="H1"), batch=2)) == [zhang_h1, liu_partly, liu_later]
    assert await _rows(overdue_bills(core, now, Scope(staff_ids=frozenset({seed["staff_id"]})))) == [zhang_h1, zhang_h2]
    assert await _rows(overdue_bills(core, now, Scope(staff_ids=frozenset()))) == []
    assert await _rows(overdue_bills(core, now, Scope(hospital="H1", staff_ids=frozenset({seed["staff_id"]})))) == [zhang_h1]
    by_due_day = Scope(since=DUE + timedelta(hours=12), until=DUE + timedelta(days=2))
    assert await _rows(overdue_bills(core, now, by_due_day)) == [liu_later]
    assert await _rows(overdue_bills(core, DUE)) == []  # due at DUE is not yet past due


async def test_no_advance_in_the_policy_leaves_the_advance_columns_empty(make_core, clock):
    core = await make_core("nantong")
    await enrol(core, CHEN_JING)
    bill_no = await _bill(core, CHEN_JING, 30000, "H1")  # due in 24 h
    [row] = await _rows(overdue_bills(core, START + timedelta(days=2)))
    assert (row.bill_no, row.bill_status, row.advance_due_at, row.advanced_at) == (bill_no, "open", None, None)


async def test_an_unknown_hospital_is_refused(make_core):
    core = await make_core()
    with pytest.raises(NotFound, match="no hospital with the code 'H9'"):
        await _rows(overdue_bills(core, START, Scope(hospital="H9")))
    with pytest.raises(NotFound):
        await _rows(credit_reports(core, START, Scope(hospital="H9")))


async def test_the_credit_report_list_names_whom_the_ladder_reported_why_and_when(make_core, clock):
    core = await make_core()
    seed = await _seed(core)
    suspended_at = DUE + timedelta(hours=1)
    clock.set(suspended_at)
    await sweep(core, suspended_at)
    assert await _rows(credit_reports(core, suspended_at)) == []  # suspended: nothing reported yet

    # 90 days after the advance Beijing blacklists and reports to the central bank's credit system.
    reported_at = DUE + timedelta(days=91)
    clock.set(reported_at)
    await sweep(core, reported_at)
    now = clock.advance(days=2)
    reason = "ladder:days_since_advance>=90"

    def report(name, id_masked, phone, unpaid_bills, unpaid_fen):
        return CreditReportRow(name, id_masked, phone, "blacklisted", "central_bank_credit_system", "blacklisted", reason,
                               reported_at, reported_at, "pending", None, unpaid_bills, unpaid_fen, DUE,
                               (now - DUE) // timedelta(days=1))

    zhang = report("张伟", "110105********0012", "139****5678", 2, 12000)
    liu = report("刘洋", "110108********006X", "138****8000", 2, 6200)
    assert await _rows(credit_reports(core, now, batch=1)) == [zhang, liu]
    # H2 sees Zhang Wei only (he owes it), and only what he owes H2.
    assert await _rows(credit_reports(core, now, Scope(hospital="H2"))) == [
        report("张伟", "110105********0012", "139****5678", 1, 2000)]
    assert await _rows(credit_reports(core, now, Scope(staff_ids=frozenset({seed["staff_id"]})))) == [zhang]
    assert await _rows(credit_reports(core, now, Scope(until=reported_at))) == []
    assert await _rows(credit_reports(core, now, Scope(since=reported_at))) == [zhang, liu]


async def test_an_empty_programme_exports_nothing(make_core):
    core = await make_core()
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert await _rows(overdue_bills(core, now)) == [] and await _rows(credit_reports(core, now)) == []
