"""Worked scenario, Nantong First People's (seed 002): pay within 24 h of the visit, one
reminder past 24 h; over 30 days overdue, no service until repaid and repaired (信用修复);
five kinds of visit the programme does not cover. The auditor checks every money
invariant after every step."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import update

from audit import audit
from billing.errors import Conflict, InvalidInput, NotEligible
from billing.members import bind_dependent, check_eligibility, renew_commitment, repair_credit
from billing.repair import RepairIncomplete
from billing.policy import EXCLUSION_CODES
from helpers import (
    bill, billed_visit, charge, enrol, events, member, open_visit, outbox, pay_in_full, reminder_offsets, status_of,
    sweep_checked, used_fen,
)
from storage.models import Member

PRESET = "nantong"
CHEN_JING = "320602198305160096"
CHEN_YIMING = "320611201104050115"  # 14 on the tests' first day
CHEN_XIAOYU = "320602201308120078"  # 12


async def test_due_in_24_hours_reminded_once_then_suspended_until_repaired(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, CHEN_JING)
    bill_no = await billed_visit(core, CHEN_JING, 20000)
    await audit(core)
    issued = await bill(core, bill_no)
    assert (issued.due_at - issued.issued_at).total_seconds() == 24 * 3600
    assert await reminder_offsets(core, bill_no) == []  # no reminder at leaving in Nantong
    assert len(await outbox(core, "bill_issued", member_id)) == 1

    core.clock.advance(hours=23)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == []

    core.clock.advance(hours=1, minutes=1)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [24]
    assert [m.payload["offset_hours"] for m in await outbox(core, "bill_reminder", member_id)] == [24]
    assert (await bill(core, bill_no)).status == "overdue"  # no insurer advance here
    assert await status_of(core, member_id) == "active"  # overdue, but not yet 30 days

    core.clock.set(issued.due_at)
    core.clock.advance(days=29, hours=23)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active"

    core.clock.advance(hours=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    assert (await member(core, member_id)).malicious_debt
    assert [(d["report"], d["stage"]) for d in await events(core, "credit_report", member_id)] == [
        ("personal_credit_file", "suspended")
    ]
    refused = await open_visit(core, CHEN_JING)
    await audit(core)
    assert (refused.on_credit, refused.reason) == (False, "malicious_debt")

    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id)
    assert raised.value.details["reason"] == "overdue_unpaid"
    assert raised.value.repair.missing == ("overdue_unpaid", "commitment")
    assert [(b.bill_no, b.unpaid_fen) for b in raised.value.repair.overdue_bills] == [(bill_no, 20000)]
    await audit(core)
    assert await status_of(core, member_id) == "suspended"

    await pay_in_full(core, bill_no)
    await audit(core)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).status == "paid"
    assert await used_fen(core, member_id) == 0
    assert await status_of(core, member_id) == "suspended"  # paying alone does not restore

    with pytest.raises(RepairIncomplete) as raised:  # repair asks for the commitment signed again
        await repair_credit(core, member_id)
    assert raised.value.repair.missing == ("commitment",)
    core.clock.advance(minutes=5)
    assert (await renew_commitment(core, member_id, core.policy.commitment_version)).missing == ()
    assert (await member(core, member_id)).commitment_signed_at == core.clock.now()
    await audit(core)
    assert await status_of(core, member_id) == "suspended"  # signing is not repairing: the member asks for it
    assert await repair_credit(core, member_id, asked_by="member") == "active"
    await audit(core)
    restored = await member(core, member_id)
    assert restored.status == "active" and not restored.malicious_debt
    welcome_back = await open_visit(core, CHEN_JING)
    await audit(core)
    assert (welcome_back.on_credit, welcome_back.reason) == (True, "ok")


@pytest.mark.parametrize("code", EXCLUSION_CODES)
async def test_excluded_visit_is_served_but_not_on_credit(make_core, code):
    core = await make_core(PRESET)
    member_id = await enrol(core, CHEN_JING)
    visit = await open_visit(core, CHEN_JING, exclusion=code)
    await audit(core)
    assert (visit.on_credit, visit.reason) == (False, code)
    served = await charge(core, visit, 8000)
    await audit(core)
    assert served["on_credit"] is False
    assert await used_fen(core, member_id) == 0


async def test_member_with_malicious_debt_record_is_not_on_credit(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, CHEN_JING)
    async with core.db.transaction() as session:
        await session.execute(update(Member).where(Member.id == member_id).values(malicious_debt=True))
    visit = await open_visit(core, CHEN_JING)
    await audit(core)
    assert (visit.on_credit, visit.reason) == (False, "malicious_debt")
    assert (await charge(core, visit, 3000))["on_credit"] is False
    await audit(core)
    assert await used_fen(core, member_id) == 0


async def test_a_new_commitment_version_is_what_repair_signs(make_core):
    """The commitment signed in repair is the policy's current one, and the member's row says so."""
    core = await make_core(PRESET)
    member_id = await enrol(core, CHEN_JING)
    assert (await member(core, member_id)).commitment_version == "nantong-2023-07"
    bill_no = await billed_visit(core, CHEN_JING, 5000)
    core.clock.advance(days=31, hours=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    await pay_in_full(core, bill_no)
    await audit(core)
    core.policy = replace(core.policy, commitment_version="commitment-2026-01")  # the city published a new text
    with pytest.raises(InvalidInput):
        await renew_commitment(core, member_id, "nantong-2023-07")
    assert (await renew_commitment(core, member_id, "commitment-2026-01")).missing == ()
    signed = await member(core, member_id)
    assert (signed.commitment_version, signed.commitment_signed_at) == ("commitment-2026-01", core.clock.now())
    assert await repair_credit(core, member_id, asked_by="member") == "active"
    await audit(core)
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "credit_repair:member"
    with pytest.raises(Conflict) as raised:  # nothing asks for the commitment now
        await renew_commitment(core, member_id, "commitment-2026-01")
    assert raised.value.details["reason"] == "commitment_not_asked"


async def test_a_teenager_of_fourteen_comes_alone_and_a_guardian_who_binds_them_pays(make_core):
    """"该模式也适用于14岁以上的青少年，让他们在特殊情况下可以独自来院就诊" (002): 陈一鸣, 14, enrols
    and is served on a line of his own, with no guardian's consent; once his mother binds him
    (亲情付) his visits go on her line. 陈小雨, 12, cannot enrol alone."""
    core = await make_core(PRESET)
    assert (await check_eligibility(core, CHEN_XIAOYU)).reason == "under_age"
    with pytest.raises(NotEligible):
        await enrol(core, CHEN_XIAOYU)

    teen_id = await enrol(core, CHEN_YIMING)
    alone = await open_visit(core, CHEN_YIMING)
    assert (alone.on_credit, alone.reason) == (True, "ok")
    await charge(core, alone, 5000)
    assert await used_fen(core, teen_id) == 5000
    await audit(core)

    mother_id = await enrol(core, CHEN_JING)
    await bind_dependent(core, mother_id, "child", "陈一鸣", CHEN_YIMING)
    with_mother = await open_visit(core, CHEN_YIMING)
    assert (with_mother.on_credit, with_mother.reason) == (True, "family")
    await charge(core, with_mother, 3000)
    assert (await used_fen(core, mother_id), await used_fen(core, teen_id)) == (3000, 5000)
    await audit(core)
