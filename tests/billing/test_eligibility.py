"""Who may be in the programme: the pure eligibility decision per policy, the only status
moves there are, and 解约 (cancel the agreement) and signing again."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, update

from billing.eligibility import Eligibility, decide
from billing.errors import Conflict, IllegalTransition
from billing.members import cancel_agreement, check_eligibility
from billing.policy import load_policy
from billing.registry import Resident
from billing.status import LEGAL_MOVES, move_status
from helpers import billed_visit, checkout, enrol, id_number_for, line, open_visit, pay_in_full, status_of, visit_with_charges
from storage.models import MEMBER_STATUSES, Member, StatusChange

BEIJING, NANTONG, XIAMEN = (load_policy(name) for name in ("beijing-shijingshan", "nantong", "xiamen"))
TODAY = date(2026, 3, 2)
ADULT = "110105198503120012"


def resident(region="110000", insurance="normal", dishonest=False, score=None, name="张伟", id_number=ADULT) -> Resident:
    return Resident(id_number, name, region, insurance, dishonest, score)


@pytest.mark.parametrize("policy, person, expected", [
    (BEIJING, resident(), Eligibility(True, "ok", 200000)),
    (BEIJING, None, Eligibility(False, "not_in_registry")),
    (BEIJING, resident(region="130000"), Eligibility(False, "insured_elsewhere")),
    (BEIJING, resident(region="130000", dishonest=True), Eligibility(False, "insured_elsewhere")),  # first reason wins
    (BEIJING, resident(insurance="suspended"), Eligibility(False, "insurance_not_normal")),
    (BEIJING, resident(insurance="none"), Eligibility(False, "insurance_not_normal")),
    (BEIJING, resident(dishonest=True), Eligibility(False, "dishonest")),
    (BEIJING, resident(score=900), Eligibility(True, "ok", 200000)),  # a flat line ignores scores
    (NANTONG, resident(region="320600"), Eligibility(True, "ok", 300000)),
    (NANTONG, resident(), Eligibility(False, "insured_elsewhere")),
    (XIAMEN, resident(region="440300", insurance="none", dishonest=True, score=700), Eligibility(True, "ok", 300000, True)),
    (XIAMEN, resident(score=None), Eligibility(False, "no_credit_score")),
    (XIAMEN, resident(score=0), Eligibility(True, "ok", 50000)),
    (XIAMEN, resident(score=500), Eligibility(True, "ok", 50000)),
    (XIAMEN, resident(score=501), Eligibility(True, "ok", 100000)),
    (XIAMEN, resident(score=600), Eligibility(True, "ok", 100000)),
    (XIAMEN, resident(score=601), Eligibility(True, "ok", 300000)),
    (XIAMEN, resident(score=650), Eligibility(True, "ok", 300000, False)),
    (XIAMEN, resident(score=651), Eligibility(True, "ok", 300000, True)),
])
def test_decide(policy, person, expected):
    assert decide(policy, ADULT, person, TODAY) == expected


@pytest.mark.parametrize("policy, born, today, reason", [
    (BEIJING, "20080302", TODAY, "ok"),  # 18 today
    (BEIJING, "20080303", TODAY, "under_age"),  # 18 tomorrow
    (NANTONG, "20120302", TODAY, "ok"),  # Nantong: 14 may come alone
    (NANTONG, "20120303", TODAY, "under_age"),
    (BEIJING, "20080229", date(2026, 2, 28), "under_age"),  # a leap-day birthday falls on 1 March
    (BEIJING, "20080229", date(2026, 3, 1), "ok"),
])
def test_age_limit(policy, born, today, reason):
    id_number = id_number_for(born, 1, "320602" if policy is NANTONG else "110105")
    region = "320600" if policy is NANTONG else "110000"
    assert decide(policy, id_number, resident(region=region, id_number=id_number), today).reason == reason


def test_the_name_must_match_the_registry():
    assert decide(BEIJING, ADULT, resident(), TODAY, name=" 张伟 ").eligible
    assert decide(BEIJING, ADULT, resident(), TODAY, name="张玮") == Eligibility(False, "name_mismatch")


async def test_check_eligibility_reads_the_registry(make_core):
    core = await make_core("xiamen")
    assert await check_eligibility(core, "350200196601100161") == Eligibility(True, "ok", 300000, True)
    assert (await check_eligibility(core, "350211199001010181")).reason == "no_credit_score"


async def test_only_legal_status_moves_are_possible(make_core):
    core = await make_core("beijing-shijingshan")
    member_id = await enrol(core, ADULT)
    for old in MEMBER_STATUSES:
        for new in MEMBER_STATUSES:
            async with core.db.transaction() as session:
                await session.execute(update(Member).where(Member.id == member_id).values(status=old))
            async with core.db.transaction() as session:
                member = await session.get(Member, member_id)
                changes_before = await session.scalar(select(func.count()).select_from(StatusChange))
                if new in LEGAL_MOVES[old]:
                    await session.run_sync(move_status, member, new, "test", core.clock.now(), pii=core.pii)
                    assert member.status == new
                else:
                    with pytest.raises(IllegalTransition):
                        await session.run_sync(move_status, member, new, "test", core.clock.now(), pii=core.pii)
                    assert member.status == old
                    assert await session.scalar(select(func.count()).select_from(StatusChange)) == changes_before
    assert LEGAL_MOVES["blacklisted"] == frozenset()
    assert "active" not in LEGAL_MOVES["revoked"]
    assert "cancelled" not in LEGAL_MOVES["suspended"]  # 解约 is no way around a suspension


async def test_cancel_agreement_only_with_nothing_owed_then_sign_again(make_core):
    core = await make_core("beijing-shijingshan")
    member_id = await enrol(core, ADULT)

    visit = await visit_with_charges(core, ADULT, 6000)  # a hold is money owed too
    with pytest.raises(Conflict) as raised:
        await cancel_agreement(core, member_id)
    assert raised.value.details["reason"] == "money_owed"

    bill_no = (await checkout(core, visit))["bill_no"]
    with pytest.raises(Conflict):
        await cancel_agreement(core, member_id)
    assert await status_of(core, member_id) == "active"

    await pay_in_full(core, bill_no)
    await cancel_agreement(core, member_id)
    assert await status_of(core, member_id) == "cancelled"
    gone = await open_visit(core, ADULT)
    assert (gone.on_credit, gone.reason) == (False, "not_enrolled")

    assert await enrol(core, ADULT, phone="13900139000") == member_id
    assert await status_of(core, member_id) == "active"
    assert ((await line(core, member_id)).limit_fen, (await line(core, member_id)).used_fen) == (200000, 0)
    back = await open_visit(core, ADULT)
    assert (back.on_credit, back.reason) == (True, "ok")


async def test_a_suspended_member_cannot_cancel(make_core):
    core = await make_core("nantong")
    member_id = await enrol(core, "320602198305160096")
    await pay_in_full(core, await billed_visit(core, "320602198305160096", 100))
    async with core.db.transaction() as session:
        await session.execute(update(Member).where(Member.id == member_id).values(status="suspended"))
    with pytest.raises(IllegalTransition):
        await cancel_agreement(core, member_id)
    assert await status_of(core, member_id) == "suspended"
