"""`xinyi serve --workers 2` on PostgreSQL: real worker processes under gunicorn, driven over
HTTP, behave as one service (tests/bot/served.py starts them)."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timezone
from functools import partial

import pytest
from sqlalchemy import func, select, text

from billing import visits
from billing.audit import audit_database
from billing.clock import FixedClock
from bot.server import GRACEFUL_TIMEOUT_S
from storage.db import advisory_key
from storage.models import Bill, Charge, CreditLine, WeChatMessage
from served import PATIENT, TEMPLATE, Served, create_database, drop_database, fake_wechat, programme

from conftest import PG_URL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
LONG_AGO = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # bills made then are long past due


@pytest.fixture
async def world(tmp_path):
    if not PG_URL:
        pytest.skip("XINYI_TEST_PG_URL is not set (bash .ci/run starts a PostgreSQL)")
    url = await create_database(PG_URL)
    core = await programme(url, FixedClock(LONG_AGO))
    fake, fake_server = await fake_wechat()
    yield url, core, fake, str(fake_server.make_url("")).rstrip("/"), tmp_path
    await fake_server.close()
    await core.db.close()
    await drop_database(url)


def visit(no: str) -> dict:
    return {"visit_no": no, "id_number": PATIENT, "department": "内科", "kind": "outpatient", "exclusion": None}


def charge(no: str, amount_fen: int) -> dict:
    return {"charge_no": no, "category": "exam", "name": "血常规", "amount_fen": amount_fen, "prepaid": False}


async def at_once(*calls):
    """Each of `calls()`, started a few milliseconds apart, each on a connection of its own."""
    async def staggered(i: int, call):
        await asyncio.sleep(0.003 * i)
        return await call()

    return await asyncio.gather(*(staggered(i, call) for i, call in enumerate(calls)))


async def test_the_same_charge_sent_to_both_workers_at_once_is_posted_once_and_the_line_never_overdrawn(world):
    url, core, fake, wechat_base, tmp_path = world
    async with Served(url, wechat_base, tmp_path / "serve.log") as served:
        assert (await served.hospital("POST", "/api/v1/visits", visit("V1")))[0] == 201
        answers, attempt = await served.across_workers("/api/v1/visits/V1/charges", lambda attempt: at_once(
            *[partial(served.hospital, "POST", "/api/v1/visits/V1/charges", charge(f"C{attempt}", 1000))] * 12))
        assert {status for status, _ in answers} == {201}
        assert all(body == answers[0][1] for _, body in answers), answers
        assert answers[0][1]["available_fen"] == 200000 - 1000 * (attempt + 1)

        # Ten different charges of 300 yuan race for what is left: as many fit as it holds, never more.
        left = answers[0][1]["available_fen"]
        answers = await at_once(*(partial(served.hospital, "POST", "/api/v1/visits/V1/charges", charge(f"D{n}", 30000))
                                  for n in range(10)))
        statuses = sorted(status for status, _ in answers)
        assert statuses.count(201) == left // 30000, answers
        assert all(400 <= status < 500 for status in statuses if status != 201), answers
    async with core.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Charge).where(Charge.charge_no == f"C{attempt}")) == 1
    assert not (await audit_database(core)).breaches


async def test_a_wechat_message_sent_to_both_workers_at_once_is_handled_once(world):
    url, core, fake, wechat_base, tmp_path = world

    async def ledger() -> list[tuple[str, str]]:
        async with core.db.transaction() as session:
            return (await session.execute(select(WeChatMessage.dedupe_key, WeChatMessage.status))).all()

    async with Served(url, wechat_base, tmp_path / "serve.log") as served:
        answers, attempt = await served.across_workers("POST /wechat", lambda attempt: at_once(
            *[partial(served.wechat, "你好", 9000 + attempt)] * 12))
        assert {status for status, _, _ in answers} == {200}
        replies = {reply["Content"] for _, reply, _ in answers if reply is not None}
        # The first answer stands for every copy; "success" while it is being made (or, on a loaded
        # machine, past WeChat's deadline: then it goes as a customer-service message).
        assert len(replies) <= 1
        assert sum(key.endswith(str(9000 + attempt)) for key, _ in await ledger()) == 1

        # One user's messages, several at once across workers: each handled, one at a time.
        answers = await at_once(*(partial(served.wechat, f"第{n}条", 9100 + n) for n in range(6)))
        assert {status for status, _, _ in answers} == {200}
        give_up = time.monotonic() + 10
        while sum(key.endswith(tuple(str(9100 + n) for n in range(6))) and status != "processing"
                  for key, status in await ledger()) < 6:
            assert time.monotonic() < give_up, served.log()[-3000:]
            await asyncio.sleep(0.2)
        assert "state changed by another message meanwhile" not in served.log()


async def test_each_bill_notice_is_sent_once_and_promptly_whichever_worker_checked_out(world):
    url, core, fake, wechat_base, tmp_path = world
    async with Served(url, wechat_base, tmp_path / "serve.log") as served:

        async def check_out(n: int) -> float:
            await served.hospital("POST", "/api/v1/visits", visit(f"N{n}"))
            await served.hospital("POST", f"/api/v1/visits/N{n}/charges", charge(f"N{n}", 1000))
            status, bill = await served.hospital("POST", f"/api/v1/visits/N{n}/checkout", {"items": [
                {"charge_no": f"N{n}", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1000}]})
            assert status == 200, bill
            return time.monotonic()

        checked_out = max(await asyncio.gather(*(check_out(n) for n in range(8))))
        await served.until(lambda: len(fake.calls_to(TEMPLATE)) >= 8, 5)
        assert time.monotonic() - checked_out < 3  # woken by the commit, or by PostgreSQL's NOTIFY, not the poll
        await asyncio.sleep(2)  # and no second copy follows
        sent = [call.body["data"] for call in fake.calls_to(TEMPLATE) if call.body["template_id"] == "T-bill_issued"]
        assert len(sent) == 8 and len({repr(data) for data in sent}) == 8
        assert len(served.pids_logging("/checkout")) == 2
    assert len(fake.calls_to("/cgi-bin/token")) == 1  # one worker fetched the access token, the other read it


async def test_the_workers_sweep_one_at_a_time(world):
    """While another process holds the sweep's lock, neither worker sweeps; once it lets go, one does."""
    url, core, fake, wechat_base, tmp_path = world
    await visits.open_visit(core, "H1", visit("S1"))
    await visits.post_charge(core, "H1", "S1", charge("S1", 5000))
    await visits.checkout(core, "H1", "S1", {"items": [
        {"charge_no": "S1", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 5000}]})

    async def bill_status() -> str:
        async with core.db.transaction() as session:
            return await session.scalar(select(Bill.status))

    async with core.db.engine.connect() as holder:
        assert await holder.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key("sweep")})
        await holder.commit()
        async with Served(url, wechat_base, tmp_path / "serve.log", sweep_every_s="1") as served:
            await asyncio.sleep(3)  # three turns each
            assert await bill_status() == "open"
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key("sweep")})
            await holder.commit()
            give_up = time.monotonic() + 10
            while await bill_status() == "open":
                assert time.monotonic() < give_up, served.log()[-3000:]
                await asyncio.sleep(0.2)
            assert await bill_status() in ("overdue", "advanced")  # a later turn may go on to the insurer's advance


async def test_a_killed_worker_is_replaced_and_sigterm_lets_requests_in_flight_finish(world):
    url, core, fake, wechat_base, tmp_path = world
    async with Served(url, wechat_base, tmp_path / "serve.log") as served:
        before = served.worker_pids()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):  # the service keeps answering meanwhile
            assert (await served.hospital("POST", "/api/v1/eligibility", {"id_number": PATIENT}))[0] == 200
        await served.until(lambda: len(served.worker_pids()) == 2 and victim not in served.worker_pids(), 30)

        # A request in flight when SIGTERM comes (a charge waiting for its credit line, locked here) is answered.
        assert (await served.hospital("POST", "/api/v1/visits", visit("T1")))[0] == 201
        async with core.db.engine.connect() as locker:
            await locker.execute(select(CreditLine).with_for_update())
            in_flight = asyncio.create_task(served.hospital("POST", "/api/v1/visits/T1/charges", charge("T1", 1000)))
            await asyncio.sleep(0.5)
            stopping = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.5)
            assert not in_flight.done()
            await locker.rollback()
        assert (await in_flight)[0] == 201
        await asyncio.get_running_loop().run_in_executor(None, served.process.wait, GRACEFUL_TIMEOUT_S + 5)
        assert time.monotonic() - stopping < GRACEFUL_TIMEOUT_S + 1
