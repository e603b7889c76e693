"""PostgreSQL stopped under `xinyi serve --workers 2`, then started again: a cluster of the test's
own (tests/bot/pg_cluster.py), never the shared one."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from billing import outbox
from served import PATIENT, Served, fake_wechat, programme
from pg_cluster import cluster  # noqa: F401 (a fixture)
from storage import migrate
from storage.db import Database
from storage.models import Outbox

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_while_postgresql_is_down_every_route_answers_503_and_all_recovers_without_a_restart(cluster, tmp_path):
    url = cluster.url("xinyi")
    core = await programme(url)
    fake, fake_server = await fake_wechat()
    try:
        async with Served(url, str(fake_server.make_url("")).rstrip("/"), tmp_path / "serve.log",
                          sweep_every_s="1") as served:
            visit = {"visit_no": "V1", "id_number": PATIENT, "department": "内科", "kind": "outpatient", "exclusion": None}
            assert (await served.hospital("POST", "/api/v1/visits", visit))[0] == 201
            await served.hospital("POST", "/api/v1/visits/V1/charges", {"charge_no": "C1", "category": "exam", "name": "血常规",
                                                                       "amount_fen": 1000, "prepaid": False})
            status, bill = await served.hospital("POST", "/api/v1/visits/V1/checkout", {"items": [
                {"charge_no": "C1", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1000}]})
            assert status == 200
            cashier = bill["pay_url"]

            async def answers() -> list[tuple[int, dict | None, str | None]]:
                """The API, /wechat, the cashier and /healthz, twice: both workers, most likely."""
                found = []
                for n in range(2):
                    status, body = await served.hospital("POST", "/api/v1/eligibility", {"id_number": PATIENT})
                    found.append((status, body, None))
                    status, reply, headers = await served.wechat("你好", int(time.time() * 1000) + n)
                    found.append((status, reply, headers.get("Retry-After")))
                    for url in (cashier, f"{served.base}/healthz"):
                        async with served.http.get(url) as response:
                            body = await response.json() if response.content_type == "application/json" else None
                            found.append((response.status, body, response.headers.get("Retry-After")))
                return found

            assert {status for status, _, _ in await answers()} == {200}
            cluster.stop()
            for _ in range(3):  # three seconds down: the sweep, the outbox and the listener meet it too
                down = await answers()
                assert {status for status, _, _ in down} == {503}, down
                assert all(retry == "5" for n, (_, _, retry) in enumerate(down) if n % 4), down  # all but the API's, unread
                assert down[0][1]["error"] == "database_unavailable" and down[3][1]["database"] == "unavailable"
                await asyncio.sleep(1)

            cluster.start()
            give_up = time.monotonic() + 20
            while {status for status, _, _ in await answers()} != {200}:
                assert time.monotonic() < give_up, served.log()[-3000:]
                await asyncio.sleep(0.5)
            assert served.process.poll() is None and len(served.worker_pids()) == 2  # no worker restarted for it
            assert "Traceback" not in served.log(), served.log()[-5000:]
    finally:
        await fake_server.close()
        await core.db.close()


async def test_a_notice_sent_as_postgresql_goes_down_is_marked_sent_once_it_is_back_and_never_sent_again(cluster):
    url = cluster.url("xinyi")
    await migrate.upgrade(url)
    db = Database(url)
    now = datetime.now(timezone.utc)
    await db.run(lambda session: outbox.enqueue(session, kind="bill_issued", member_id=None, dedupe_key="bill:1",
                                                 payload={"bill_id": 1}, now=now))
    sent = []

    class SentAsTheDatabaseGoes:
        """WeChat takes the notice; PostgreSQL stops before it is marked sent, and starts 2 s later."""
        async def send(self, message: Outbox) -> None:
            sent.append(message.id)
            await asyncio.to_thread(cluster.stop)
            asyncio.get_running_loop().call_later(2, lambda: asyncio.ensure_future(asyncio.to_thread(cluster.start)))

    try:
        assert await outbox.drain(db, SentAsTheDatabaseGoes(), lambda: now) == (1, 0)
        row = (await db.run(lambda session: session.execute(select(Outbox.status, Outbox.attempts)).one()))
        assert tuple(row) == ("sent", 1)
        assert await outbox.drain(db, SentAsTheDatabaseGoes(), lambda: now + outbox.LEASE + timedelta(seconds=1)) == (0, 0)
        assert sent == [1]  # not again when its lease ran out
    finally:
        await db.close()
