"""A small simulated city day (bench/cityday.py's generator and replay) against `xinyi serve
--workers 2` on PostgreSQL: every answer as the contracts say, no 5xx, `xinyi audit` clean and
every bill (its interest included) and member as the generator's ledger says; and the same with
PostgreSQL stopped for ten seconds in the middle of the day (a cluster of the test's own)."""
from __future__ import annotations

import pytest
from conftest import PG_URL
from served import create_database, drop_database

from pg_cluster import cluster  # noqa: F401 (a fixture)

from bench.city_day import make_day
from bench.city_replay import DAYS_PAST_DUE, Outage, run_day

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_a_small_city_day_leaves_every_balance_as_the_generators_ledger_says(tmp_path):
    if not PG_URL:
        pytest.skip("XINYI_TEST_PG_URL is not set (bash .ci/run starts a PostgreSQL)")
    day = make_day(seed=14, visits=300, charges_per_visit=3)
    assert day.charges == 900 and any(visit.copies == 2 for visit in day.visits) and any(visit.late for visit in day.visits)
    assert sum(day.interest_fen(DAYS_PAST_DUE).values()) > 0  # the unpaid bills bear interest at the last sweep
    url = await create_database(PG_URL)
    try:
        run = await run_day(url, day, workers=2, folder=tmp_path, concurrency=8)
    finally:
        await drop_database(url)
    assert not run.tally.unexpected, run.tally.unexpected
    assert run.tally.server_errors == 0
    assert run.audit_code == 0, run.audit_said
    assert run.differences == []
    assert run.dead_messages == 0
    notices = sum(visit.copies for visit in day.visits if visit.channel)
    figures = run.tally.figures()
    assert figures["POST /notify/wechatpay"][0] + figures["POST /notify/alipay"][0] == notices
    assert figures["POST /api/v1/visits/{visit_no}/charges"][0] == 900
    assert "0 breaches" in run.sweep_said


async def test_a_ten_second_postgresql_outage_mid_day_answers_503s_loses_nothing_and_the_day_completes(cluster, tmp_path):
    day = make_day(seed=15, visits=200, charges_per_visit=3)
    outage = Outage(stop=cluster.stop, start=cluster.start, seconds=10, after=0.4)
    run = await run_day(cluster.url("xinyi"), day, workers=2, folder=tmp_path, concurrency=8, outage=outage)
    assert outage.ended - outage.began >= 10
    unavailable = sum(run.tally.unavailable.values())
    assert unavailable > 0 and any(endpoint.startswith("POST /api/") for endpoint in run.tally.unavailable), run.tally.unavailable
    assert not run.tally.unexpected, run.tally.unexpected  # every other answer a 200/201/302 (or 204), none a 500
    assert run.audit_code == 0, run.audit_said
    assert run.differences == []  # nothing lost, nothing applied twice
    assert run.dead_messages == 0
    figures = run.tally.figures()
    answered = sum(1 for _, _, status in run.tally.calls["POST /api/v1/visits/{visit_no}/charges"] if status == 201)
    assert answered == day.charges == 600
    assert figures["POST /notify/wechatpay"][0] + figures["POST /notify/alipay"][0] >= sum(
        visit.copies for visit in day.visits if visit.channel)
