"""sqlite+inline: statements on the event loop, and the wait for another writer's lock off it."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text

from storage.db import Database


@pytest.fixture
async def inline_db(tmp_path):
    database = Database(f"sqlite+inline:///{tmp_path / 'inline.db'}")
    await database.create_all()
    yield database
    await database.close()


async def test_a_writer_waits_for_another_process_lock_without_stopping_the_loop(inline_db, tmp_path):
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)  # a writer outside this process's queue
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO hospitals (code, name, secret_enc, created_at) VALUES ('H9', 'other', 'x', '2026-03-02 09:00:00')")

    async def write() -> int:
        async with inline_db.transaction() as session:
            return await session.scalar(text("SELECT count(*) FROM hospitals"))

    writer = asyncio.create_task(write())
    ticks = 0
    for _ in range(20):  # the loop keeps running while the writer waits for the lock
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 20 and not writer.done()
    other.execute("COMMIT")
    assert await asyncio.wait_for(writer, 5) == 1  # it went on once the lock came free, and saw the other's row
    other.close()


async def test_database_run_waits_for_another_process_lock_on_the_loop_and_runs_its_work_once(inline_db, tmp_path):
    # Database.run calls sqlite3 without a greenlet; meeting the lock, it starts again in one, which waits.
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    calls = []

    def add(session) -> int:
        calls.append(1)
        session.execute(text("INSERT INTO hospitals (code, name, secret_enc, created_at) VALUES ('H1', 'x', 'x', '2026-03-02 09:00:00')"))
        return session.scalar(text("SELECT count(*) FROM hospitals"))

    writer = asyncio.create_task(inline_db.run(add))
    for _ in range(10):
        await asyncio.sleep(0.005)
    assert not writer.done() and calls == []  # nothing ran before the lock was had
    other.execute("INSERT INTO hospitals (code, name, secret_enc, created_at) VALUES ('H9', 'other', 'x', '2026-03-02 09:00:00')")
    other.execute("COMMIT")
    assert await asyncio.wait_for(writer, 5) == 2
    assert calls == [1]
    other.close()


async def test_unconsumed_rows_stay_readable_after_the_call(inline_db):
    async with inline_db.transaction() as session:
        result = await session.execute(text("SELECT 1 UNION ALL SELECT 2"))
        await session.execute(text("SELECT 3"))
        assert [row[0] for row in result] == [1, 2]


async def test_a_plain_connection_executes_too(inline_db):
    async with inline_db.engine.begin() as conn:  # AsyncConnection.execute wants an awaiting driver
        await conn.execute(text("CREATE TABLE numbers (n INTEGER)"))
        await conn.execute(text("INSERT INTO numbers VALUES (:n)"), [{"n": 1}, {"n": 2}])
        assert await conn.scalar(text("SELECT sum(n) FROM numbers")) == 3
