"""家人 / 亲情付: a bound dependent is served on the payer's line, the bill goes to the
payer; minors always, elders unless enrolled with a line of their own."""
from __future__ import annotations

from dataclasses import replace

import pytest

from audit import audit
from billing.errors import Conflict, InvalidInput, NotEligible, NotFound
from billing.members import bind_dependent, unbind_dependent
from helpers import (
    bill, billed_visit, checkout, enrol, id_number_for, member, open_visit, outbox, pay_in_full, status_of, sweep_checked,
    used_fen, visit_with_charges,
)

LIU_YANG = "11010819920709006X"
LIU_GUILAN = "110108195203040075"  # his mother, 74
CHEN_JING = "320602198305160096"  # Nantong
CHEN_YIMING = "320611201104050115"  # her son, 14: may enrol and come alone in Nantong


async def test_an_elder_without_enrolment_is_served_on_the_child_line(make_core):
    core = await make_core("beijing-shijingshan")
    payer_id = await enrol(core, LIU_YANG, openid="o-liuyang")
    elder_id = await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    assert (await member(core, elder_id)).status == "prospect"

    visit = await visit_with_charges(core, LIU_GUILAN, 6000, 4000)
    assert (visit.on_credit, visit.reason) == (True, "family")
    assert await used_fen(core, payer_id) == 10000
    bill_no = (await checkout(core, visit, insurance={visit.charge_nos[0]: 5000}))["bill_no"]
    await audit(core)
    assert (await bill(core, bill_no)).payer_id == payer_id
    notices = await outbox(core, "bill_issued")
    assert [(m.member_id, m.payload["patient_id"]) for m in notices] == [(payer_id, elder_id)]
    await pay_in_full(core, bill_no)
    assert await used_fen(core, payer_id) == 0
    await audit(core)


async def test_an_enrolled_elder_uses_her_own_line(make_core):
    core = await make_core("beijing-shijingshan")
    payer_id = await enrol(core, LIU_YANG)
    elder_id = await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    assert await enrol(core, LIU_GUILAN) == elder_id  # the dependent signs up herself: same person
    visit = await visit_with_charges(core, LIU_GUILAN, 3000)
    assert (visit.on_credit, visit.reason) == (True, "ok")
    assert (await used_fen(core, elder_id), await used_fen(core, payer_id)) == (3000, 0)


async def test_an_enrolled_minor_bound_to_a_parent_draws_on_the_parent_line(make_core):
    core = await make_core("nantong")
    teen_id = await enrol(core, CHEN_YIMING, openid="o-teen")
    alone = await visit_with_charges(core, CHEN_YIMING, 1500)
    assert (alone.on_credit, alone.reason) == (True, "ok")  # a 14-year-old with no guardian bound pays himself
    await checkout(core, alone)

    parent_id = await enrol(core, CHEN_JING, openid="o-parent")
    assert await bind_dependent(core, parent_id, "child", "陈一鸣", CHEN_YIMING) == teen_id
    visit = await visit_with_charges(core, CHEN_YIMING, 2500)
    assert (visit.on_credit, visit.reason) == (True, "family")
    assert (await used_fen(core, parent_id), await used_fen(core, teen_id)) == (2500, 1500)
    bill_no = (await checkout(core, visit))["bill_no"]
    await audit(core)
    assert (await bill(core, bill_no)).payer_id == parent_id
    # the parent pays; the teen, who has the official account, is told as well
    told = sorted(m.member_id for m in await outbox(core, "bill_issued") if m.payload["bill_no"] == bill_no)
    assert told == sorted([teen_id, parent_id])


async def test_a_dependent_is_not_on_credit_while_the_payer_is_suspended(make_core):
    core = await make_core("beijing-shijingshan")
    payer_id = await enrol(core, LIU_YANG)
    await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    bill_no = await billed_visit(core, LIU_YANG, 2000)
    core.clock.advance(hours=49)
    await sweep_checked(core)
    assert await status_of(core, payer_id) == "suspended"
    refused = await open_visit(core, LIU_GUILAN)
    assert (refused.on_credit, refused.reason) == (False, "payer_not_active")
    with pytest.raises(NotEligible):
        await bind_dependent(core, payer_id, "spouse", "某人", id_number_for("19900101", 11))

    await pay_in_full(core, bill_no)
    again = await open_visit(core, LIU_GUILAN)
    assert (again.on_credit, again.reason) == (True, "family")


async def test_binding_is_checked(make_core):
    core = await make_core("beijing-shijingshan")
    payer_id = await enrol(core, LIU_YANG)
    with pytest.raises(InvalidInput, match="relation"):
        await bind_dependent(core, payer_id, "cousin", "刘桂兰", LIU_GUILAN)
    with pytest.raises(InvalidInput) as wrong_name:
        await bind_dependent(core, payer_id, "parent", "刘桂英", LIU_GUILAN)
    assert wrong_name.value.details["field"] == "name"
    with pytest.raises(InvalidInput) as self_bound:
        await bind_dependent(core, payer_id, "spouse", "刘洋", LIU_YANG)
    assert self_bound.value.details["field"] == "id_number"
    with pytest.raises(InvalidInput):
        await bind_dependent(core, payer_id, "parent", "刘桂兰", "110108195203040076")

    await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    with pytest.raises(Conflict) as twice:
        await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    assert twice.value.details["reason"] == "already_bound"
    for serial in range(1, 5):
        await bind_dependent(core, payer_id, "child", "孩子", id_number_for("20200101", serial))
    with pytest.raises(Conflict) as too_many:
        await bind_dependent(core, payer_id, "child", "孩子", id_number_for("20200101", 5))
    assert too_many.value.details["reason"] == "too_many_dependents"


@pytest.mark.parametrize("switch, relation, id_number", [
    ("adult_children_pay_parents", "parent", LIU_GUILAN),
    ("minors_share_guardian_line", "child", id_number_for("20200101", 7)),
])
async def test_a_policy_can_turn_family_payment_off(make_core, switch, relation, id_number):
    core = await make_core("beijing-shijingshan")
    core.policy = replace(core.policy, **{switch: False})
    payer_id = await enrol(core, LIU_YANG)
    with pytest.raises(NotEligible) as raised:
        await bind_dependent(core, payer_id, relation, "刘桂兰" if relation == "parent" else "孩子", id_number)
    assert raised.value.details["reason"] == "family_not_allowed"


async def test_unbinding_waits_for_the_visit_in_progress(make_core):
    core = await make_core("beijing-shijingshan")
    payer_id = await enrol(core, LIU_YANG)
    elder_id = await bind_dependent(core, payer_id, "parent", "刘桂兰", LIU_GUILAN)
    visit = await visit_with_charges(core, LIU_GUILAN, 1000)
    with pytest.raises(Conflict) as raised:
        await unbind_dependent(core, payer_id, elder_id)
    assert raised.value.details["reason"] == "visit_in_progress"

    await checkout(core, visit)
    await unbind_dependent(core, payer_id, elder_id)
    after = await open_visit(core, LIU_GUILAN)
    assert (after.on_credit, after.reason) == (False, "not_enrolled")
    with pytest.raises(NotFound):
        await unbind_dependent(core, payer_id, elder_id)
    await audit(core)
