"""Engine and session factory for SQLite and PostgreSQL (asyncpg).

SQLite goes through `sqlite+inline` (storage/sqlite_inline.py, the default) or
`sqlite+aiosqlite`. Its transactions begin IMMEDIATE: the write lock is taken at BEGIN,
so two writers queue instead of one failing later with "database is locked" when it
upgrades a read lock. WAL lets readers of other processes go on meanwhile.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from sqlalchemy import Connection, Executable, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from storage import sqlite_inline
from storage.models import Base

SQLITE_BUSY_TIMEOUT_S = 60
T = TypeVar("T")


def create_engine(url: str, **kwargs) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_size=4, max_overflow=4, pool_timeout=120, **kwargs
        )
        _make_sqlite_transactions_immediate(engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_timeout=120, **kwargs)


def _make_sqlite_transactions_immediate(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Take transaction control from the driver so that BEGIN below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    inline = engine.dialect.driver == sqlite_inline.SQLiteDialect_inline.driver

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection):
        if inline:
            sqlite_inline.begin_immediate(connection.connection.dbapi_connection, SQLITE_BUSY_TIMEOUT_S * 1000)
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class FirstWork:
    """Work a request commits with one of its transactions instead of in one of its own (the
    hospital API's nonce): it runs first in each transaction of the task that set it, until
    one commits."""

    fn: Callable[[Session], None]
    task: asyncio.Task | None
    committed: bool = False


_FIRST_WORK: ContextVar[FirstWork | None] = ContextVar("xinyi_first_work", default=None)


def _first_work() -> FirstWork | None:
    first = _FIRST_WORK.get()
    # Tasks created meanwhile copy the context; only the task that set the work runs it.
    if first is None or first.committed or first.task is not asyncio.current_task():
        return None
    return first


class Database:
    """One engine and its session factory. A unit of work is framed by `transaction()` (an
    AsyncSession) or `run(fn)` (a synchronous function on a Session, for the money paths)."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one write lock. Writers of this process queue for it here, in order, instead of
        # in SQLite's busy handler, which sleeps in growing steps even after the lock comes free.
        self._sqlite_writers = asyncio.Lock() if self.is_sqlite else None
        self._writer_connection: AsyncConnection | None = None  # SQLite only, opened by the first `run`

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._queued(), self.sessions() as session:
            first = _first_work()
            async with session.begin():
                if first is not None:
                    await session.run_sync(first.fn)
                yield session
            if first is not None:
                first.committed = True

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(session, *args)` in one transaction, run to its end in one greenlet.

        Each await on an AsyncSession costs a greenlet and a result wrapper, and taking a
        pooled connection costs more than a statement. Work that needs nothing but the
        database is written as a plain function and run here, on SQLite over this process's
        one writer connection, kept open: about a quarter of the time of `transaction()`.
        """
        async with self._queued():
            first = _first_work()
            if self._sqlite_writers is None:
                async with self.engine.connect() as conn:
                    return await conn.run_sync(_in_session, first, fn, args)
            if self._writer_connection is None:
                self._writer_connection = await self.engine.connect()
            return await self._writer_connection.run_sync(_in_session, first, fn, args)

    @contextmanager
    def first_in_transaction(self, fn: Callable[[Session], None]) -> Iterator[FirstWork]:
        """Within the block, `fn(session)` runs first in each of this task's transactions
        (`run` or `transaction`) and commits or rolls back with it, until one commits;
        `committed` says whether one has. Outside the block no transaction takes it
        (aiohttp serves a keep-alive connection's requests in one task)."""
        first = FirstWork(fn, asyncio.current_task())
        token = _FIRST_WORK.set(first)
        try:
            yield first
        finally:
            _FIRST_WORK.reset(token)

    async def commit_first_work(self) -> None:
        """Commits the work of `first_in_transaction` on its own unless a transaction did."""
        if _first_work() is not None:
            await self.run(_nothing)

    async def execute(self, statement: Executable, parameters: dict[str, Any]) -> None:
        """One Core statement as a transaction of its own, through `run`."""
        await self.run(lambda session: session.connection().execute(statement, parameters))

    @asynccontextmanager
    async def _queued(self) -> AsyncIterator[None]:
        if self._sqlite_writers is None:
            yield
            return
        async with self._sqlite_writers:
            yield

    async def create_all(self) -> None:
        """Create the schema straight from the models (tests, benchmarks); `xinyi migrate` uses Alembic."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def drop_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)

    async def close(self) -> None:
        if self._writer_connection is not None:
            await self._writer_connection.close()
            self._writer_connection = None
        await self.engine.dispose()


def _nothing(_session: Session) -> None:
    return None


def _in_session(connection: Connection, first: FirstWork | None, fn: Callable[..., T], args: tuple) -> T:
    # The transaction is the connection's; the Session only joins it (a Session's own transaction
    # costs about 20 µs more), so what it holds is flushed here before the commit.
    with connection.begin():
        session = Session(bind=connection, expire_on_commit=False)
        try:
            if first is not None:
                first.fn(session)
            result = fn(session, *args)
            session.flush()
        finally:
            session.close()
    if first is not None:
        first.committed = True
    return result
