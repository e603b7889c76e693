"""Programme events over real HTTP on loopback to docs/events_receiver.py, the receiver README
tells integrators to start from: signed bodies it accepts, forged and stale ones it refuses;
delivered once across a crash, a receiver that was down gets every event, a 4xx parks, a
429 or 5xx retries with growing waits. SQLite and PostgreSQL."""
from __future__ import annotations

import importlib.util
import json
import secrets
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from sqlalchemy import select

from billing import events, members, outbox, visits
from billing.core import Core
from billing.sweep import sweep
from bot.event_webhook import EventWebhook, event_body, signed_headers
from storage.models import Outbox

SECRET = "events-secret-0123456789"
ZHANG_WEI, PHONE = "110105198503120012", "13800138000"
RECEIVER_FILE = Path(__file__).resolve().parents[2] / "docs" / "events_receiver.py"


def load_receiver():
    spec = importlib.util.spec_from_file_location("events_receiver", RECEIVER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


receiver = load_receiver()


class Receiver:
    """docs/events_receiver.py served on a loopback port, on the test's clock."""

    def __init__(self, core: Core, tmp_path: Path, port: int) -> None:
        self.store = receiver.EventStore(str(tmp_path / "received.db"))
        self.app = receiver.make_app(SECRET, self.store, now=lambda: core.clock.now().timestamp())
        self.url = f"http://127.0.0.1:{port}{receiver.PATH}"
        self.port = port

    def names(self) -> list[str]:
        return [event["event"] for event in self.store.events()]


@pytest.fixture
async def world(make_core, tmp_path, aiohttp_server):
    core = await make_core("beijing-shijingshan")
    found = Receiver(core, tmp_path, unused_port())
    webhook = EventWebhook(found.url, SECRET, core.clock)

    async def serve() -> None:
        await aiohttp_server(found.app, port=found.port)

    yield core, found, webhook, serve
    await webhook.close()


async def enrol(core: Core) -> None:
    await members.enrol(core, openid=None, name="张伟", id_number=ZHANG_WEI, phone=PHONE,
                        consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)


async def billed_visit(core: Core, amount_fen: int) -> None:
    visit_no, charge_no = f"V{secrets.token_hex(4)}", f"C{secrets.token_hex(4)}"
    await visits.open_visit(core, "H1", {"visit_no": visit_no, "id_number": ZHANG_WEI, "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, "H1", visit_no, {"charge_no": charge_no, "category": "exam", "name": "血常规",
                                                    "amount_fen": amount_fen})
    await visits.checkout(core, "H1", visit_no, {"items": [
        {"charge_no": charge_no, "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]})


async def a_bill_with_its_events(core: Core) -> None:
    """Zhang Wei leaves with a bill, and it falls past due: bill_issued, bill_overdue,
    advance_requested, member_suspended (Beijing's insurer advances at once)."""
    await enrol(core)
    await billed_visit(core, 12000)
    core.clock.advance(hours=49)
    await sweep(core)


async def drain(core: Core, webhook) -> tuple[int, int]:
    return await outbox.drain(core.db, webhook, core.clock.now, lane=outbox.EVENTS)


async def rows(core: Core) -> list[Outbox]:
    async with core.db.transaction() as session:
        return list(await session.scalars(select(Outbox).where(Outbox.kind == outbox.EVENT).order_by(Outbox.id)))


EXPECTED = ["bill_issued", "bill_overdue", "advance_requested", "member_suspended"]


async def test_each_event_arrives_signed_once_with_its_body_and_no_personal_number(world):
    core, found, webhook, serve = world
    await serve()
    await a_bill_with_its_events(core)
    assert await drain(core, webhook) == (4, 0)
    assert found.names() == EXPECTED
    assert found.store.events() == [row.payload for row in await rows(core)]
    assert {row.status for row in await rows(core)} == {"sent"}
    stored = json.dumps(found.store.events(), ensure_ascii=False)
    assert ZHANG_WEI not in stored and PHONE not in stored and "110105********0012" in stored
    assert await drain(core, webhook) == (0, 0)


async def test_an_event_is_delivered_once_across_a_crash_between_commit_and_send(world):
    core, found, webhook, serve = world
    await serve()
    await a_bill_with_its_events(core)
    # A sender claims the events and dies before sending any: they wait out the lease, no longer.
    assert len(await outbox._claim(core.db, core.clock.now(), 100, outbox.EVENTS)) == 4
    assert await drain(core, webhook) == (0, 0)
    core.clock.advance(outbox.LEASE)
    assert await drain(core, webhook) == (4, 0)
    assert found.names() == EXPECTED


class Crash(BaseException):
    """The process dying right after the receiver answered, before the outbox heard of it."""


class SendsThenCrashes:
    def __init__(self, webhook: EventWebhook) -> None:
        self.webhook = webhook

    async def send(self, message: Outbox) -> None:
        await self.webhook.send(message)
        raise Crash


async def test_a_resend_after_a_crash_past_the_send_is_deduped_by_the_receiver(world):
    core, found, webhook, serve = world
    await serve()
    await a_bill_with_its_events(core)
    with pytest.raises(Crash):
        await drain(core, SendsThenCrashes(webhook))
    core.clock.advance(outbox.LEASE)
    assert await drain(core, webhook) == (4, 0)  # the first one went twice: at least once
    assert found.names() == EXPECTED  # and it is stored once
    assert {row.status for row in await rows(core)} == {"sent"}


async def test_a_receiver_down_for_a_while_gets_every_event_when_it_is_back(world):
    core, found, webhook, serve = world
    await a_bill_with_its_events(core)
    for _ in range(6):  # nothing listens yet
        assert await drain(core, webhook) == (0, 4)
        core.clock.advance(outbox.BACKOFF_MAX)
    assert {(row.status, row.attempts) for row in await rows(core)} == {("pending", 6)}
    failing = await events.list_events(core, failed=True)
    assert [(e.event, e.state) for e in failing] == [(name, "failing") for name in reversed(EXPECTED)]
    assert "ClientConnectorError" in failing[0].last_error
    await serve()
    assert await drain(core, webhook) == (4, 0)
    assert found.names() == EXPECTED  # all due again together: sent oldest first
    assert await events.list_events(core, failed=True) == []


def scripted_receiver(answers: list[int | tuple[int, str]], got: list[bytes]) -> web.Application:
    """A receiver answering each POST with the next status of `answers` (or status and Retry-After)."""
    async def answer(request: web.Request) -> web.Response:
        got.append(await request.read())
        status, retry_after = answers.pop(0) if isinstance(answers[0], tuple) else (answers.pop(0), None)
        return web.json_response({"error": "scripted"}, status=status,
                                 headers={"Retry-After": retry_after} if retry_after else None)

    app = web.Application()
    app.router.add_post("/events", answer)
    return app


@pytest.fixture
async def scripted(make_core, aiohttp_server):
    """A Core, and a webhook to a receiver answering 503, 429, 500, 408, 502, 200, 400, a 429 with
    Retry-After: 1800, then 200; what it got."""
    core = await make_core("beijing-shijingshan")
    got: list[bytes] = []
    server = await aiohttp_server(scripted_receiver([503, 429, 500, 408, 502, 200, 400, (429, "1800"), 200], got))
    webhook = EventWebhook(str(server.make_url("/events")), SECRET, core.clock)
    yield core, webhook, got
    await webhook.close()


async def test_a_rate_limit_or_a_server_error_is_retried_with_growing_waits_and_a_4xx_parks(scripted):
    core, webhook, got = scripted
    await enrol(core)
    await billed_visit(core, 12000)
    waits = []
    for attempt in range(1, 6):
        assert await drain(core, webhook) == (0, 1)
        [row] = await rows(core)
        wait = row.next_attempt_at - core.clock.now()
        ceiling = outbox.BACKOFF_BASE * 2 ** (attempt - 1)
        assert (row.status, row.attempts) == ("pending", attempt) and ceiling / 2 <= wait <= ceiling
        waits.append(wait)
        assert await drain(core, webhook) == (0, 0)  # not before its time
        core.clock.set(row.next_attempt_at)
    assert waits == sorted(waits)
    assert await drain(core, webhook) == (1, 0)
    assert len({body for body in got}) == 1  # the same body every time: the same event_id

    core.clock.advance(hours=1)
    await billed_visit(core, 5000)  # another bill: the receiver refuses it for good
    assert await drain(core, webhook) == (0, 1)
    parked = (await rows(core))[-1]
    assert (parked.status, parked.attempts) == ("dead", 1) and "HTTP 400" in parked.last_error
    [listed] = await events.list_events(core, failed=True)
    assert (listed.id, listed.state, listed.next_attempt_at) == (parked.id, "parked", None)
    core.clock.advance(days=1)
    assert await drain(core, webhook) == (0, 0)  # parked is parked: no retry

    await billed_visit(core, 7000)  # a rate limit that says how long to wait is waited out
    assert await drain(core, webhook) == (0, 1)
    asked = (await rows(core))[-1]
    assert asked.next_attempt_at - core.clock.now() == timedelta(seconds=1800)
    core.clock.set(asked.next_attempt_at)
    assert await drain(core, webhook) == (1, 0)


async def test_the_example_receiver_refuses_forged_stale_and_replayed_requests(world):
    core, found, webhook, serve = world
    await serve()
    await a_bill_with_its_events(core)
    [message, *_] = await rows(core)
    body, path, now = event_body(message), receiver.PATH, int(core.clock.now().timestamp())

    async def post(payload: bytes, headers: dict[str, str]):
        async with webhook_session() as http:
            async with http.post(found.url, data=payload, headers=headers) as response:
                return response.status, await response.json()

    def signed(secret: str = SECRET, at: int = now, nonce: str | None = None, signed_body: bytes = body):
        return signed_headers(secret, path, signed_body, at, nonce or secrets.token_hex(8))

    assert await post(body, signed(secret="not-the-secret-0000")) == (401, {"error": "bad_signature"})
    tampered = body.replace(b'"unpaid_fen"', b'"unpaid_fen_"') if b'"unpaid_fen"' in body else body + b" "
    assert await post(tampered, signed()) == (401, {"error": "bad_signature"})
    assert await post(body, signed(at=now - 301)) == (401, {"error": "stale_timestamp"})
    assert await post(body, {}) == (401, {"error": "unsigned"})
    assert found.store.events() == []
    headers = signed(nonce="once-only-nonce")
    assert await post(body, headers) == (200, {"stored": True, "duplicate": False})
    assert await post(body, headers) == (401, {"error": "replayed_nonce"})
    assert await post(body, signed()) == (200, {"stored": False, "duplicate": True})
    assert found.store.events() == [message.payload]



async def test_events_refused_for_a_wrong_secret_are_parked_until_an_operator_retries_them(world):
    core, found, webhook, serve = world
    await serve()
    await a_bill_with_its_events(core)
    wrong = EventWebhook(found.url, "a-secret-the-receiver-lacks", core.clock)
    assert await drain(core, wrong) == (0, 4)
    await wrong.close()
    parked = await events.list_events(core, failed=True)
    assert {(e.state, e.attempts) for e in parked} == {("parked", 1)} and "HTTP 401" in parked[0].last_error
    core.clock.advance(days=1)
    assert await drain(core, webhook) == (0, 0)
    assert await events.retry_parked(core, parked[-1].id)  # the oldest, bill_issued
    assert not await events.retry_parked(core, parked[-1].id)  # pending now, not parked
    assert await drain(core, webhook) == (1, 0)
    assert found.names() == ["bill_issued"]
    assert await events.retry_parked(core, None) == 3  # all the others
    assert await drain(core, webhook) == (3, 0)
    assert found.names() == EXPECTED


def webhook_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()
