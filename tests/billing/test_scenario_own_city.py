"""Worked scenario, a city of one's own from a TOML file alone: credit repair with what the
seed cities do not use, a waiting period and an operator's approval, or a waiting period
and a renewed commitment that complete by themselves at the sweep. The auditor checks every
money invariant after every step."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from audit import audit
from billing.members import renew_commitment, repair_credit
from billing.repair import RepairIncomplete
from helpers import bill, billed_visit, enrol, member, open_visit, outbox, pay_in_full, status_of, sweep_checked

ZHAO_LEI = "130102198808080087"  # insured in region 130000 in the demo registry
CITY = """
name = "石家庄信用就医"

[documents]
consent_version = "privacy-2026-01"
commitment_version = "commitment-2026-01"

[enrolment]
regions = ["130000"]
insurance_statuses = ["normal"]

[credit]
limit_fen = 150000

[repayment]
due_hours = 72
reminder_offsets_hours = [0]

[overdue]
repair_required = true

[repair]
{repair}

[[overdue.ladder]]
stage = "suspended"
days_overdue = 10
record_malicious_debt = true

[coverage]
exclusions = ["malicious_debt"]
"""


async def city_core(make_core, tmp_path: Path, repair: str):
    path = tmp_path / "shijiazhuang.toml"
    path.write_text(CITY.format(repair=repair), encoding="utf-8")
    return await make_core(str(path))


async def suspended_then_paid(core) -> tuple[int, str]:
    """Enrolled, a bill 10 days overdue (suspended), then paid a day later."""
    member_id = await enrol(core, ZHAO_LEI)
    bill_no = await billed_visit(core, ZHAO_LEI, 30000)
    await audit(core)
    core.clock.set((await bill(core, bill_no)).due_at)
    core.clock.advance(days=10, minutes=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    core.clock.advance(days=1)
    await pay_in_full(core, bill_no)
    await audit(core)
    await sweep_checked(core)
    return member_id, bill_no


async def test_repair_after_a_waiting_period_with_an_operator_approval(make_core, tmp_path):
    core = await city_core(make_core, tmp_path, "wait_days = 7\noperator_approval = true")
    member_id, _ = await suspended_then_paid(core)
    paid_at = core.clock.now()
    assert await status_of(core, member_id) == "suspended"

    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id, approved_by="王芳")
    await audit(core)
    assert raised.value.repair.missing == ("waiting",)
    assert raised.value.repair.wait_until == paid_at + timedelta(days=7)  # from the payment, after the suspension
    assert raised.value.details["wait_until"] == (paid_at + timedelta(days=7)).isoformat()

    core.clock.advance(days=7)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"  # not by itself: an operator approves
    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id)
    assert (raised.value.repair.missing, raised.value.details["reason"]) == (("approval",), "approval")
    refused = await open_visit(core, ZHAO_LEI)
    await audit(core)
    assert (refused.on_credit, refused.reason) == (False, "malicious_debt")

    assert await repair_credit(core, member_id, approved_by="王芳") == "active"
    await audit(core)
    restored = await member(core, member_id)
    assert (restored.status, restored.malicious_debt) == ("active", False)
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "credit_repair:approved_by:王芳"
    assert (await open_visit(core, ZHAO_LEI)).on_credit
    await audit(core)


async def test_repair_completes_by_itself_after_the_wait_and_the_commitment(make_core, tmp_path):
    core = await city_core(make_core, tmp_path, "wait_days = 3\nrenew_commitment = true\nautomatic = true")
    member_id, _ = await suspended_then_paid(core)
    core.clock.advance(days=3)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"  # the wait is over, the commitment is not signed

    repair = await renew_commitment(core, member_id, core.policy.commitment_version)
    await audit(core)
    assert repair.missing == ()
    await sweep_checked(core)
    restored = await member(core, member_id)
    assert (restored.status, restored.malicious_debt, restored.repaired_at) == ("active", False, core.clock.now())
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "credit_repair"


async def test_the_sweep_waits_for_the_waiting_period(make_core, tmp_path):
    core = await city_core(make_core, tmp_path, "wait_days = 3\nautomatic = true")
    member_id, _ = await suspended_then_paid(core)
    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id)
    assert raised.value.repair.missing == ("waiting",)
    until = raised.value.repair.wait_until
    core.clock.set(until)
    core.clock.advance(seconds=-1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    core.clock.advance(seconds=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active"
