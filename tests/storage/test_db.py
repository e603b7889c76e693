"""Database.run: a plain function on a Session, one transaction, on every backend."""
from __future__ import annotations

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
