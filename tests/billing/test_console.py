"""The console's actions on the core: each one changes what it says, writes its audit row with
the state before and after in the same transaction, keeps the invariants, and a refused one
changes nothing. The audit log itself cannot be changed, by the database's own triggers."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from audit import audit
from billing import console, members
from billing.errors import Conflict, InvalidInput, NotFound
from billing.hospitals import add_hospital
from billing.operators import add_operator, signed_in
from billing.refunds import mark_refund
from billing.sweep import sweep
from helpers import bill, billed_visit, enrol, outbox, pay, pay_in_full, row_counts, status_of, used_fen
from storage.models import AuditEntry, Refund

ZHANG_WEI = "110105198503120012"  # 张伟, in the demo registry
NANTONG = "320602198305160096"  # 陈静


async def actor(core, role="operator", hospital=None):
    operator_id = await add_operator(core, f"{role}-{hospital or 'all'}", "a long enough password", role, hospital=hospital)
    return await signed_in(core, operator_id)


async def audit_rows(core) -> list[AuditEntry]:
    async with core.db.transaction() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action != "login").order_by(AuditEntry.id)))


async def overdue_beijing(core, clock) -> tuple[int, str]:
    """A Beijing member with one bill the insurer advanced (at once, by the policy), suspended."""
    member_id = await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 10000)
    clock.advance(timedelta(days=3))
    await sweep(core)
    assert (await bill(core, bill_no)).status == "advanced" and await status_of(core, member_id) == "suspended"
    return member_id, bill_no


async def test_a_write_off_releases_the_line_lifts_the_member_and_is_audited(make_core, clock):
    core = await make_core()
    member_id, bill_no = await overdue_beijing(core, clock)
    operator = await actor(core)

    await console.write_off(core, operator, bill_no, "insurer paid; the member died")

    assert (await bill(core, bill_no)).status == "written_off"
    assert await used_fen(core, member_id) == 0
    assert await status_of(core, member_id) == "active"  # nothing past due is left: Beijing lifts without repair
    [row] = await audit_rows(core)
    assert (row.username, row.action, row.target, row.reason) == ("operator-all", "write_off", f"bill:{bill_no}",
                                                                   "insurer paid; the member died")
    assert row.before == {"status": "advanced", "self_pay_fen": 10000, "paid_fen": 0, "disputed": False, "line_used_fen": 10000}
    assert row.after == {"status": "written_off", "self_pay_fen": 10000, "paid_fen": 0, "disputed": False, "line_used_fen": 0}
    await audit(core, swept=False)
    await sweep(core)
    await audit(core, swept=True)


async def test_money_paid_on_a_written_off_bill_is_recovered_without_freeing_the_line_again(make_core, clock):
    """The line stopped carrying the bill at the write-off: a payment that comes after it (at the
    window, or a late notice) still goes to the bill, for the insurer who advanced it, and gives
    nothing back to the line a second time."""
    core = await make_core()
    member_id, bill_no = await overdue_beijing(core, clock)
    await console.write_off(core, await actor(core), bill_no, "insurer paid; collection stopped")
    other = await billed_visit(core, ZHANG_WEI, 3000)
    assert await used_fen(core, member_id) == 3000

    view = await pay(core, bill_no, 4000)
    assert (view["status"], view["paid_fen"], view["owed_fen"]) == ("written_off", 4000, 0)
    assert await used_fen(core, member_id) == 3000
    await audit(core, swept=False)

    view = await pay(core, bill_no, 7000)  # 1,000 more than is left of it
    assert (view["status"], view["paid_fen"]) == ("paid", 10000)
    assert await used_fen(core, member_id) == 3000
    async with core.db.transaction() as session:
        refunds = [(r.amount_fen, r.reason) for r in await session.scalars(select(Refund).order_by(Refund.id))]
    assert refunds == [(1000, "overpaid")]
    await audit(core, swept=False)
    await pay_in_full(core, other)
    assert await used_fen(core, member_id) == 0 and await status_of(core, member_id) == "active"
    await audit(core, swept=False)


@pytest.mark.parametrize("reason", ["", "   "])
async def test_an_action_without_a_reason_is_refused(make_core, clock, reason):
    core = await make_core()
    _, bill_no = await overdue_beijing(core, clock)
    before = await row_counts(core)
    with pytest.raises(InvalidInput):
        await console.write_off(core, await actor(core), bill_no, reason)
    assert (await bill(core, bill_no)).status == "advanced"
    assert await row_counts(core) == {**before, "operators": 1}


async def test_only_an_advanced_bill_can_be_written_off(make_core):
    core = await make_core("nantong")
    await enrol(core, NANTONG)
    bill_no = await billed_visit(core, NANTONG, 5000)
    operator = await actor(core)
    before = await row_counts(core)
    with pytest.raises(Conflict) as refused:
        await console.write_off(core, operator, bill_no, "goodwill")
    assert refused.value.details["reason"] == "not_advanced"
    assert await row_counts(core) == before and (await bill(core, bill_no)).status == "open"


async def test_credit_repair_goes_through_repair_credit_and_is_audited_in_its_transaction(make_core, clock):
    core = await make_core("nantong")
    member_id = await enrol(core, NANTONG)
    bill_no = await billed_visit(core, NANTONG, 5000)
    clock.advance(timedelta(days=32))
    await sweep(core)
    assert await status_of(core, member_id) == "suspended"
    operator = await actor(core)

    before = await row_counts(core)
    with pytest.raises(Conflict) as refused:  # repair_credit's own rule: the overdue bill is unpaid
        await console.repair(core, operator, member_id, "asked at the window")
    assert refused.value.details["reason"] == "overdue_unpaid"
    assert await row_counts(core) == before and await audit_rows(core) == []

    await pay_in_full(core, bill_no)
    assert await status_of(core, member_id) == "suspended"  # Nantong: paying is not enough
    with pytest.raises(Conflict) as refused:
        await console.repair(core, operator, member_id, "repaid in full on 4 April")
    assert refused.value.details["missing"] == ["commitment"] and await audit_rows(core) == []
    await members.renew_commitment(core, member_id, core.policy.commitment_version)  # signed again in the chat
    assert await console.repair(core, operator, member_id, "repaid in full on 4 April") == "active"
    [row] = await audit_rows(core)
    assert (row.action, row.target, row.before, row.after) == ("repair", f"member:{member_id}", {"status": "suspended"},
                                                               {"status": "active"})
    await audit(core)


async def test_a_manual_suspension_holds_through_the_sweep_until_restored(make_core, clock):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    operator = await actor(core)
    await console.suspend(core, operator, member_id, "identity in doubt")
    clock.advance(timedelta(days=1))
    await sweep(core)
    assert await status_of(core, member_id) == "suspended"  # the ladder has nothing against them, and still waits

    await console.restore(core, operator, member_id, "identity confirmed")
    assert await status_of(core, member_id) == "active"
    assert [(r.action, r.before, r.after) for r in await audit_rows(core)] == [
        ("suspend", {"status": "active"}, {"status": "suspended"}), ("restore", {"status": "suspended"}, {"status": "active"})]
    await audit(core)


async def test_a_ladder_suspension_is_not_lifted_by_hand(make_core, clock):
    core = await make_core()
    member_id, _ = await overdue_beijing(core, clock)
    with pytest.raises(Conflict) as refused:
        await console.restore(core, await actor(core), member_id, "please")
    assert refused.value.details["reason"] == "not_manual"
    assert await status_of(core, member_id) == "suspended"


async def test_the_ladder_waits_on_a_disputed_bill_until_it_is_resolved(make_core, clock):
    core = await make_core("nantong")
    member_id = await enrol(core, NANTONG)
    bill_no = await billed_visit(core, NANTONG, 5000)
    operator = await actor(core)
    await console.dispute(core, operator, bill_no, "member says the drug was never given")
    clock.advance(timedelta(days=40))
    await sweep(core)
    assert await status_of(core, member_id) == "active"
    await audit(core, swept=True)

    await console.resolve(core, operator, bill_no, "pharmacy record shows it was given")
    assert await status_of(core, member_id) == "suspended"  # the 40 days count again at once
    assert (await bill(core, bill_no)).disputed_at is None
    await audit(core, swept=True)


async def test_a_bill_notice_is_queued_again_by_the_channel_chosen(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 3000)
    operator = await actor(core)
    await console.resend_notice(core, operator, bill_no, "wechat", "member lost the message")
    await console.resend_notice(core, operator, bill_no, "wechat", "asked again")
    notices = [n for n in await outbox(core, "bill_issued", member_id) if n.payload.get("channel") == "wechat"]
    assert len(notices) == 2 and {n.payload["bill_no"] for n in notices} == {bill_no}
    await console.resend_notice(core, operator, bill_no, "sms", "no WeChat on this phone")
    assert [n.payload["channel"] for n in await outbox(core, "bill_issued", member_id) if "channel" in n.payload] == [
        "wechat", "wechat", "sms"]
    with pytest.raises(InvalidInput):
        await console.resend_notice(core, operator, bill_no, "pigeon", "no")


async def test_a_failed_refund_is_tried_again_once_and_only_when_failed(make_core):
    core = await make_core()
    await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 3000)
    await pay(core, bill_no, 3500)  # 5 yuan too much: a refund is owed
    async with core.db.transaction() as session:
        refund_id = await session.scalar(select(Refund.id))
    assert await mark_refund(core, refund_id, "failed")
    operator = await actor(core)
    await console.retry_refund(core, operator, refund_id, "the bank card was blocked, now open")
    with pytest.raises(Conflict):
        await console.retry_refund(core, operator, refund_id, "twice")
    async with core.db.transaction() as session:
        assert await session.scalar(select(Refund.status)) == "pending"


async def test_another_hospitals_bill_is_not_found(make_core):
    core = await make_core()
    await add_hospital(core, "H2", "另一家医院", secret="hospital-secret-abcdefghijk")
    await enrol(core, ZHANG_WEI)
    bill_no = await billed_visit(core, ZHANG_WEI, 3000)
    other = await actor(core, "hospital", "H2")
    for action in (console.dispute(core, other, bill_no, "x"), console.resend_notice(core, other, bill_no, "wechat", "x")):
        with pytest.raises(NotFound):
            await action
    own = await actor(core, "hospital", "H1")
    await console.dispute(core, own, bill_no, "the patient disputes the lab fee")


async def test_a_full_number_is_shown_for_a_reason_and_audited(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    operator = await actor(core)
    assert await console.reveal(core, operator, member_id, "id_number", "insurer asks to confirm") == ZHANG_WEI
    [row] = await audit_rows(core)
    assert (row.action, row.target, row.before, row.after) == ("reveal_id_number", f"member:{member_id}", None, None)
    assert ZHANG_WEI not in str(row.reason)


async def test_the_database_refuses_to_change_or_delete_audit_rows(make_core, clock):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI)
    await console.suspend(core, await actor(core), member_id, "checking")
    for statement in (update(AuditEntry).values(reason="nothing happened"), text("DELETE FROM audit_log")):
        with pytest.raises(DBAPIError, match="append-only"):
            async with core.db.transaction() as session:
                await session.execute(statement)
    assert [r.reason for r in await audit_rows(core)] == ["checking"]
