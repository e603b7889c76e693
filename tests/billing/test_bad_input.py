"""Bad input gets a clear error naming the field or the reason, and changes nothing:
every table keeps its row count and every line its used_fen."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import pytest

from billing import members, payments, visits
from billing.core import Core
from billing.errors import BillingError, Conflict, InvalidInput, NotEligible, NotFound
from billing.hospitals import add_hospital
from billing.identity import normalise_id_number
from helpers import PHONE, VisitRef, checkout, enrol, member, snapshot, split_for, visit_with_charges

ZHANG_WEI = "110105198503120012"
BAD_CHECKSUM = "110105198503120013"


@dataclass
class World:
    core: Core
    member_id: int
    visit: VisitRef  # open, two held charges of 10000 and 5000
    bill_no: str  # of another visit, checked out
    billed_visit_no: str


@pytest.fixture
async def world(make_core) -> World:
    core = await make_core("beijing-shijingshan")
    await add_hospital(core, "H2", "另一家医院", secret="hospital-secret-abcdefghij")
    member_id = await enrol(core, ZHANG_WEI)
    billed = await visit_with_charges(core, ZHANG_WEI, 3000)
    bill_no = (await checkout(core, billed))["bill_no"]
    visit = await visit_with_charges(core, ZHANG_WEI, 10000, 5000)
    return World(core, member_id, visit, bill_no, billed.visit_no)


def charge_body(**changes: Any) -> dict[str, Any]:
    return {"charge_no": "C-NEW", "category": "drug", "name": "阿莫西林", "amount_fen": 1200, "prepaid": False, **changes}


def payment_body(**changes: Any) -> dict[str, Any]:
    return {"payment_no": "P-NEW", "channel": "window", "amount_fen": 1000, **changes}


def visit_body(**changes: Any) -> dict[str, Any]:
    return {"visit_no": "V-NEW", "id_number": ZHANG_WEI, "department": "内科", "kind": "outpatient", "exclusion": None, **changes}


def enrolment(id_number: str = ZHANG_WEI, **changes: Any) -> dict[str, Any]:
    return {"openid": None, "name": "张伟", "id_number": id_number, "phone": PHONE,
            "consent_version": "privacy-bj-2026-01", "commitment_version": "bj-shijingshan-2021-11", **changes}


async def split_with(w: World, change: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    """The visit's correct checkout split, then spoiled by `change`."""
    body = await split_for(w.core, w.visit)
    change(body["items"])
    return await visits.checkout(w.core, "H1", w.visit.visit_no, body)


def post_charge(body: dict[str, Any]) -> Callable[[World], Awaitable[Any]]:
    return lambda w: visits.post_charge(w.core, "H1", w.visit.visit_no, body)


def pay(body: dict[str, Any], hospital: str = "H1") -> Callable[[World], Awaitable[Any]]:
    return lambda w: payments.pay_at_hospital(w.core, hospital, w.bill_no, body)


def enrol_with(**fields: Any) -> Callable[[World], Awaitable[Any]]:
    return lambda w: members.enrol(w.core, **fields)


BAD_AMOUNTS = [-100, 0, 12.5, 1200.0, True, "1200", None, 10**12]

CASES: list[tuple[str, Callable[[World], Awaitable[Any]], type[BillingError], str]] = [
    *[(f"charge amount {value!r}", post_charge(charge_body(amount_fen=value)), InvalidInput, "amount_fen")
      for value in BAD_AMOUNTS],
    *[(f"payment amount {value!r}", pay(payment_body(amount_fen=value)), InvalidInput, "amount_fen")
      for value in BAD_AMOUNTS],
    ("charge category", post_charge(charge_body(category="massage")), InvalidInput, "category"),
    ("charge without a number", post_charge(charge_body(charge_no="  ")), InvalidInput, "charge_no"),
    ("prepaid as text", post_charge(charge_body(prepaid="no")), InvalidInput, "prepaid"),
    ("payment channel", pay(payment_body(channel="bitcoin")), InvalidInput, "channel"),
    ("split that does not add up", lambda w: split_with(w, lambda items: items[0].update(self_pay_fen=9999)),
     InvalidInput, "items"),
    ("split with a negative part", lambda w: split_with(w, lambda items: items[0].update(insurance_fen=-1, self_pay_fen=10001)),
     InvalidInput, "items[0].insurance_fen"),
    ("split with a float part", lambda w: split_with(w, lambda items: items[0].update(insurance_fen=0.0)),
     InvalidInput, "items[0].insurance_fen"),
    ("split missing a held charge", lambda w: split_with(w, lambda items: items.pop()), InvalidInput, "items"),
    ("split naming an unknown charge", lambda w: split_with(w, lambda items: items.append(
        {"charge_no": "C-NOPE", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1})), InvalidInput, "items"),
    ("split naming a charge twice", lambda w: split_with(w, lambda items: items.append(dict(items[0]))), InvalidInput, "items"),
    ("empty split", lambda w: visits.checkout(w.core, "H1", w.visit.visit_no, {"items": []}), InvalidInput, "items"),
    ("split not a list", lambda w: visits.checkout(w.core, "H1", w.visit.visit_no, {"items": {}}), InvalidInput, "items"),
    ("charge on an unknown visit", lambda w: visits.post_charge(w.core, "H1", "V-NOPE", charge_body()), NotFound, "visit_no"),
    ("checkout of an unknown visit", lambda w: visits.checkout(w.core, "H1", "V-NOPE", {"items": [
        {"charge_no": "C1", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1}]}), NotFound, "visit_no"),
    ("cancel on an unknown visit", lambda w: visits.cancel_charge(w.core, "H1", "V-NOPE", "C1"), NotFound, "visit_no"),
    ("cancel of an unknown charge", lambda w: visits.cancel_charge(w.core, "H1", w.visit.visit_no, "C-NOPE"), NotFound, "charge_no"),
    ("visit at an unknown hospital", lambda w: visits.open_visit(w.core, "H9", visit_body()), NotFound, "hospital"),
    ("visit of another hospital", lambda w: visits.post_charge(w.core, "H2", w.visit.visit_no, charge_body()), NotFound, "visit_no"),
    ("visit kind", lambda w: visits.open_visit(w.core, "H1", visit_body(kind="home")), InvalidInput, "kind"),
    ("exclusion code", lambda w: visits.open_visit(w.core, "H1", visit_body(exclusion="gambling")), InvalidInput, "exclusion"),
    ("visit with a bad ID number", lambda w: visits.open_visit(w.core, "H1", visit_body(id_number=BAD_CHECKSUM)),
     InvalidInput, "id_number"),
    ("unknown bill", lambda w: payments.pay_at_hospital(w.core, "H1", "B-NOPE", payment_body()), NotFound, "bill_no"),
    ("bill of another hospital", pay(payment_body(), hospital="H2"), NotFound, "bill_no"),
    ("payment at an unknown hospital", pay(payment_body(), hospital="H9"), NotFound, "hospital"),
    ("charge on a checked-out visit", lambda w: visits.post_charge(w.core, "H1", w.billed_visit_no, charge_body()),
     Conflict, "visit_checked_out"),
    ("second checkout, another split", lambda w: visits.checkout(w.core, "H1", w.billed_visit_no, {"items": [
        {"charge_no": "C1", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1}]}), Conflict, "idempotency_key_reused"),
    *[(f"ID number {raw!r}", enrol_with(**enrolment(raw)), InvalidInput, "id_number")
      for raw in (BAD_CHECKSUM, "11010519850312001", "11010519851312001X", "ABCDEFGHIJKLMNOPQR", "")],
    *[(f"phone {raw!r}", enrol_with(**enrolment(phone=raw)), InvalidInput, "phone")
      for raw in ("12345678901", "1380013800", "138001380000", "phone", "")],
    ("consent version", enrol_with(**enrolment(consent_version="privacy-2020-01")), InvalidInput, "consent_version"),
    ("commitment version", enrol_with(**enrolment(commitment_version="bj-2019")), InvalidInput, "commitment_version"),
    ("name missing", enrol_with(**enrolment(name=" ")), InvalidInput, "name"),
    ("already enrolled", enrol_with(**enrolment()), Conflict, "active"),
    ("dishonest", enrol_with(**enrolment("110107197001010049", name="李强")), NotEligible, "dishonest"),
    ("under age", enrol_with(**enrolment("110107201506010035", name="张小明")), NotEligible, "under_age"),
    ("insurance suspended", enrol_with(**enrolment("110108198002200056", name="王芳")), NotEligible, "insurance_not_normal"),
    ("insured in another region", enrol_with(**enrolment("130102198808080087", name="赵磊")), NotEligible, "insured_elsewhere"),
    ("name does not match", enrol_with(**enrolment("11010819920709006X", name="刘阳")), NotEligible, "name_mismatch"),
    ("not in the registry", enrol_with(**enrolment("11010519491231002X", name="某人")), NotEligible, "not_in_registry"),
]


@pytest.mark.parametrize("call, error, detail", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_refused_and_nothing_changed(world, call, error, detail):
    before = await snapshot(world.core)
    with pytest.raises(error) as raised:
        await call(world)
    assert raised.value.message
    details = raised.value.details
    assert (details.get("field") or details.get("reason") or details.get("scope") or next(iter(details))) == detail
    assert await snapshot(world.core) == before


async def test_full_width_digits_and_spaces_in_an_id_number_are_accepted(make_core):
    core = await make_core("beijing-shijingshan")
    full_width = "１１０１０５ １９８５０３１２ ００１２"
    assert normalise_id_number(full_width) == ZHANG_WEI
    assert normalise_id_number("11010819920709006x") == "11010819920709006X"
    member_id = await enrol(core, full_width, name="张伟", phone="+86 138-0013-8000")
    async with core.db.transaction() as session:
        found = await session.run_sync(members.member_by_id_number, core, ZHANG_WEI)
    assert found.id == member_id
    assert core.pii.decrypt((await member(core, member_id)).phone_enc) == "13800138000"
