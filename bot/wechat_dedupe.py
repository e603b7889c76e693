"""Exactly once for WeChat messages, and one message of a user at a time.

The ledger records a message by its dedupe key before its handler runs; a retry finds the
row and gets the stored answer. Its status moves one way:

    processing -> done        the reply is ready while the request still waits: answered passively
    processing -> deferred    the request gave up at the deadline: the reply goes as customer-service messages
    deferred   -> delivered   those messages were sent

Replies that go as customer-service messages (all of a deferred message's, the ones after
the first of a passive one) are stored with `send_after`, a few minutes on, and it is
cleared once they are sent. A worker that dies before that leaves the row behind, and
another worker sends them when that time has come (`take_unsent`), a few minutes late
rather than never.

A user's messages are serialised by `UserLocks`: an in-process FIFO keeps arrival order, and
a lease row in the database excludes other worker processes. The lease is taken and released
in short transactions, never held open during the handler: SQLite write transactions are
BEGIN IMMEDIATE and would block every other writer. While leases are held, one task renews
them all together.

These are short transactions on every message, so each is a plain function run by
`Database.run` (one greenlet, no await per statement), and they ride together where the
order allows: a message first in its user's line takes the lease in the transaction that
records it (making the user's lease row the first time), and a reply that goes out passively,
alone, gives the lease back in the transaction that stores it.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.clock import Clock
from handlers.messages import Replies
from storage.db import Database, insert_unless_present
from storage.models import WeChatMessage, WeChatUnreachable, WeChatUserLease
from storage.prepared import Prepared

log = logging.getLogger(__name__)
KEEP_MESSAGES = timedelta(days=2)  # WeChat retries within seconds; two days leaves room to look into a case
# A live worker sends its late replies within a minute or so (a few attempts each); past this, it has died.
SEND_BY = timedelta(minutes=5)

# Core statements on the tables, prepared once: every message runs several of them.
_MESSAGES, _LEASES, _UNREACHABLE = WeChatMessage.__table__, WeChatUserLease.__table__, WeChatUnreachable.__table__
_RECORD = Prepared(insert(_MESSAGES))
_REACHABLE = Prepared(delete(_UNREACHABLE).where(_UNREACHABLE.c.openid == bindparam("openid")))
_THIS = _MESSAGES.c.dedupe_key == bindparam("key")
_PROCESSING = _THIS & (_MESSAGES.c.status == "processing")
_DONE = Prepared(update(_MESSAGES).where(_PROCESSING).values(
    status="done", replies=bindparam("new_replies"), send_after=bindparam("new_send_after")))
_REPLIES = Prepared(update(_MESSAGES).where(_THIS).values(replies=bindparam("new_replies"), send_after=bindparam("new_send_after")))
_DEFER = Prepared(update(_MESSAGES).where(_PROCESSING).values(status="deferred"))
_SENT = Prepared(update(_MESSAGES).where(_THIS).values(
    send_after=None, status=case((_MESSAGES.c.status == "deferred", "delivered"), else_=_MESSAGES.c.status)))
_LOOKUP = Prepared(select(_MESSAGES.c.status, _MESSAGES.c.replies).where(_THIS))
_DUE = _MESSAGES.c.send_after <= bindparam("now")
_UNSENT = Prepared(select(_MESSAGES.c.dedupe_key, _MESSAGES.c.openid, _MESSAGES.c.status, _MESSAGES.c.replies).where(_DUE).order_by(
    _MESSAGES.c.send_after).limit(bindparam("limit")))
_TAKE_UNSENT = Prepared(update(_MESSAGES).where(_THIS, _DUE).values(send_after=bindparam("new_send_after")))
# An UPDATE takes parameters named as its table's columns for its SET: where-parameters are named otherwise.
_MINE = (_LEASES.c.openid == bindparam("who")) & (_LEASES.c.holder == bindparam("me"))
_TAKE = Prepared(update(_LEASES).where(
    _LEASES.c.openid == bindparam("who"), or_(_LEASES.c.holder.is_(None), _LEASES.c.until < bindparam("now"))
).values(holder=bindparam("me"), until=bindparam("new_until")))
# Two workers may make a new user's row at once: the second's insert is skipped, not an error
# that would undo the message recorded in its transaction.
_NEW_LEASE = {dialect: Prepared(statement) for dialect, statement in insert_unless_present(_LEASES).items()}
_RENEW_ALL = Prepared(update(_LEASES).where(_LEASES.c.holder == bindparam("me")).values(until=bindparam("new_until")))
_FREE = Prepared(update(_LEASES).where(_MINE).values(holder=None, until=None))


async def claim(db: Database, key: str, openid: str, now: datetime, turn: Turn) -> bool:
    """Record a message; False when the key was seen before. A user who writes is reachable again.
    When the message is first in its user's line, its turn tries for the lease in the same transaction."""
    try:
        leased = await db.run(_claim, key, openid, now, turn)
    except IntegrityError:
        return False
    turn.leased = leased
    return True


def _claim(session: Session, key: str, openid: str, now: datetime, turn: Turn) -> bool:
    _RECORD.execute(session, {"dedupe_key": key, "openid": openid, "status": "processing", "received_at": now})
    _REACHABLE.execute(session, {"openid": openid})
    return turn.first_in_line and turn.locks.take_lease(session, openid, now)


async def settle(db: Database, key: str, answer: Replies, turn: Turn, now: datetime) -> bool:
    """Store the replies, with the conversation's new state (`answer.record`) in the same transaction.
    True: a request still waits and answers passively; False: it gave up (deferred). When that
    passive reply is all there is to send, the turn's lease is given back with it."""
    passive, freed = await db.run(_settle, key, answer, turn, now + SEND_BY)
    if freed:
        turn.leased = False
    return passive


def _settle(session: Session, key: str, answer: Replies, turn: Turn, send_by: datetime) -> tuple[bool, bool]:
    if answer.record is not None:
        answer.record(session)
    replies = answer.replies
    alone = len(replies) <= 1
    if _DONE.execute(session, {"key": key, "new_replies": replies, "new_send_after": None if alone else send_by}).rowcount:
        if alone:
            turn.locks.free(session, turn.openid)
        return True, alone
    _REPLIES.execute(session, {"key": key, "new_replies": replies, "new_send_after": send_by if replies else None})
    return False, False


async def defer(db: Database, key: str) -> list[str] | None:
    """Give up waiting: None when the replies will go later; the replies when they were ready meanwhile."""
    return await db.run(_defer, key)


def _defer(session: Session, key: str) -> list[str] | None:
    if _DEFER.execute(session, {"key": key}).rowcount == 1:
        return None
    status, replies = _lookup(session, key)
    return replies if status == "done" else None


async def mark_sent(db: Database, key: str) -> None:
    """The replies to send later went (or were given up on after their attempts)."""
    await db.execute(_SENT, {"key": key})


@dataclass(frozen=True)
class Unsent:
    key: str
    openid: str
    texts: list[str]


async def take_unsent(db: Database, now: datetime, limit: int = 100) -> list[Unsent]:
    """Late replies whose worker did not send them in time, each taken for SEND_BY more (so that
    another worker leaves them alone, and takes them in turn if this one dies as well)."""
    return await db.run(_take_unsent, now, limit)


def _take_unsent(session: Session, now: datetime, limit: int) -> list[Unsent]:
    taken = []
    for key, openid, status, replies in _UNSENT.execute(session, {"now": now, "limit": limit}).all():
        if _TAKE_UNSENT.execute(session, {"key": key, "now": now, "new_send_after": now + SEND_BY}).rowcount:
            taken.append(Unsent(key, openid, list(replies or [])[0 if status == "deferred" else 1:]))
    return taken


async def lookup(db: Database, key: str) -> tuple[str, list[str] | None]:
    return await db.run(_lookup, key)


def _lookup(session: Session, key: str) -> tuple[str, list[str] | None]:
    status, replies = _LOOKUP.execute(session, {"key": key}).one()
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
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

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
        return await self.db.run(self.take_lease, openid, self.clock.now())

    def take_lease(self, session: Session, openid: str, now: datetime) -> bool:
        """Take the user's lease if it is free or ran out, making its row the first time; False
        while another worker holds it."""
        until = now + self.lease
        if _TAKE.execute(session, {"who": openid, "me": self.holder, "now": now, "new_until": until}).rowcount == 1:
            return True
        made = _NEW_LEASE[session.get_bind().dialect.name].execute(session, {"openid": openid, "holder": self.holder, "until": until})
        return made.rowcount == 1

    def free(self, session: Session, openid: str) -> None:
        _FREE.execute(session, {"who": openid, "me": self.holder})

    def _hold(self, openid: str) -> None:
        self._held.add(openid)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        """A handler may outlast the lease: every lease/3 all the leases held here are pushed forward."""
        try:
            while self._held:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                if self._held:
                    try:
                        await self.db.execute(_RENEW_ALL, {"me": self.holder, "new_until": self.clock.now() + self.lease})
                    except Exception as exc:  # the next round tries again; the lease has two more rounds to run
                        log.warning("wechat: renewing the user leases failed: %s", type(exc).__name__)
        finally:
            self._renewer = None

    async def _release(self, openid: str, leased: bool) -> None:
        self._held.discard(openid)
        if leased:
            await self.db.run(self.free, openid)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait([self._renewer])


class Turn:
    """A place in a user's line. `leased`: this turn holds the user's lease in the database
    (taken with the claim, or on entering; given back with the settle, or on leaving)."""

    def __init__(self, locks: UserLocks, openid: str, place: asyncio.Future[None]) -> None:
        self.locks = locks
        self.openid = openid
        self.leased = False
        self._place = place

    @property
    def first_in_line(self) -> bool:
        return self._place.done()

    def cancel(self) -> None:
        """Leave the line without running (the message was a duplicate)."""
        self.locks._leave(self.openid, self._place)

    async def __aenter__(self) -> None:
        try:
            await self._place
            if not self.leased:
                await self.locks._acquire_lease(self.openid)
                self.leased = True
        except BaseException:
            self.cancel()
            raise
        self.locks._hold(self.openid)

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await asyncio.shield(self.locks._release(self.openid, self.leased))
        finally:
            self.leased = False
            self.cancel()
