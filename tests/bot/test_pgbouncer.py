"""`xinyi serve --workers 2` through PgBouncer in transaction pooling mode (Debian's, started by
the test in front of a cluster of its own), PostgreSQL itself given as XINYI_DATABASE_DIRECT_URL
for LISTEN and the sweep's lock."""
from __future__ import annotations

import asyncio
import time

import pytest

from billing import visits
from billing.audit import audit_database
from storage.db import Database
from served import PATIENT, TEMPLATE, Served, fake_wechat, programme
from pg_cluster import bouncer, cluster  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def items(charge_no: str, amount_fen: int) -> dict:
    return {"items": [{"charge_no": charge_no, "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]}


def charge(no: str, amount_fen: int) -> dict:
    return {"charge_no": no, "category": "exam", "name": "血常规", "amount_fen": amount_fen, "prepaid": False}


async def test_charges_and_notices_through_pgbouncer_in_transaction_pooling_mode(cluster, tmp_path):
    pooler = bouncer(cluster)
    pooler.start()
    direct, pooled = cluster.url("xinyi"), cluster.url("xinyi", port=pooler.port)
    core = await programme(direct)
    fake, fake_server = await fake_wechat()
    try:
        async with Served(pooled, str(fake_server.make_url("")).rstrip("/"), tmp_path / "serve.log",
                          database_direct_url=direct) as served:
            visit = {"visit_no": "V1", "id_number": PATIENT, "department": "内科", "kind": "outpatient", "exclusion": None}
            assert (await served.hospital("POST", "/api/v1/visits", visit))[0] == 201
            answers = await asyncio.gather(*(served.hospital("POST", "/api/v1/visits/V1/charges", charge("C1", 1200))
                                             for _ in range(8)))
            assert {status for status, _ in answers} == {201} and all(body == answers[0][1] for _, body in answers)
            for n in range(2, 6):
                assert (await served.hospital("POST", "/api/v1/visits/V1/charges", charge(f"C{n}", 100)))[0] == 201
            status, bill = await served.hospital("POST", "/api/v1/visits/V1/checkout", {"items": [
                {"charge_no": f"C{n}", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 1200 if n == 1 else 100}
                for n in range(1, 6)]})
            assert status == 200, bill
            await served.until(lambda: len(fake.calls_to(TEMPLATE)) == 1, 3)

            # A bill checked out by another process, through PgBouncer too: only PostgreSQL's NOTIFY,
            # heard on the workers' direct connections, wakes their senders before their 10 s poll.
            core.db = Database(pooled, direct_url=direct)
            await visits.open_visit(core, "H1", {**visit, "visit_no": "V2"})
            await visits.post_charge(core, "H1", "V2", charge("D1", 500))
            await visits.checkout(core, "H1", "V2", items("D1", 500))
            checked_out = time.monotonic()
            await served.until(lambda: len(fake.calls_to(TEMPLATE)) == 2, 5)
            assert time.monotonic() - checked_out < 3
            assert "prepared statement" not in served.log()
        assert not (await audit_database(core)).breaches
    finally:
        await fake_server.close()
        await core.db.close()
        pooler.stop()
