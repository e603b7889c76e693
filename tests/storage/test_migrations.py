"""The Alembic history builds exactly the schema of storage/models.py, on SQLite and on
PostgreSQL, and unwinds to nothing."""
from __future__ import annotations

import os
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from storage import migrate
from storage.db import create_engine
from storage.models import Base

PG_URL = os.environ.get("XINYI_TEST_PG_URL")  # as tests/conftest.py reads it


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request, tmp_path):
    """The URL of a database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+inline:///{tmp_path / 'empty.db'}"
        return
    if not PG_URL:
        pytest.skip("XINYI_TEST_PG_URL is not set (bash .ci/run starts a PostgreSQL)")
    name = f"xinyi_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    await admin.dispose()


async def schema_of(url: str) -> tuple[list, set[str]]:
    """What autogenerate would change to reach the models, and the tables there are."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: (compare_metadata(MigrationContext.configure(sync), Base.metadata), set(inspect(sync).get_table_names()))
            )
    finally:
        await engine.dispose()


async def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(empty_url):
    assert await migrate.current_revision(empty_url) is None

    assert await migrate.upgrade(empty_url) == migrate.head_revision()
    differences, tables = await schema_of(empty_url)
    assert differences == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert await migrate.upgrade(empty_url) == migrate.head_revision()  # a second run changes nothing

    assert await migrate.downgrade(empty_url) is None
    assert (await schema_of(empty_url))[1] == {"alembic_version"}

    assert await migrate.upgrade(empty_url) == migrate.head_revision()
    assert (await schema_of(empty_url))[0] == []


def test_history_is_one_line():
    """Two revisions written apart on the same parent would leave two heads; `upgrade head` then fails."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_heads() == [migrate.head_revision()]
    assert [r.down_revision for r in script.walk_revisions()][-1] is None


async def _outbox_insert(url: str, status: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO outbox (dedupe_key, kind, payload, status, attempts, next_attempt_at, created_at) "
                "VALUES (:key, 'marketing', '{}', :status, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"key": f"k-{status}", "status": status})
    finally:
        await engine.dispose()


async def _outbox_statuses(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT status FROM outbox ORDER BY id"))).scalars())
    finally:
        await engine.dispose()


async def test_the_outbox_takes_a_dropped_message_from_0006_on_and_a_downgrade_keeps_it_as_dead(empty_url):
    """0006_marketing changes a CHECK constraint, which autogenerate does not compare: checked here."""
    before = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0006_marketing").down_revision
    await migrate.upgrade(empty_url, before)
    with pytest.raises(Exception, match="(?i)check"):
        await _outbox_insert(empty_url, "dropped")
    await migrate.upgrade(empty_url, "0006_marketing")
    await _outbox_insert(empty_url, "dropped")
    with pytest.raises(Exception, match="(?i)check"):
        await _outbox_insert(empty_url, "lost")
    await migrate.downgrade(empty_url, before)
    assert await _outbox_statuses(empty_url) == ["dead"]
