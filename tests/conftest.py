"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when
XINYI_TEST_PG_URL names a server (`.ci/run` starts one); a clock that travels."""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from billing.clock import FixedClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from storage.db import Database

PG_URL = os.environ.get("XINYI_TEST_PG_URL")
# sqlite is the default driver (sqlite+inline); aiosqlite stays supported, so it runs the suite too.
BACKENDS = ["sqlite", "aiosqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # 17:00 on Monday 2 March, China time
DUE = START + timedelta(hours=48)  # a Beijing bill checked out at START
TEST_SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture(params=BACKENDS)
async def db(request, tmp_path):
    if request.param in ("sqlite", "aiosqlite"):
        driver = "inline" if request.param == "sqlite" else "aiosqlite"
        database = Database(f"sqlite+{driver}:///{tmp_path / 'test.db'}")
        await database.create_all()
        yield database
        await database.close()
        return
    if not PG_URL:
        pytest.skip("XINYI_TEST_PG_URL is not set (bash .ci/run starts a PostgreSQL)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    async with admin.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    database = Database(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    await database.create_all()
    yield database
    await database.close()
    async with admin.engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    await admin.close()


@pytest.fixture
def clock():
    return FixedClock(START)


@pytest.fixture
def make_core(db, clock):
    """`make_core("nantong")` gives a Core on this test's database with the demo registry."""

    async def build(policy: str = "beijing-shijingshan", hospital: str | None = "H1") -> Core:
        core = Core(db=db, policy=load_policy(policy), pii=PiiCipher(TEST_SECRET), registry=CsvRegistry(), clock=clock)
        if hospital:
            await add_hospital(core, hospital, "测试医院", secret="hospital-secret-0123456789")
        return core

    return build
