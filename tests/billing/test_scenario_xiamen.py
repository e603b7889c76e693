"""Worked scenario, Xiamen 白鹭分 (seed 004): the line follows the credit score, a 42-day
interest-free period (the first institution's; tests/billing/test_interest.py has the institutions
and their interest), minors on a parent's line with the bill to the parent, suspension
beyond the period or over the limit, and a credit-score report when it happens again.
The auditor checks every money invariant after every step."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from audit import audit
from billing.errors import InvalidInput, NotEligible
from billing.members import bind_dependent, repair_credit
from billing.registry import DEMO_REGISTRY, CsvRegistry
from billing.repair import RepairIncomplete
from billing.rerating import Rerating, rerate
from helpers import (
    bill, billed_visit, charge, checkout, enrol, events, line, member, open_visit, outbox, pay_in_full, reminder_offsets,
    status_of, sweep_checked, used_fen, visit_with_charges,
)

PRESET = "xiamen"
WU_LIHUA = "350200197509300157"  # score 620
ZHENG_GUOQIANG = "350200196601100161"  # score 660
ZHENG_XIAOYU = "350211201608180179"  # born 2016, no score of her own
XU_WEN = "350211199001010181"  # no score


@pytest.mark.parametrize("id_number, score, limit_fen, value_added", [
    ("350203198703210132", 480, 50000, False),
    ("350203198904020140", 550, 100000, False),
    (WU_LIHUA, 620, 300000, False),
    (ZHENG_GUOQIANG, 660, 300000, True),
])
async def test_line_follows_the_credit_score(make_core, id_number, score, limit_fen, value_added):
    core = await make_core(PRESET)
    assert (await core.registry.lookup(id_number)).credit_score == score
    member_id = await enrol(core, id_number)
    await audit(core)
    assert (await line(core, member_id)).limit_fen == limit_fen
    assert (await member(core, member_id)).value_added is value_added
    inpatient = await line(core, member_id, "inpatient")  # 651 and over: a deposit-free inpatient line
    assert (inpatient.limit_fen if inpatient else None) == (1000000 if value_added else None)


async def test_a_hospital_stay_draws_on_the_deposit_free_line_of_651_and_over_and_on_the_outpatient_line_below(
        make_core, tmp_path):
    core = await make_core(PRESET)
    path = registry_with_scores(tmp_path, {ZHENG_GUOQIANG: 660})
    core.registry = CsvRegistry(path)
    zheng = await enrol(core, ZHENG_GUOQIANG)
    wu = await enrol(core, WU_LIHUA)
    stay = await open_visit(core, ZHENG_GUOQIANG, kind="inpatient")
    await charge(core, stay, 500000)  # more than the 3,000-yuan outpatient line: no deposit asked
    assert (await used_fen(core, zheng, "inpatient"), await used_fen(core, zheng)) == (500000, 0)
    await charge(core, await open_visit(core, WU_LIHUA, kind="inpatient"), 20000)
    assert await used_fen(core, wu) == 20000 and await line(core, wu, "inpatient") is None
    await audit(core)

    export_again(path, {ZHENG_GUOQIANG: 640}, 1)  # below 651: the deposit-free line is withdrawn
    await rerate(core, core.registry)
    await audit(core)
    inpatient = await line(core, zheng, "inpatient")
    assert (inpatient.limit_fen, inpatient.used_fen) == (0, 500000)  # what it carries stays until paid
    assert await status_of(core, zheng) == "suspended"  # over the line now (004: "超过其信用就医额度的")
    assert (await outbox(core, "line_rerated", zheng))[-1].payload["inpatient_fen"] is None


async def test_no_score_is_not_eligible(make_core):
    core = await make_core(PRESET)
    with pytest.raises(NotEligible) as raised:
        await enrol(core, XU_WEN)
    assert raised.value.details["reason"] == "no_credit_score"


async def test_42_day_interest_free_period_then_suspended(make_core):
    core = await make_core(PRESET)
    member_id = await enrol(core, WU_LIHUA)
    bill_no = await billed_visit(core, WU_LIHUA, 60000)
    await audit(core)
    issued = await bill(core, bill_no)
    assert (issued.due_at - issued.issued_at).total_seconds() == 1008 * 3600
    assert await reminder_offsets(core, bill_no) == [0]

    core.clock.advance(days=28)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 672]
    core.clock.advance(days=14)  # the 42nd day: still inside the period
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 672, 1008]
    assert (await bill(core, bill_no)).status == "open"
    assert await status_of(core, member_id) == "active"

    core.clock.advance(minutes=1)
    await sweep_checked(core)
    assert (await bill(core, bill_no)).status == "overdue"  # no insurer advance in Xiamen
    assert await status_of(core, member_id) == "suspended"
    assert await events(core, "credit_report") == []  # overdue, but not yet "经多次提醒，仍未履行"

    await pay_in_full(core, bill_no)
    await audit(core)
    assert await status_of(core, member_id) == "active"


async def test_the_score_is_lowered_once_after_repeated_reminders_go_unheeded(make_core):
    """"对经多次提醒，仍未履行还款义务的，将直接影响其个人信用白鹭分" (004): suspended when the bill falls
    due unpaid; reminded 7 and 14 days past due; still unpaid after the second, reported once, and
    not again while the suspension lasts; paid, active; the next bill unheeded is reported anew."""
    core = await make_core(PRESET)
    member_id = await enrol(core, WU_LIHUA)
    bill_no = await billed_visit(core, WU_LIHUA, 60000)
    core.clock.advance(hours=1008, minutes=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"

    core.clock.advance(days=7)
    await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 1008, 1176]  # a sweep sends only the latest reminder due
    assert await events(core, "credit_report") == []  # one reminder past due: not yet "多次"

    core.clock.advance(days=7)
    report = await sweep_checked(core)
    assert await reminder_offsets(core, bill_no) == [0, 1008, 1176, 1344]
    assert report.status_changes == 0 and await status_of(core, member_id) == "suspended"  # reported, not moved
    assert [(d["report"], d["stage"], d["unpaid_fen"]) for d in await events(core, "credit_report", member_id)] == [
        ("credit_score_lowered", "suspended", 60000)]

    core.clock.advance(days=30)
    await sweep_checked(core)
    assert len(await events(core, "credit_report", member_id)) == 1  # once a suspension
    # 鹭岛示例银行 (the first institution, chosen at enrolment): 44 whole days past due at 30 fen a day
    assert ((await bill(core, bill_no)).institution, (await bill(core, bill_no)).interest_fen) == ("ludao-bank", 44 * 30)

    await pay_in_full(core, bill_no)
    await audit(core)
    assert await status_of(core, member_id) == "active"
    second = await billed_visit(core, WU_LIHUA, 1000)
    for step in (timedelta(hours=1008, minutes=1), timedelta(days=7), timedelta(days=7)):
        core.clock.advance(step)
        await sweep_checked(core)
    assert [d["bills"] for d in await events(core, "credit_report", member_id)] == [
        [{"bill_no": bill_no, "unpaid_fen": 60000}], [{"bill_no": second, "unpaid_fen": 1000}]]


async def test_minor_is_charged_on_the_parent_line_and_the_bill_goes_to_the_parent(make_core):
    core = await make_core(PRESET)
    parent_id = await enrol(core, ZHENG_GUOQIANG, openid="o-parent")
    child_id = await bind_dependent(core, parent_id, "child", "郑小雨", ZHENG_XIAOYU)
    await audit(core)
    assert (await member(core, child_id)).status == "prospect"  # the child never enrols
    assert await line(core, child_id) is None

    visit = await visit_with_charges(core, ZHENG_XIAOYU, 4500, 2500)
    await audit(core)
    assert (visit.on_credit, visit.reason) == (True, "family")
    assert await used_fen(core, parent_id) == 7000
    bill_no = (await checkout(core, visit, insurance={visit.charge_nos[0]: 1500}))["bill_no"]
    await audit(core)

    issued = await bill(core, bill_no)
    assert (issued.payer_id, issued.self_pay_fen) == (parent_id, 5500)
    assert [m.member_id for m in await outbox(core, "bill_issued")] == [parent_id]
    assert await used_fen(core, parent_id) == 5500

    await pay_in_full(core, bill_no)
    await audit(core)
    assert await used_fen(core, parent_id) == 0


def registry_with_scores(tmp_path, scores: dict[str, int]) -> Path:
    """The demo registry as the city exports it again, with these members' new 白鹭分."""
    rows = DEMO_REGISTRY.read_text(encoding="utf-8").splitlines()
    changed = [",".join(row.split(",")[:-1] + [str(scores[row.split(",")[0]])]) if row.split(",")[0] in scores else row
               for row in rows]
    path = tmp_path / "registry.csv"
    path.write_text("\n".join(changed) + "\n", encoding="utf-8")
    return path


def export_again(path: Path, scores: dict[str, int], serial: int) -> None:
    """The same file rewritten with new scores (its modification time moved on, as a copy would)."""
    text = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(",".join(row.split(",")[:-1] + [str(scores[row.split(",")[0]])])
                               if row.split(",")[0] in scores else row for row in text) + "\n", encoding="utf-8")
    os.utime(path, ns=(serial * 10**9, serial * 10**9))


async def test_a_new_score_re_rates_the_line_and_over_the_limit_suspends_until_back_under(make_core, tmp_path):
    """"依托市民个人信用白鹭分进行价值分档" and "超过其信用就医额度的 → 暂停" (004): the registry's
    new score moves the line to its tier; below what is used, the member is suspended until paid
    back under it; a higher score brings the line and the value-added services back."""
    core = await make_core(PRESET)
    path = registry_with_scores(tmp_path, {WU_LIHUA: 620})
    core.registry = CsvRegistry(path)
    member_id = await enrol(core, WU_LIHUA)
    bill_no = await billed_visit(core, WU_LIHUA, 200000)
    await audit(core)

    export_again(path, {WU_LIHUA: 550}, 1)  # 3000 yuan -> 1000 yuan
    assert await rerate(core, core.registry) == Rerating(checked=1, rerated=1, missing=0)
    await audit(core)
    assert ((await line(core, member_id)).limit_fen, await used_fen(core, member_id)) == (100000, 200000)
    assert await status_of(core, member_id) == "suspended"
    assert (await outbox(core, "status_changed", member_id))[-1].payload["reason"] == "ladder:over_limit"
    notice = (await outbox(core, "line_rerated", member_id))[-1].payload
    assert (notice["score"], notice["before_fen"], notice["limit_fen"], notice["available_fen"]) == (550, 300000, 100000, 0)
    refused = await open_visit(core, WU_LIHUA)
    assert (refused.on_credit, refused.reason) == (False, "suspended")
    assert await rerate(core, core.registry) == Rerating(checked=1, rerated=0, missing=0)  # nothing moved: no notice
    assert len(await outbox(core, "line_rerated", member_id)) == 1

    await pay_in_full(core, bill_no)
    await audit(core)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active"
    assert await used_fen(core, member_id) == 0

    export_again(path, {WU_LIHUA: 660}, 2)
    assert await rerate(core, core.registry) == Rerating(checked=1, rerated=1, missing=0)
    await audit(core)
    assert (await line(core, member_id)).limit_fen == 300000 and (await member(core, member_id)).value_added
    assert (await outbox(core, "line_rerated", member_id))[-1].payload["value_added"] is True


async def test_a_flat_line_has_nothing_to_re_rate(make_core):
    core = await make_core("beijing-shijingshan")
    with pytest.raises(InvalidInput, match="does not follow a credit score"):
        await rerate(core, core.registry)


async def test_repaying_lifts_the_suspension_without_credit_repair(make_core):
    """Seed 004's 修复机制 repairs the 白鹭分, outside the programme: repaying lifts the
    suspension, and what repair asks for is only the overdue bill."""
    core = await make_core(PRESET)
    member_id = await enrol(core, WU_LIHUA)
    bill_no = await billed_visit(core, WU_LIHUA, 40000)
    core.clock.advance(days=42, minutes=1)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"
    with pytest.raises(RepairIncomplete) as raised:
        await repair_credit(core, member_id)
    await audit(core)
    assert (raised.value.repair.required, raised.value.details["unpaid_fen"]) == (False, 40000)
    await pay_in_full(core, bill_no)
    await audit(core)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "active"
    assert (await open_visit(core, WU_LIHUA)).on_credit
    await audit(core)
