"""The sandbox's stand-in of the insurer, on `xinyi serve`'s own sandbox app served on loopback:
the server sends it the events it queues, `xinyi sweep --now` past the due time (run beside
it, as a person would) sends it `advance_requested` for the Beijing bill, it refuses what is
not signed with the sandbox's secret, and the console page shows what it got."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp.test_utils import unused_port

from billing import members, visits
from billing.demo import DEMO_HOSPITAL
from bot.cli import main
from bot.config import Settings
from bot.event_webhook import signed_headers
from bot.hospital_api import CORE
from bot.sandbox.insurer import EVENTS_PATH
from bot.server import make_app

KEY = "insurer-secret-key-0123456789abcdef"
ZHANG_WEI = "110105198503120012"  # Beijing, in the demo registry
WAIT_S = 10


@pytest.fixture
async def sandbox(tmp_path, aiohttp_server, aiohttp_client, monkeypatch):
    """The sandbox app as `xinyi serve` builds it, and the environment a `xinyi sweep` beside it reads."""
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite+inline:///{tmp_path / 'xinyi.db'}"
    settings = Settings(secret_key=KEY, sandbox=True, public_url=base, port=port, database_url=url, data_dir=tmp_path)
    app = await make_app(settings)
    server = await aiohttp_server(app, port=port)
    for name, value in {"DATABASE_URL": url, "PUBLIC_URL": base, "SECRET_KEY": KEY, "SANDBOX": "1",
                        "DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(f"XINYI_{name}", value)
    return app, await aiohttp_client(server)


async def received(client) -> list[dict]:
    response = await client.get("/sandbox/insurer/received")
    assert response.status == 200
    return (await response.json())["events"]


async def until_received(client, name: str) -> list[dict]:
    for _ in range(WAIT_S * 10):
        found = await received(client)
        if any(event["event"] == name for event in found):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sandbox insurer got no {name}: {found}")


async def a_beijing_bill(core, openid: str | None = None) -> dict:
    """张伟 leaves the demo hospital with 100.00 yuan to pay within 48 hours."""
    await members.enrol(core, openid=openid, name="张伟", id_number=ZHANG_WEI, phone="13800138001",
                        consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    await visits.open_visit(core, DEMO_HOSPITAL, {"visit_no": "V-INS-1", "id_number": ZHANG_WEI, "department": "内科",
                                                  "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, DEMO_HOSPITAL, "V-INS-1", {"charge_no": "C-INS-1", "category": "exam",
                                                              "name": "血常规", "amount_fen": 12000})
    return await visits.checkout(core, DEMO_HOSPITAL, "V-INS-1", {"items": [
        {"charge_no": "C-INS-1", "insurance_fen": 2000, "personal_account_fen": 0, "self_pay_fen": 10000}]})


async def sweep_past_due(core) -> None:
    """`xinyi sweep --now` five minutes past the due time, beside the server, as a person would run it."""
    past_due = (core.clock.now() + timedelta(hours=48, minutes=5)).isoformat()
    assert await asyncio.to_thread(main, ["sweep", "--now", past_due]) == 0


async def test_a_sweep_past_the_due_time_shows_the_insurer_advance_in_the_console(sandbox):
    app, client = sandbox
    core = app[CORE]
    bill = await a_beijing_bill(core)
    [issued] = await until_received(client, "bill_issued")  # sent by the server at once
    assert issued["data"]["bill_no"] == bill["bill_no"] and issued["data"]["hospital"] == DEMO_HOSPITAL

    await sweep_past_due(core)
    got = await until_received(client, "advance_requested")
    advance = next(event for event in got if event["event"] == "advance_requested")
    assert advance["data"]["bill_no"] == bill["bill_no"] and advance["data"]["unpaid_fen"] == 10000
    assert advance["data"]["payer_id_number_masked"] == "110105********0012"
    assert {"bill_overdue", "member_suspended"} <= {event["event"] for event in got}
    assert ZHANG_WEI not in str(got)

    page = await (await client.get("/sandbox/")).text()
    assert 'id="insurer-events"' in page and "/sandbox/static/insurer.js" in page and "保险公司收到的项目事件" in page
    assert (await client.get("/sandbox/static/insurer.js")).status == 200


async def test_the_sandbox_insurer_refuses_what_is_not_signed_with_its_secret(sandbox):
    app, client = sandbox
    body = b'{"event":"advance_requested","event_id":"forged-1","occurred_at":"2026-03-04T09:00:00+00:00","data":{}}'
    now = int(app[CORE].clock.now().timestamp())
    forged = signed_headers("not-the-sandbox-secret", EVENTS_PATH, body, now, "nonce-forged-1")
    response = await client.post(EVENTS_PATH, data=body, headers=forged)
    assert response.status == 401 and (await response.json()) == {"error": "bad_signature"}
    assert (await client.post(EVENTS_PATH, data=body)).status == 401
    assert await received(client) == []
