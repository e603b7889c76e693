"""Alembic environment. `storage.migrate` hands over an open connection; the alembic
command line (writing a new revision) names the database with `-x url=...`."""
from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.models import Base

config = context.config


def run_on(connection: Connection) -> None:
    # Batch mode: SQLite alters a table only by copying it. DDL is transactional on both backends,
    # as storage.db begins every SQLite transaction itself (BEGIN IMMEDIATE).
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("xinyi migrations run online only")
connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("name the database: alembic -c storage/alembic.ini -x url=sqlite+inline:///scratch.db ...")
    asyncio.run(run_on_url(url))
