"""Database.run: a plain function on a Session, one transaction, on every backend."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text

from storage.db import Database, signal_on_commit
from storage.models import Hospital

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def add(session, code: str) -> int:
    hospital = Hospital(code=code, name="测试医院", secret_enc="x", created_at=NOW)
    session.add(hospital)
    session.flush()
    return hospital.id


def count(session) -> int:
    return session.scalar(select(func.count()).select_from(Hospital))


async def test_run_commits_what_the_function_did_and_returns_its_answer(db):
    assert isinstance(await db.run(add, "H1"), int)
    assert await db.run(count) == 1


async def test_run_keeps_nothing_of_a_function_that_raises(db):
    def add_then_fail(session):
        add(session, "H2")
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        await db.run(add_then_fail)
    assert await db.run(count) == 0
    await db.run(add, "H2")  # the connection is fine afterwards
    assert await db.run(count) == 1


def add_and_signal(session, code: str) -> None:
    add(session, code)
    signal_on_commit(session, "added")
    signal_on_commit(session, "added")  # raised once however often a transaction asks


async def test_a_signal_is_raised_after_its_commit_and_never_for_a_rollback(db):
    heard: list[int] = []
    forget = db.on_commit("added", lambda: heard.append(len(heard)))
    await db.run(add_and_signal, "H1")
    assert heard == [0]

    def add_signal_then_fail(session):
        add_and_signal(session, "H2")
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        await db.run(add_signal_then_fail)
    async with db.transaction() as session:
        await session.run_sync(add_and_signal, "H3")
        assert heard == [0]  # not before the commit
    assert heard == [0, 1]
    forget()
    await db.run(add_and_signal, "H4")
    assert heard == [0, 1]


@pytest.mark.parametrize("db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_a_signal_reaches_the_processes_listening_on_the_same_postgresql(db):
    """Another Database on the same schema stands for another worker: it hears the commit through
    PostgreSQL's NOTIFY, and hears nothing of a transaction that rolled back."""
    other = Database(db.url, connect_args={"server_settings": {"search_path": await db.run(search_path)}})
    heard = asyncio.Event()
    other.on_commit("added", heard.set)
    try:
        async with other.listening(retry_s=0.05):
            await asyncio.sleep(0.3)  # LISTEN is in place

            def add_signal_then_fail(session):
                add_and_signal(session, "H1")
                raise LookupError("changed my mind")

            with pytest.raises(LookupError):
                await db.run(add_signal_then_fail)
            await asyncio.sleep(0.3)
            assert not heard.is_set()
            await db.run(add_and_signal, "H2")
            await asyncio.wait_for(heard.wait(), 5)
    finally:
        await other.close()


@pytest.mark.parametrize("db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_a_busy_process_keeps_its_connections_between_bursts(db):
    """A worker's requests and its outbox sender overlap about 20 transactions: the pool keeps that
    many connections open, rather than closing the ones past its size and connecting again (and
    preparing statements again) at the next burst."""
    async def burst() -> set[int]:
        together = asyncio.Barrier(20)

        async def one() -> int:
            async with db.transaction() as session:
                await together.wait()  # all 20 at once
                return await session.scalar(text("SELECT pg_backend_pid()"))
        return set(await asyncio.gather(*(one() for _ in range(20))))

    first = await burst()
    assert len(first) == 20
    assert await burst() == first


def search_path(session) -> str:
    return session.scalar(text("SHOW search_path"))


async def test_one_process_leads_a_job_at_a_time(db):
    """On PostgreSQL another Database on the same server stands for another worker; SQLite has one
    process, which always leads."""
    if not db.url.startswith("postgresql"):
        async with db.leading("sweep") as leader:
            assert leader
        return
    other = Database(db.url)
    try:
        async with db.leading("sweep") as first:
            async with other.leading("sweep") as second, other.leading("another job") as third:
                assert (first, second, third) == (True, False, True)
        async with other.leading("sweep") as second:
            assert second  # given up with the scope
    finally:
        await other.close()


@pytest.mark.parametrize("db", ["sqlite", "aiosqlite"], indirect=True)
async def test_a_twin_on_another_thread_takes_turns_with_this_loops_writers(db):
    """A thread writing transaction after transaction (the sweep) leaves this loop's writers their
    turn: SQLite's lock alone would hand them a gap only by chance."""
    order: list[str] = []
    twin = db.twin()

    def hold(session, n: int) -> None:
        add(session, f"T{n}")
        order.append(f"T{n}")
        time.sleep(0.005)  # the thread keeps the lock a while, as a batch would

    async def batches() -> None:
        try:
            for n in range(60):
                await twin.run(hold, n)
        finally:
            await twin.close()

    thread = asyncio.create_task(asyncio.to_thread(asyncio.run, batches()))
    while len(order) < 5:
        await asyncio.sleep(0.001)
    await db.run(add, "MAIN")
    order.append("MAIN")
    await thread
    assert order.index("MAIN") < 15 and len(order) == 61
