"""A small simulated city day (bench/cityday.py's generator and replay) against `xinyi serve
--workers 2` on PostgreSQL: every answer as the contracts say, no 5xx, `xinyi audit` clean and
every bill (its interest included) and member as the generator's ledger says."""
from __future__ import annotations

import pytest
from conftest import PG_URL
from served import create_database, drop_database

from bench.city_day import make_day
from bench.city_replay import DAYS_PAST_DUE, run_day

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
