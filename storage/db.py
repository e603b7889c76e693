"""Engine and session factory for SQLite and PostgreSQL (asyncpg).

SQLite goes through `sqlite+inline` (storage/sqlite_inline.py, the default) or
`sqlite+aiosqlite`. Its transactions begin IMMEDIATE: the write lock is taken at BEGIN,
so two writers queue instead of one failing later with "database is locked" when it
upgrades a read lock. WAL lets readers of other processes go on meanwhile.

PostgreSQL may be reached through PgBouncer in transaction pooling mode: the Database is then
given `direct_url`, PostgreSQL itself, for what needs a server session of its own (LISTEN, the
leader's advisory lock), and its engine keeps no prepared statement beyond one transaction
(SQLAlchemy's documented set-up for PgBouncer: unique statement names, no statement cache, no
pool of its own).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import socket
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, TypeVar

from sqlalchemy import Connection, Insert, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from storage import sqlite_inline
from storage.models import Base
from storage.prepared import Prepared

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 60
T = TypeVar("T")
SIGNALS = "xinyi_signals"  # Session.info key: what the transaction raises once it commits
NOTIFY_CHANNEL = "xinyi"  # PostgreSQL's channel for signals between processes
# A server that cannot serve now, by SQLSTATE (prefixes): a connection exception (class 08), shutting
# down or starting up (57P01 to 57P03), no connection slot left (53300).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
POOL_SIZE, POOL_OVERFLOW = 20, 10  # a process's PostgreSQL connections kept open, and more for a moment


def create_engine(url: str, *, through_pooler: bool = False, **kwargs) -> AsyncEngine:
    """`through_pooler`: the URL is PgBouncer's in transaction pooling mode, where consecutive
    transactions of one client connection may run on different server connections."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_size=4, max_overflow=4, pool_timeout=120, **kwargs
        )
        _make_sqlite_transactions_immediate(engine)
        return engine
    if through_pooler:
        connect_args = {**kwargs.pop("connect_args", {}), "statement_cache_size": 0, "prepared_statement_cache_size": 0,
                        "prepared_statement_name_func": _unique_statement_name}
        return create_async_engine(url, poolclass=NullPool, connect_args=connect_args, **kwargs)
    # Kept open: as many connections as a worker has transactions at once in a busy hour (16 requests
    # and its outbox sender's 16 messages overlap about 20). A connection past pool_size is closed
    # when it is returned, and the next one made costs a connect and asyncpg preparing its
    # statements anew: at 10 kept, a city day opened 16 connections a second (bench/README.md).
    return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=120, **kwargs)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (stopped, restarting, the connection
    lost) rather than that the work went wrong: worth a 503 and a retry, not a traceback."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    # Raised by the driver's connect, unwrapped: refused while the server is down, reset while it
    # shuts down or starts (a checkout answered 500 in a city-day outage for want of the latter).
    if isinstance(exc, (ConnectionError, socket.gaierror)):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


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
            try:
                sqlite_inline.begin_immediate(connection.connection.dbapi_connection, SQLITE_BUSY_TIMEOUT_S * 1000)
            except sqlite3.OperationalError as error:  # raised in a hook, unwrapped: wrapped as aiosqlite's is
                raise OperationalError("BEGIN IMMEDIATE", None, error) from error
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def signal_on_commit(session: Session, signal: str) -> None:
    """Raise `signal` once the transaction `session` is in commits: the Database's listeners in
    this process are called then, and on PostgreSQL those of every process listening
    (`Database.listening`), through a NOTIFY that PostgreSQL delivers at the commit, never
    for a transaction that rolls back."""
    raised = session.info.setdefault(SIGNALS, set())
    if signal not in raised:
        raised.add(signal)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_PG_NOTIFY, {"channel": NOTIFY_CHANNEL, "signal": signal})


_PG_NOTIFY = text("SELECT pg_notify(:channel, :signal)")


def insert_unless_present(table: Table) -> dict[str, Insert]:
    """INSERT ... ON CONFLICT DO NOTHING, by dialect name: a row whose unique key is taken is
    skipped (rowcount 0) instead of failing the whole transaction."""
    return {dialect.dialect.name: dialect.insert(table).on_conflict_do_nothing() for dialect in (postgresql, sqlite)}


class Database:
    """One engine and its session factory. A unit of work is `run(fn)`, a synchronous function on
    a Session (all of billing/); `transaction()`, an AsyncSession, is for the web pages of bot/
    that await between their reads."""

    def __init__(self, url: str, *, direct_url: str | None = None,
                 home_queue: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None, **engine_kwargs) -> None:
        self.url = url
        self.direct_url = direct_url
        self._engine_kwargs = engine_kwargs
        self.engine = create_engine(url, through_pooler=direct_url is not None, **engine_kwargs)
        # A server session of its own (LISTEN, session advisory locks): PostgreSQL itself when the
        # engine goes through a pooler, which would hand the session to other clients between transactions.
        self._session_engine = (create_async_engine(direct_url, pool_size=2, max_overflow=2, **engine_kwargs)
                                if direct_url is not None else self.engine)
        # A twin on another thread queues with the writers of the Database it was made from: their
        # queue, and the loop it belongs to.
        self._home_queue = home_queue
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one write lock. Writers of this process queue for it here, in order, instead of
        # in SQLite's busy handler, which sleeps in growing steps even after the lock comes free.
        self._sqlite_writers = asyncio.Lock() if self.is_sqlite else None
        self._writer_connection: AsyncConnection | None = None  # SQLite only, opened by the first `run`
        self._inline = self.engine.dialect.driver == sqlite_inline.SQLiteDialect_inline.driver
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._started: dict[object, float] = {}  # the unit of work in flight -> when it asked for the database

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._queued(), self.sessions() as session:
            async with session.begin():
                yield session
            self._raise(session.sync_session.info.pop(SIGNALS, ()))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(session, *args)` in one transaction, run to its end without an await between its statements.

        Each await on an AsyncSession costs a greenlet and a result wrapper, and taking a
        pooled connection costs more than a statement. Work that needs nothing but the
        database is written as a plain function and run here: on SQLite over this process's
        one writer connection, kept open, and with `sqlite+inline` called directly, with no
        greenlet (see `_in_writer_session`); elsewhere in one greenlet.
        """
        async with self._queued():
            if self._sqlite_writers is None:
                async with self.engine.connect() as conn:
                    result, signals = await conn.run_sync(_in_session, fn, args)
            else:
                if self._writer_connection is None:
                    self._writer_connection = await self.engine.connect()
                result, signals = await self._in_writer_session(fn, args)
            self._raise(signals)
            return result

    async def _in_writer_session(self, fn: Callable[..., T], args: tuple) -> tuple[T, set[str]]:
        connection = self._writer_connection
        if self._inline:
            # sqlite3 on the loop awaits nothing, so no greenlet is needed (it costs about 12 µs),
            # unless another process holds the write lock: then the wait is done on the loop, in one.
            try:
                return _in_session(connection.sync_connection, fn, args)
            except sqlite_inline.WriteLockBusy:
                pass
        return await connection.run_sync(_in_session, fn, args)

    def twin(self) -> Database:
        """Another Database on the same database (made on this one's loop), with an engine and
        connections of its own, for work on another thread's event loop (a connection belongs to
        the loop it was made on). On SQLite its units of work queue in turn with this one's:
        without that, a thread that writes batch after batch would leave this loop's writers a gap
        only by chance."""
        home_queue = (self._sqlite_writers, asyncio.get_running_loop()) if self.is_sqlite else None
        return Database(self.url, direct_url=self.direct_url, home_queue=home_queue, **self._engine_kwargs)

    def on_commit(self, signal: str, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after each commit that raised `signal` (`signal_on_commit`) in this
        process, and, inside `listening()`, in any process on the same PostgreSQL. Returns the
        function that removes it."""
        self._listeners.setdefault(signal, []).append(listener)
        return lambda: self._listeners[signal].remove(listener)

    def announce(self, *signals: str) -> None:
        """Call this process's listeners of `signals`, as a commit that raised them would (for a
        commit made through a twin on another thread)."""
        self._raise(signals)

    def _raise(self, signals) -> None:
        for signal in signals:
            for listener in tuple(self._listeners.get(signal, ())):
                listener()

    @asynccontextmanager
    async def listening(self, retry_s: float = 1.0) -> AsyncIterator[None]:
        """On PostgreSQL, hear the signals other processes raise (LISTEN on one connection of its
        own, opened again after it is lost; what was raised meanwhile is missed, so listeners
        keep a slower poll of their own). Elsewhere there are no other processes to hear."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        task = asyncio.create_task(self._listen_forever(retry_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen_forever(self, retry_s: float) -> None:
        def heard(_connection, _pid: int, _channel: str, signal: str) -> None:
            self._raise((signal,))

        while True:
            try:
                async with self._session_engine.connect() as conn:
                    driver = (await conn.get_raw_connection()).driver_connection
                    await driver.add_listener(NOTIFY_CHANNEL, heard)
                    try:
                        while not driver.is_closed():
                            await asyncio.sleep(retry_s)
                    finally:
                        if not driver.is_closed():
                            await driver.remove_listener(NOTIFY_CHANNEL, heard)
            except Exception as exc:  # whatever ended the connection (a restart, a network error): listen again
                log.warning("listening for signals: %s; again in %s s", describe(exc), retry_s)
            await asyncio.sleep(retry_s)

    @asynccontextmanager
    async def leading(self, job: str) -> AsyncIterator[bool]:
        """Whether this process is the one to run `job` now: on PostgreSQL, the holder of a session
        advisory lock on a connection kept for the scope (released when the scope ends, and by the
        server when the process dies); elsewhere always, there being one process."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        key = advisory_key(job)
        async with self._session_engine.connect() as conn:
            leader = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            await conn.commit()  # the lock is the session's; no transaction stays open meanwhile
            try:
                yield leader
            finally:
                if leader:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await conn.commit()

    async def execute(self, statement: Prepared, parameters: dict[str, Any]) -> None:
        """One prepared statement as a transaction of its own, through `run`."""
        await self.run(lambda session: statement.execute(session, parameters))

    def stalled_s(self) -> float:
        """How long the oldest unit of work in flight has waited or run: seconds when all is
        well, the whole time while another process holds SQLite's write lock."""
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())

    @asynccontextmanager
    async def _queued(self) -> AsyncIterator[None]:
        token = object()
        self._started[token] = time.monotonic()
        try:
            if self._home_queue is not None:
                async with _queued_from_another_loop(*self._home_queue):
                    yield
            elif self._sqlite_writers is None:
                yield
            else:
                async with self._sqlite_writers:
                    yield
        finally:
            del self._started[token]

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
        if self._session_engine is not self.engine:
            await self._session_engine.dispose()


def advisory_key(job: str) -> int:
    """The PostgreSQL advisory lock key `Database.leading(job)` takes."""
    return int.from_bytes(hashlib.sha256(job.encode()).digest()[:8], "big", signed=True)


def describe(exc: BaseException) -> str:
    """One line for the log: the driver's own message when SQLAlchemy wraps it."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"{type(orig).__name__}: {orig}".strip().rstrip(":")


@asynccontextmanager
async def _queued_from_another_loop(queue: asyncio.Lock, home: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
    """A writer queue that belongs to the loop `home`, taken from another thread's loop (a twin's)."""
    taken = asyncio.run_coroutine_threadsafe(queue.acquire(), home)
    try:
        await asyncio.wrap_future(taken)
    except BaseException:  # given up while waiting: a turn that comes after all is handed back
        taken.add_done_callback(lambda done: done.cancelled() or done.exception()
                                or home.call_soon_threadsafe(queue.release))
        raise
    try:
        yield
    finally:
        home.call_soon_threadsafe(queue.release)


def _in_session(connection: Connection, fn: Callable[..., T], args: tuple) -> tuple[T, set[str]]:
    # The transaction is the connection's; the Session only joins it (a Session's own transaction
    # costs about 20 µs more), so what it holds is flushed here before the commit.
    with connection.begin():
        session = Session(bind=connection, expire_on_commit=False)
        try:
            result = fn(session, *args)
            session.flush()
            signals = session.info.pop(SIGNALS, set())
        finally:
            session.close()
    return result, signals
