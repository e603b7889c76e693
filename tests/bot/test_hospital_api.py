"""The hospital API over real HTTP: signing, refusals, and a visit from charge to paid bill."""
from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time

import pytest
from raw_http import raw_request
from sqlalchemy import func, make_url, select

from bot.app import build_app
from bot.hospital_api import CORE, signed_headers
from storage.models import ApiNonce, Charge, CreditLine, IdempotencyKey, Visit

HOSPITAL, SECRET = "H1", "hospital-secret-0123456789"
PATIENT = "110105198503120012"


class Hospital:
    """Signs requests as a hospital's HIS would."""

    def __init__(self, client, clock, code=HOSPITAL, secret=SECRET):
        self.client, self.clock, self.code, self.secret = client, clock, code, secret
        self.core = client.server.app[CORE]

    async def call(self, method, path, body=None, *, raw=None, nonce=None, skew_s=0, secret=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        headers = signed_headers(self.code, secret or self.secret, method, path, data,
                                 int(self.clock.now().timestamp()) + skew_s, nonce or secrets.token_hex(8))
        response = await self.client.request(method, path, data=data, headers=headers)
        return response.status, await response.json()


@pytest.fixture
async def hospital(aiohttp_client, make_core, clock):
    from billing.members import enrol

    core = await make_core("beijing-shijingshan")
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    client = await aiohttp_client(build_app(core, background=False))
    return Hospital(client, clock)


VISIT = {"visit_no": "V1", "id_number": PATIENT, "department": "内科", "kind": "outpatient", "exclusion": None}


def charge(no, amount, **extra):
    return {"charge_no": no, "category": "exam", "name": "血常规", "amount_fen": amount, "prepaid": False, **extra}


async def test_visit_from_charges_to_paid_bill(hospital):
    status, body = await hospital.call("POST", "/api/v1/eligibility", {"id_number": PATIENT})
    assert (status, body["status"], body["available_fen"]) == (200, "active", 200000)
    assert (await hospital.call("POST", "/api/v1/visits", VISIT))[0] == 201
    status, body = await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C1", 12000))
    assert (status, body) == (201, {"charge_no": "C1", "on_credit": True, "available_fen": 188000})
    await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C2", 3000))
    status, body = await hospital.call("POST", "/api/v1/visits/V1/charges/C2/cancel", {})
    assert (status, body["status"], body["available_fen"]) == (200, "released", 188000)
    split = {"items": [{"charge_no": "C1", "insurance_fen": 7000, "personal_account_fen": 2000, "self_pay_fen": 3000}]}
    status, bill = await hospital.call("POST", "/api/v1/visits/V1/checkout", split)
    assert status == 200 and bill["self_pay_fen"] == 3000 and "/pay/" in bill["pay_url"]
    path = f"/api/v1/bills/{bill['bill_no']}"
    status, body = await hospital.call("POST", f"{path}/payments", {"payment_no": "P1", "channel": "window", "amount_fen": 3000})
    assert (status, body["status"], body["paid_fen"]) == (200, "paid", 3000)
    status, body = await hospital.call("GET", path)
    assert status == 200 and [i["charge_no"] for i in body["items"]] == ["C1", "C2"]
    assert (await hospital.call("POST", "/api/v1/eligibility", {"id_number": PATIENT}))[1]["available_fen"] == 200000


@pytest.mark.parametrize("tamper", ["secret", "stale", "future", "missing"])
async def test_unsigned_or_badly_signed_requests_are_refused(hospital, db, tamper):
    kwargs = {"secret": "wrong-secret-0123456789"} if tamper == "secret" else {}
    kwargs |= {"skew_s": -301} if tamper == "stale" else {"skew_s": 301} if tamper == "future" else {}
    if tamper == "missing":
        response = await hospital.client.post("/api/v1/visits", json=VISIT)
        status, body = response.status, await response.json()
    else:
        status, body = await hospital.call("POST", "/api/v1/visits", VISIT, **kwargs)
    assert status == 401 and body["error"] in ("bad_signature", "stale_timestamp", "unauthorized") and body["message"]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


@pytest.mark.parametrize("method, path, body, first_status", [
    ("POST", "/api/v1/visits", VISIT, 201),  # a Database.run transaction
    ("POST", "/api/v1/eligibility", {"id_number": PATIENT}, 200),  # an AsyncSession transaction
    ("GET", "/api/v1/bills/B404", None, 404),  # refused: the nonce goes on its own
])
async def test_a_replayed_nonce_is_refused(hospital, method, path, body, first_status):
    assert (await hospital.call(method, path, body, nonce="nonce-0001"))[0] == first_status
    status, answer = await hospital.call(method, path, body, nonce="nonce-0001")
    assert (status, answer["error"]) == (401, "replayed_nonce")


async def test_a_replayed_nonce_changes_nothing_even_where_the_request_would_replay(hospital, db):
    await hospital.call("POST", "/api/v1/visits", VISIT)
    assert (await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C1", 100), nonce="nonce-0002"))[0] == 201
    for body in (charge("C1", 100), charge("C2", 200)):  # the key's own replay and a new charge: both refused
        status, answer = await hospital.call("POST", "/api/v1/visits/V1/charges", body, nonce="nonce-0002")
        assert (status, answer["error"]) == (401, "replayed_nonce")
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge)) == 1
        assert await session.scalar(select(CreditLine.used_fen)) == 100


@pytest.mark.parametrize("first", [
    ("/api/v1/visits/NOPE/charges", charge("C1", 100)),  # refused in its transaction: rolled back
    ("/api/v1/visits/V1/charges", charge("C1", -5)),  # refused before any transaction
    ("/api/v1/visits/V1/charges", b"{not json"),
])
async def test_the_nonce_of_a_refused_request_is_used_up_too(hospital, db, first):
    await hospital.call("POST", "/api/v1/visits", VISIT)
    path, body = first
    kwargs = {"raw": body} if isinstance(body, bytes) else {"body": body}
    assert (await hospital.call("POST", path, nonce="nonce-0003", **kwargs))[0] in (400, 404)
    status, answer = await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C2", 100), nonce="nonce-0003")
    assert (status, answer["error"]) == (401, "replayed_nonce")
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge)) == 0


async def test_one_nonce_sent_twice_at_once_charges_once(hospital, db):
    await hospital.call("POST", "/api/v1/visits", VISIT)
    answers = await asyncio.gather(*(
        hospital.call("POST", "/api/v1/visits/V1/charges", charge(no, 100), nonce="nonce-0004") for no in ("C1", "C2")
    ))
    assert sorted(status for status, _ in answers) == [201, 401]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge)) == 1
        assert await session.scalar(select(CreditLine.used_fen)) == 100


async def test_nonces_are_pruned_once_no_timestamp_could_bring_them_back(hospital, db, clock):
    from bot.hospital_api import prune_nonces

    await hospital.call("POST", "/api/v1/visits", VISIT, nonce="nonce-old1")
    clock.advance(seconds=601)
    await hospital.call("POST", "/api/v1/visits", {**VISIT, "visit_no": "V2"}, nonce="nonce-new1")
    await prune_nonces(hospital.core)
    async with db.transaction() as session:
        assert (await session.scalars(select(ApiNonce.nonce))).all() == ["nonce-new1"]


async def test_an_unknown_hospital_is_refused(hospital):
    hospital.code = "NOPE"
    assert (await hospital.call("POST", "/api/v1/visits", VISIT))[1]["error"] == "bad_signature"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_malformed_bodies_get_400(hospital, raw):
    status, body = await hospital.call("POST", "/api/v1/visits", raw=raw)
    assert status == 400 and body["error"] == "invalid_request"


async def test_bad_amounts_unknown_numbers_and_conflicts(hospital, db):
    await hospital.call("POST", "/api/v1/visits", VISIT)
    for amount in (-100, 0, 12.5, "100", True, None):
        status, body = await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C9", amount))
        assert (status, body["error"]) == (400, "invalid_input"), amount
    assert (await hospital.call("POST", "/api/v1/visits/NOPE/charges", charge("C1", 100)))[0] == 404
    assert (await hospital.call("GET", "/api/v1/bills/B404"))[0] == 404
    assert (await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C1", 100)))[0] == 201
    status, body = await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C1", 200))
    assert (status, body["error"]) == (409, "conflict")
    status, body = await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C2", 300000))
    assert (status, body["error"], body["available_fen"]) == (402, "credit_limit_exceeded", 199900)
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge)) == 1
        assert await session.scalar(select(CreditLine.used_fen)) == 100


async def test_a_split_that_does_not_add_up_is_refused(hospital, db):
    await hospital.call("POST", "/api/v1/visits", VISIT)
    await hospital.call("POST", "/api/v1/visits/V1/charges", charge("C1", 1000))
    split = {"items": [{"charge_no": "C1", "insurance_fen": 500, "personal_account_fen": 0, "self_pay_fen": 400}]}
    status, body = await hospital.call("POST", "/api/v1/visits/V1/checkout", split)
    assert status == 400 and "does not add up" in body["message"]
    async with db.transaction() as session:
        assert await session.scalar(select(CreditLine.used_fen)) == 1000


async def test_healthz(hospital):
    response = await hospital.client.get("/healthz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "aiosqlite"], indirect=True)
async def test_healthz_answers_within_a_second_while_another_process_holds_the_write_lock(hospital, db):
    """Busy for the first seconds, 503 `not_writable` once the lock has been held 5 s, ok again
    when it is let go; each answer within about a second, never after the lock's whole hold."""
    holder = sqlite3.connect(make_url(db.url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def health() -> tuple[int, dict, float]:
        started = time.monotonic()
        response = await hospital.client.get("/healthz")
        return response.status, await response.json(), time.monotonic() - started

    try:
        status, body, took = await health()
        assert (status, body["database"]) == (200, "busy") and took < 1.5
        await asyncio.sleep(5)
        status, body, took = await health()
        assert (status, body["database"]) == (503, "not_writable") and took < 1.5
    finally:
        holder.rollback()
        holder.close()
    await asyncio.sleep(0.5)  # the probe waiting on the lock goes through
    status, body, _ = await health()
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize("header, value", [
    ("X-Timestamp", b"1" * 5000),  # int() refuses over 4,300 digits
    ("X-Timestamp", "²".encode()),  # a digit to isdigit(), not to int()
    ("X-Timestamp", "１７７２４４２０００".encode()),  # full-width: int() reads it
    ("X-Nonce", "随机数-随机数-随机数".encode()),
    ("X-Nonce", b"nonce-\xff\xfe-0001"),  # not UTF-8
    ("X-Hospital", "医院".encode()),
    ("X-Hospital", b"H\xff"),
    ("X-Signature", "ａ".encode() * 64),  # full-width hex: compare_digest refuses non-ASCII
])
async def test_a_signing_header_that_is_not_printable_ascii_gets_401(hospital, db, header, value):
    body = json.dumps(VISIT).encode()
    headers = signed_headers(HOSPITAL, SECRET, "POST", "/api/v1/visits", body, int(hospital.clock.now().timestamp()),
                             secrets.token_hex(8))
    raw = {name: text.encode() for name, text in headers.items()} | {header: value}
    status, answer = await raw_request(hospital.client, "POST", "/api/v1/visits", raw, body)
    assert status == 401 and json.loads(answer)["error"] == "unauthorized"
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Visit)) == 0


@pytest.mark.parametrize("raw", [
    b"[" * 1000 + b"]" * 1000,  # deeper than the parser's recursion
    json.dumps({**VISIT, "department": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["内科"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}).encode(),
    json.dumps({**VISIT, "department": "内科\ud800"}).encode(),  # a lone surrogate, as JSON escapes it
    json.dumps({**VISIT, "\udfff": 1}).encode(),
    json.dumps({**VISIT, "amount": float("nan")}).encode(),  # NaN: not JSON
])
async def test_a_signed_body_too_deep_or_holding_a_lone_surrogate_gets_400(hospital, db, raw):
    status, body = await hospital.call("POST", "/api/v1/visits", raw=raw)
    assert (status, body["error"]) == (400, "invalid_request") and body["message"]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Visit)) == 0


async def _move(core, status: str) -> None:
    """Put the patient in `status` the one way statuses change (billing.status.move_status)."""
    from billing.members import member_by_id_number
    from billing.status import move_status

    def work(session):
        move_status(session, member_by_id_number(session, core, PATIENT), status, "test", core.clock.now(), pii=core.pii)

    async with core.db.transaction() as session:
        await session.run_sync(work)


@pytest.mark.parametrize("status, eligible, reason, available_fen", [
    ("active", True, "ok", 200000),
    ("suspended", False, "suspended", 0),
    ("revoked", False, "revoked", 0),
    ("blacklisted", False, "blacklisted", 0),
    ("cancelled", False, "cancelled", 0),
])
async def test_eligibility_says_whether_the_member_can_be_served_on_credit_now(hospital, status, eligible, reason,
                                                                               available_fen):
    if status != "active":
        await _move(hospital.core, status)
    code, body = await hospital.call("POST", "/api/v1/eligibility", {"id_number": PATIENT})
    assert code == 200
    assert (body["eligible"], body["reason"], body["status"], body["limit_fen"], body["available_fen"]) == (
        eligible, reason, status, 200000, available_fen)
    status_code, visit = await hospital.call("POST", "/api/v1/visits", VISIT)  # the visit agrees with the answer
    assert status_code == 201 and visit["on_credit"] is eligible


async def test_eligibility_of_a_person_not_in_the_programme_is_whether_they_may_enrol(hospital):
    code, body = await hospital.call("POST", "/api/v1/eligibility", {"id_number": "110108195203040075"})
    assert (code, body["eligible"], body["reason"], body["status"], body["line"]) == (200, True, "ok", "none", None)
    code, body = await hospital.call("POST", "/api/v1/eligibility", {"id_number": "130102198808080087"})
    assert (body["eligible"], body["reason"]) == (False, "insured_elsewhere")
