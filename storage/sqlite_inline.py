"""`sqlite+inline://`: SQLite through Python's own sqlite3 module, called on the event loop.

aiosqlite runs every call in a thread of its own and hands the result back to the loop:
SQLAlchemy's adapter makes about four such trips a statement, and on this machine those
trips, not SQLite, were most of the time of a charge or a payment (bench/README.md).
A statement on a local SQLite file in WAL mode takes microseconds and never waits on
the network, so this dialect runs it right where SQLAlchemy asks for it.

The one wait SQLite has is for the write lock, which another process may hold. That
wait must not block the loop: `begin_immediate` asks for the lock without SQLite's
busy handler and, while another process holds it, sleeps on the loop and asks again.
Writers of one process queue before that, on `Database`'s lock.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.util.concurrency import await_, in_greenlet

FIRST_RETRY_S = 0.001
LONGEST_RETRY_S = 0.05


async def _finished() -> None:
    return None


def _count_as_awaited() -> None:
    """AsyncConnection.execute insists that the driver awaited something. Awaiting a
    finished coroutine satisfies it: two greenlet switches, and the loop is never entered."""
    if in_greenlet():
        await_(_finished())


class InlineCursor(sqlite3.Cursor):
    def execute(self, *args):
        _count_as_awaited()
        return super().execute(*args)

    def executemany(self, *args):
        _count_as_awaited()
        return super().executemany(*args)

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's async results call this to keep rows readable after the call returns;
        a sqlite3 cursor on this same thread keeps them anyway."""


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory=InlineCursor):
        return super().cursor(factory)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    driver = "inline"
    is_async = True  # for create_async_engine: its greenlet runs these calls to the end at once
    supports_statement_cache = True

    def create_connect_args(self, url):
        args, kwargs = super().create_connect_args(url)
        kwargs["factory"] = InlineConnection
        kwargs["check_same_thread"] = False  # the pool may hand a connection to another loop's thread
        return args, kwargs

    @classmethod
    def get_pool_class(cls, url):
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool


class WriteLockBusy(Exception):
    """Another process holds the write lock, and the caller runs outside a greenlet, so it cannot
    wait on the loop: it is to try again in one (`Database.run` does)."""


def begin_immediate(dbapi_connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """BEGIN IMMEDIATE, waiting on the loop (not in SQLite) while another process writes."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = FIRST_RETRY_S
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error) or time.monotonic() > deadline:
                    raise
            if not in_greenlet():
                raise WriteLockBusy
            await_(asyncio.sleep(delay))
            delay = min(delay * 2, LONGEST_RETRY_S)
    finally:
        # Inside the transaction a rare wait (a reader meeting a checkpoint) stays SQLite's own.
        dbapi_connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")


registry.register("sqlite.inline", __name__, "SQLiteDialect_inline")
