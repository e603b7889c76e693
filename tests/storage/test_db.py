"""Database.run: a plain function on a Session, one transaction, on every backend."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

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


def add_first(session) -> None:
    add(session, "FIRST")


async def test_first_work_commits_with_the_first_transaction_that_commits(db):
    def fail(session):
        raise LookupError("refused")

    with db.first_in_transaction(add_first) as first:
        with pytest.raises(LookupError):
            await db.run(fail)  # rolled back, and the first work with it
        assert not first.committed and await db.run(count) == 1  # carried by this read, which committed
        assert first.committed
        await db.commit_first_work()  # done already: nothing more
        async with db.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(Hospital)) == 1
    assert await db.run(count) == 1


async def test_first_work_runs_in_a_transaction_of_its_own_when_none_came(db):
    with db.first_in_transaction(add_first) as first:
        await db.commit_first_work()
        assert first.committed
    async with db.transaction() as session:
        assert await session.scalar(select(Hospital.code)) == "FIRST"


async def test_first_work_rides_an_async_session_transaction_too(db):
    with db.first_in_transaction(add_first) as first:
        async with db.transaction() as session:
            assert await session.scalar(select(Hospital.code)) == "FIRST"
        assert first.committed


async def test_first_work_stays_in_its_block_and_its_task(db):
    with db.first_in_transaction(add_first) as first:
        await asyncio.create_task(db.run(add, "OTHER-TASK"))  # a task started meanwhile copies the context
        assert not first.committed
    await db.run(add, "AFTER")  # the same task, after the block
    assert not first.committed
    assert sorted(await db.run(lambda session: session.scalars(select(Hospital.code)).all())) == ["AFTER", "OTHER-TASK"]
