"""Alembic, run from code: `xinyi migrate`, and the schema check before the other commands."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from storage.db import create_engine

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the schema up to `revision`; returns the revision the database is at after."""
    return await _run(url, command.upgrade, revision)


async def downgrade(url: str, revision: str = "base") -> str | None:
    return await _run(url, command.downgrade, revision)


async def current_revision(url: str) -> str | None:
    """The revision the database is at; None when it has never been migrated."""
    return await _run(url, None, None)


async def _run(url: str, action, revision: str | None) -> str | None:
    def on_connection(connection: Connection) -> str | None:
        if action is not None:
            action(alembic_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(url)
    try:
        # One transaction around Alembic's work: DDL is transactional on both backends.
        async with engine.begin() as connection:
            return await connection.run_sync(on_connection)
    finally:
        await engine.dispose()
