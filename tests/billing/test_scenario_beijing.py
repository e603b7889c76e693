"""Worked scenario, Beijing Shijingshan (seeds 000, 001): a 2000 yuan line, reminders at
leaving, +24 h and +48 h, the insurer advances an overdue bill and the member is
suspended until paying; the 6th overdue revokes; 90 days unpaid after collection
blacklists and reports to the central bank's credit system. The auditor checks every
money invariant after every step."""
from __future__ import annotations

import pytest

from audit import audit
from billing.errors import Conflict
from billing.members import repair_credit
from billing.repair import RepairIncomplete
from helpers import (
    bill, billed_visit, checkout, enrol, events, line, open_visit, outbox, pay_in_full, reminder_offsets, status_of,
    sweep_checked, used_fen, visit_with_charges,
)

PRESET = "beijing-shijingshan"
ZHANG_WEI = "110105198503120012"


async def test_reminders_overdue_advance_suspend_and_restore(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, ZHANG_WEI)
    assert ((await line(core, member_id)).limit_fen, await used_fen(core, member_id)) == (200000, 0)
    await audit(core)

    visit = await visit_with_charges(core, ZHANG_WEI, 30000, 12000)
    assert visit.on_credit and visit.reason == "ok"
    assert await used_fen(core, member_id) == 42000
    await audit(core)
    answer = await checkout(core, visit, insurance={visit.charge_nos[0]: 10000})
    await audit(core)
    bill_no = answer["bill_no"]
    assert answer["self_pay_fen"] == 32000
    assert await used_fen(core, member_id) == 32000
    issued = await outbox(core, "bill_issued", member_id)
    assert [(m.payload["bill_no"], m.payload["self_pay_fen"]) for m in issued] == [(bill_no, 32000)]
    assert await reminder_offsets(core, bill_no) == [0]  # the notice at leaving is the first reminder

    await sweep_checked(core)
    assert await outbox(core, "bill_reminder") == []

    core.clock.advance(hours=24)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 24]
    assert [m.payload["offset_hours"] for m in await outbox(core, "bill_reminder", member_id)] == [24]

    core.clock.advance(hours=24)  # exactly at the due time: reminded, not yet overdue
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 24, 48]
    assert [m.payload["offset_hours"] for m in await outbox(core, "bill_reminder", member_id)] == [24, 48]
    assert (await bill(core, bill_no)).status == "open"
    assert await status_of(core, member_id) == "active"

    core.clock.advance(minutes=1)
    await sweep_checked(core)
    overdue = await bill(core, bill_no)
    assert overdue.status == "advanced"
    assert overdue.overdue_at == overdue.advanced_at == core.clock.now()
    assert [d["bill_no"] for d in await events(core, "advance_requested", member_id)] == [bill_no]
    assert await status_of(core, member_id) == "suspended"
    assert len(await outbox(core, "bill_reminder")) == 2

    refused = await visit_with_charges(core, ZHANG_WEI, 5000)
    await audit(core)
    assert (refused.on_credit, refused.reason) == (False, "suspended")
    assert await used_fen(core, member_id) == 32000

    await pay_in_full(core, bill_no)
    await audit(core)
    assert (await bill(core, bill_no)).status == "paid"
    assert await status_of(core, member_id) == "active"
    assert await used_fen(core, member_id) == 0
    moves = [(m.payload["from"], m.payload["to"]) for m in await outbox(core, "status_changed", member_id)]
    assert moves == [("prospect", "active"), ("active", "suspended"), ("suspended", "active")]

    await sweep_checked(core)
    again = await open_visit(core, ZHANG_WEI)
    await audit(core)
    assert (again.on_credit, again.reason) == (True, "ok")


async def test_sixth_overdue_revokes_and_paying_does_not_restore(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, ZHANG_WEI)

    first_five = []
    for _ in range(5):
        first_five.append(await billed_visit(core, ZHANG_WEI, 10000))
        await audit(core)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"  # five overdues: suspended, not revoked
    for bill_no in first_five:
        await pay_in_full(core, bill_no)
        await audit(core)
    assert await status_of(core, member_id) == "active"

    sixth = await billed_visit(core, ZHANG_WEI, 10000)
    await audit(core)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "revoked"
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "ladder:overdue_count>=6"

    await pay_in_full(core, sixth)
    await audit(core)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "revoked"
    assert await used_fen(core, member_id) == 0
    refused = await open_visit(core, ZHANG_WEI)
    await audit(core)
    assert (refused.on_credit, refused.reason) == (False, "revoked")


async def test_ninety_days_unpaid_after_collection_blacklists_and_reports(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 25000)
    await audit(core)
    due_at = (await bill(core, bill_no)).due_at

    core.clock.set(due_at)
    core.clock.advance(minutes=1)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).status == "advanced"
    assert await status_of(core, member_id) == "suspended"

    core.clock.set(due_at)
    core.clock.advance(days=89, hours=23)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    assert await events(core, "credit_report") == []

    core.clock.advance(hours=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "blacklisted"
    reports = await events(core, "credit_report", member_id)
    assert [(d["report"], d["stage"], d["unpaid_fen"]) for d in reports] == [("central_bank_credit_system", "blacklisted", 25000)]

    await pay_in_full(core, bill_no)
    await audit(core)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "blacklisted"
    assert len(await events(core, "credit_report")) == 1
    refused = await open_visit(core, ZHANG_WEI)
    await audit(core)
    assert (refused.on_credit, refused.reason) == (False, "blacklisted")


async def test_credit_repair_is_paying_the_overdue_bill(make_core):
    """The seeds name no credit repair in Shijingshan: repair asks only for the overdue bill,
    and paying it lifts the suspension by itself; a revoked member has nothing to repair."""
    core = await make_core(PRESET)
    member_id = await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 15000)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"

    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id)
    repair = raised.value.repair
    await audit(core)
    assert (repair.required, repair.missing, repair.unpaid_fen) == (False, ("overdue_unpaid",), 15000)
    assert [b.bill_no for b in repair.overdue_bills] == [bill_no]
    assert await status_of(core, member_id) == "suspended"

    await pay_in_full(core, bill_no)
    await audit(core)
    assert await status_of(core, member_id) == "active"
    with pytest.raises(Conflict) as raised:
        await repair_credit(core, member_id)
    assert raised.value.details["reason"] == "nothing_to_repair"

    for _ in range(6):
        await billed_visit(core, ZHANG_WEI, 1000)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "revoked"
    with pytest.raises(Conflict) as raised:
        await repair_credit(core, member_id, approved_by="王芳")
    assert raised.value.details == {"reason": "not_repairable", "status": "revoked"}
    await audit(core)
    assert await status_of(core, member_id) == "revoked"
