"""Exactly once for WeChat messages, and one message of a user at a time.

The ledger records a message by its dedupe key before its handler runs; a retry finds the
row and gets the stored answer. Its status moves one way:

    processing -> done        the reply is ready while the request still waits: answered passively
    processing -> deferred    the request gave up at the deadline: the reply goes as customer-service messages
    deferred   -> delivered   those messages were sent

A user's messages are serialised by `UserLocks`: an in-process FIFO keeps arrival order, and
a lease row in the database excludes other worker processes. The lease is taken and released
in short transactions, never held open during the handler: SQLite write transactions are
BEGIN IMMEDIATE and would block every other writer.

Each of these is one short transaction on every message, so each is a plain function run by
`Database.run` (one greenlet, no await per statement).
"""
from __future__ import annotations

import asyncio
import uuid
from collections import deque
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.clock import Clock
from storage.db import Database
from storage.models import WeChatMessage, WeChatUnreachable, WeChatUserLease

KEEP_MESSAGES = timedelta(days=2)  # WeChat retries within seconds; two days leaves room to look into a case

# Core statements on the tables, built once: every message runs several of them.
_MESSAGES, _LEASES, _UNREACHABLE = WeChatMessage.__table__, WeChatUserLease.__table__, WeChatUnreachable.__table__
_RECORD = insert(_MESSAGES)
_REACHABLE = delete(_UNREACHABLE).where(_UNREACHABLE.c.openid == bindparam("openid"))
_THIS = _MESSAGES.c.dedupe_key == bindparam("key")
_PROCESSING = _THIS & (_MESSAGES.c.status == "processing")
_DONE = update(_MESSAGES).where(_PROCESSING).values(status="done", replies=bindparam("new_replies"))
_REPLIES = update(_MESSAGES).where(_THIS).values(replies=bindparam("new_replies"))
_DEFER = update(_MESSAGES).where(_PROCESSING).values(status="deferred")
_DELIVERED = update(_MESSAGES).where(_THIS).values(status="delivered")
_LOOKUP = select(_MESSAGES.c.status, _MESSAGES.c.replies).where(_THIS)
# An UPDATE takes parameters named as its table's columns for its SET: where-parameters are named otherwise.
_MINE = (_LEASES.c.openid == bindparam("who")) & (_LEASES.c.holder == bindparam("me"))
_TAKE = update(_LEASES).where(
    _LEASES.c.openid == bindparam("who"), or_(_LEASES.c.holder.is_(None), _LEASES.c.until < bindparam("now"))
).values(holder=bindparam("me"), until=bindparam("new_until"))
_LEASE_ROW = select(_LEASES.c.openid).where(_LEASES.c.openid == bindparam("openid"))
_NEW_LEASE = insert(_LEASES)
_RENEW = update(_LEASES).where(_MINE).values(until=bindparam("new_until"))
_FREE = update(_LEASES).where(_MINE).values(holder=None, until=None)


async def claim(db: Database, key: str, openid: str, now: datetime) -> bool:
    """Record a message; False when the key was seen before. A user who writes is reachable again."""
    try:
        await db.run(_claim, key, openid, now)
    except IntegrityError:
        return False
    return True


def _claim(session: Session, key: str, openid: str, now: datetime) -> None:
    connection = session.connection()
    connection.execute(_RECORD, {"dedupe_key": key, "openid": openid, "status": "processing", "received_at": now})
    connection.execute(_REACHABLE, {"openid": openid})


async def settle(db: Database, key: str, replies: list[str]) -> bool:
    """Store the replies. True: a request still waits and answers passively; False: it gave up (deferred)."""
    return await db.run(_settle, key, replies)


def _settle(session: Session, key: str, replies: list[str]) -> bool:
    connection = session.connection()
    if connection.execute(_DONE, {"key": key, "new_replies": replies}).rowcount == 1:
        return True
    connection.execute(_REPLIES, {"key": key, "new_replies": replies})
    return False


async def defer(db: Database, key: str) -> list[str] | None:
    """Give up waiting: None when the replies will go later; the replies when they were ready meanwhile."""
    return await db.run(_defer, key)


def _defer(session: Session, key: str) -> list[str] | None:
    if session.connection().execute(_DEFER, {"key": key}).rowcount == 1:
        return None
    status, replies = _lookup(session, key)
    return replies if status == "done" else None


async def mark_delivered(db: Database, key: str) -> None:
    await db.execute(_DELIVERED, {"key": key})


async def lookup(db: Database, key: str) -> tuple[str, list[str] | None]:
    return await db.run(_lookup, key)


def _lookup(session: Session, key: str) -> tuple[str, list[str] | None]:
    status, replies = session.connection().execute(_LOOKUP, {"key": key}).one()
    return status, replies


async def prune(db: Database, now: datetime) -> int:
    async with db.transaction() as session:
        result = await session.execute(delete(WeChatMessage).where(WeChatMessage.received_at < now - KEEP_MESSAGES))
        return result.rowcount


class UserLocks:
    """`reserve(openid)` takes a place in line at once (no await, so arrival order is kept);
    `async with turn:` waits for it and for the database lease, and frees both after."""

    def __init__(self, db: Database, clock: Clock, *, lease: timedelta = timedelta(seconds=30),
                 poll_s: float = 0.05, poll_max_s: float = 0.5) -> None:
        self.db = db
        self.clock = clock
        self.lease = lease
        self.poll_s = poll_s
        self.poll_max_s = poll_max_s
        self.holder = uuid.uuid4().hex
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}

    def reserve(self, openid: str) -> Turn:
        line = self._lines.setdefault(openid, deque())
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not line:
            place.set_result(None)
        line.append(place)
        return Turn(self, openid, place)

    def _leave(self, openid: str, place: asyncio.Future[None]) -> None:
        line = self._lines[openid]
        was_first = line[0] is place
        line.remove(place)
        if not line:
            del self._lines[openid]
        elif was_first:
            line[0].set_result(None)

    async def _acquire_lease(self, openid: str) -> None:
        delay = self.poll_s
        while not await self._try_lease(openid):
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_max_s)

    async def _try_lease(self, openid: str) -> bool:
        try:
            return await self.db.run(self._take_lease, openid, self.clock.now())
        except IntegrityError:
            return False  # another worker created the row first, and holds it

    def _take_lease(self, session: Session, openid: str, now: datetime) -> bool:
        connection = session.connection()
        until = now + self.lease
        if connection.execute(_TAKE, {"who": openid, "me": self.holder, "now": now, "new_until": until}).rowcount == 1:
            return True
        if connection.execute(_LEASE_ROW, {"openid": openid}).first() is not None:
            return False  # held by another worker
        connection.execute(_NEW_LEASE, {"openid": openid, "holder": self.holder, "until": until})
        return True

    async def _renew_forever(self, openid: str) -> None:
        """A handler may outlast the lease; while it runs, the lease is pushed forward."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await self.db.execute(_RENEW, {"who": openid, "me": self.holder, "new_until": self.clock.now() + self.lease})

    async def _release(self, openid: str) -> None:
        await self.db.execute(_FREE, {"who": openid, "me": self.holder})


class Turn:
    def __init__(self, locks: UserLocks, openid: str, place: asyncio.Future[None]) -> None:
        self._locks = locks
        self._openid = openid
        self._place = place
        self._renewal: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Leave the line without running (the message was a duplicate)."""
        self._locks._leave(self._openid, self._place)

    async def __aenter__(self) -> None:
        try:
            await self._place
            await self._locks._acquire_lease(self._openid)
        except BaseException:
            self.cancel()
            raise
        self._renewal = asyncio.create_task(self._locks._renew_forever(self._openid))

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._renewal is not None
        self._renewal.cancel()
        await asyncio.wait([self._renewal])
        try:
            await asyncio.shield(self._locks._release(self._openid))
        finally:
            self.cancel()
