"""Programme events (DESIGN §4.6) are written with the state change that causes each, once,
with the data the receiver reads: bill numbers, hospital codes, amounts in fen, masked
personal numbers and nothing else personal. Beijing policy: the insurer advances at once."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from billing import members, visits
from billing.outbox import EVENT
from helpers import bill, checkout, enrol, events, outbox, pay, split_for, sweep_checked, visit_with_charges
from storage.models import Outbox, StatusChange

RELATIVE, RELATIVE_PHONE = "11010819920709006X", "13800138002"  # 刘洋
MOTHER = "110108195203040075"  # 刘桂兰, bound by her son
ZHANG_WEI = "110105198503120012"


async def all_events(core) -> list[dict]:
    async with core.db.transaction() as session:
        return [row.payload for row in await session.scalars(select(Outbox).where(Outbox.kind == EVENT).order_by(Outbox.id))]


async def names_since(core, seen: int) -> list[str]:
    return [body["event"] for body in (await all_events(core))[seen:]]


async def test_every_bill_and_member_event_is_written_where_its_state_changes(make_core):
    core = await make_core("beijing-shijingshan")
    son = await enrol(core, RELATIVE, phone=RELATIVE_PHONE)
    await members.bind_dependent(core, son, "parent", "刘桂兰", MOTHER)
    assert await all_events(core) == []  # enrolling and binding a relative are no programme events

    visit = await visit_with_charges(core, MOTHER, 30000, 12000)
    body = await split_for(core, visit, {visit.charge_nos[0]: 10000})
    answer = await visits.checkout(core, "H1", visit.visit_no, body)
    assert await visits.checkout(core, "H1", visit.visit_no, body) == answer  # a replay writes nothing again
    bill_no, issued_at = answer["bill_no"], core.clock.now()
    due_at = datetime.fromisoformat(answer["due_at"])
    [issued] = await all_events(core)
    masked = {"bill_no": bill_no, "hospital": "H1", "due_at": due_at.isoformat(),
              "payer_id_number_masked": "110108********006X", "patient_id_number_masked": "110108********0075"}
    assert issued["event"] == "bill_issued" and issued["occurred_at"] == issued_at.isoformat()
    assert issued["data"] == {**masked, "self_pay_fen": 32000}

    core.clock.advance(hours=1)
    await pay(core, bill_no, 10000, payment_no="P-1", channel="kiosk")
    [paid] = (await all_events(core))[1:]
    assert (paid["event"], paid["data"]) == ("payment_received", {
        **masked, "channel": "kiosk", "amount_fen": 10000, "applied_fen": 10000, "interest_fen": 0, "unpaid_fen": 22000,
        "bill_status": "open"})

    core.clock.set(due_at + timedelta(minutes=1))
    await sweep_checked(core)
    overdue, advance, suspended = (await all_events(core))[2:]
    assert (overdue["event"], overdue["data"]) == ("bill_overdue", {**masked, "unpaid_fen": 22000})
    assert (advance["event"], advance["data"]) == ("advance_requested", {**masked, "unpaid_fen": 22000})
    assert (suspended["event"], suspended["data"]) == ("member_suspended", {
        "id_number_masked": "110108********006X", "phone_masked": "138****8002", "from": "active",
        "reason": "ladder:days_overdue>=0"})
    assert {overdue["occurred_at"], advance["occurred_at"], suspended["occurred_at"]} == {core.clock.now().isoformat()}
    assert (await bill(core, bill_no)).status == "advanced"

    await pay(core, bill_no, 25000, payment_no="P-2")  # 30.00 yuan more than is owed
    settled, restored, refund = (await all_events(core))[5:]
    assert (settled["event"], settled["data"]["applied_fen"], settled["data"]["bill_status"]) == ("payment_received", 22000, "paid")
    assert refund["event"] == "refund_issued"
    assert {k: refund["data"][k] for k in ("bill_no", "hospital", "amount_fen", "reason")} == {
        "bill_no": bill_no, "hospital": "H1", "amount_fen": 3000, "reason": "overpaid"}
    assert (restored["event"], restored["data"]["from"]) == ("member_restored", "suspended")

    await sweep_checked(core)
    bodies = await all_events(core)
    assert len(bodies) == 8 and len({b["event_id"] for b in bodies}) == 8
    _nothing_personal_unmasked(bodies, RELATIVE, RELATIVE_PHONE, MOTHER)


async def test_a_blacklisting_reports_the_member_and_the_unpaid_bills_to_the_credit_system(make_core):
    core = await make_core("beijing-shijingshan")
    await enrol(core, ZHANG_WEI)
    bill_no = (await checkout(core, await visit_with_charges(core, ZHANG_WEI, 25000)))["bill_no"]
    core.clock.set((await bill(core, bill_no)).due_at + timedelta(minutes=1))
    await sweep_checked(core)
    seen = len(await all_events(core))
    core.clock.advance(days=90)
    await sweep_checked(core)
    assert await names_since(core, seen) == ["member_blacklisted", "credit_report"]
    blacklisted, report = (await all_events(core))[seen:]
    assert blacklisted["data"]["from"] == "suspended"
    assert report["data"] == {"id_number_masked": "110105********0012", "phone_masked": "138****8000",
                              "report": "central_bank_credit_system", "stage": "blacklisted",
                              "bills": [{"bill_no": bill_no, "unpaid_fen": 25000}], "unpaid_fen": 25000}
    await sweep_checked(core)
    assert await names_since(core, seen) == ["member_blacklisted", "credit_report"]  # once
    _nothing_personal_unmasked(await all_events(core), ZHANG_WEI, "13800138000")


async def test_members_the_sweep_moves_together_are_each_told_and_reported_with_their_own_bills(make_core):
    core = await make_core("beijing-shijingshan")
    people = {ZHANG_WEI: (25000,), RELATIVE: (1000, 2000), "110105194908150027": (700,)}
    member_ids = {id_number: await enrol(core, id_number) for id_number in people}
    bill_nos = {id_number: [(await checkout(core, await visit_with_charges(core, id_number, fen)))["bill_no"] for fen in amounts]
                for id_number, amounts in people.items()}
    core.clock.set(max([(await bill(core, no)).due_at for nos in bill_nos.values() for no in nos]) + timedelta(minutes=1))
    assert (await sweep_checked(core)).status_changes == 3
    core.clock.advance(days=90)
    assert (await sweep_checked(core)).status_changes == 3
    async with core.db.transaction() as session:
        changes = {row.id: row for row in await session.scalars(select(StatusChange).where(StatusChange.reason.startswith("ladder:")))}
    for id_number, member_id in member_ids.items():
        mine = {change_id for change_id, change in changes.items() if change.member_id == member_id}
        assert [changes[change_id].to_status for change_id in sorted(mine)] == ["suspended", "blacklisted"]
        notices = await outbox(core, "status_changed", member_id)
        assert {notice.dedupe_key for notice in notices if notice.payload["reason"].startswith("ladder:")} == {
            f"status:{change_id}" for change_id in mine}
        assert [notice.payload["to"] for notice in notices][-2:] == ["suspended", "blacklisted"]
        [report] = await events(core, "credit_report", member_id)
        assert report["bills"] == [{"bill_no": no, "unpaid_fen": fen} for no, fen in zip(bill_nos[id_number], people[id_number])]
        assert report["id_number_masked"] == f"{id_number[:6]}********{id_number[-4:]}"
        assert [moved["from"] for moved in await events(core, "member_blacklisted", member_id)] == ["suspended"]


async def test_six_overdues_revoke_and_the_revocation_is_an_event(make_core):
    core = await make_core("beijing-shijingshan")
    await enrol(core, ZHANG_WEI)
    for _ in range(6):
        bill_no = (await checkout(core, await visit_with_charges(core, ZHANG_WEI, 1000)))["bill_no"]
        core.clock.set((await bill(core, bill_no)).due_at + timedelta(minutes=1))
        await sweep_checked(core)
        await pay(core, bill_no, 1000)
    names = [body["event"] for body in await all_events(core)]
    assert names.count("advance_requested") == 6 and names.count("member_restored") == 5  # paying lifted the first five
    assert names[-4:] == ["bill_overdue", "advance_requested", "member_revoked", "payment_received"]  # no restoring


def _nothing_personal_unmasked(bodies: list[dict], *numbers: str) -> None:
    text = json.dumps(bodies, ensure_ascii=False)
    for number in numbers:
        assert number not in text
