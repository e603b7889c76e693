"""The outbox: side effects recorded in the transaction that caused them, sent later.

A sender claims due rows with a lease (a crash mid-send only delays the message until
the lease ends), sends, and marks them sent; a failure backs off exponentially with
jitter. A message sent while the database went away is marked once it is back (within the
lease), so an outage neither sends it twice nor holds it for the rest of its lease. A notice
to a person is dead after MAX_ATTEMPTS and shows in `xinyi stats`; a
programme event (billing/events.py) is retried until delivered, unless its receiver
refuses it for good (`Refused`): then it is parked as dead until an operator re-queues it.
A message that must not go any more (`Dropped`: a partner's offer whose consent was withdrawn,
billing/marketing.py) is settled as `dropped`, unsent, with why.
A commit that queues a message raises QUEUED, which wakes the senders (`xinyi serve`'s,
bot/app.py) at once.

The outbox has two lanes, each drained by its own sender: NOTICES to people (WeChat, SMS)
and EVENTS to the insurer's or health office's system, so that a receiver that is slow or
down never holds up a member's notice.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import Select, insert, select, text, update
from sqlalchemy.orm import Session

from storage.db import Database, describe, insert_unless_present, signal_on_commit, unavailable
from storage.models import OUTBOX_EVENT as EVENT  # the kind of a programme event's row
from storage.models import OUTBOX_LANES_PENDING, Outbox
from storage.prepared import Prepared

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8  # for notices to people; events are retried until delivered
LEASE = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)  # a receiver back after an outage gets its backlog within this
RETRY_AFTER_MAX = timedelta(hours=1)  # the longest wait a receiver may ask for
AT_ONCE = 16  # members whose messages a sender has in flight together
SETTLE_RETRY_S = 1.0  # how often a settlement the database could not take is tried again
QUEUED = "outbox"  # the signal a commit that queued messages raises
NOTICES, EVENTS = "notices", "events"  # the lanes


class Refused(Exception):
    """The receiver refused the message for good (it will never take it as it is): park it."""


class Dropped(Exception):
    """The message must not go at all any more (a marketing message whose consent was withdrawn
    after it was queued): settled as `dropped`, the reason kept, never tried again."""


class NotNow(Exception):
    """The receiver could not take the message this time; `after`, when it said how long to wait.
    `counted=False`: nothing was wrong with the message, only its timing (a rate limit); the try
    does not count towards MAX_ATTEMPTS."""

    def __init__(self, message: str, after: timedelta | None = None, *, counted: bool = True) -> None:
        super().__init__(message)
        self.after = after
        self.counted = counted


class Sender(Protocol):
    async def send(self, message: Outbox) -> None:
        """Deliver one message or raise; `message.payload` and `member_id` say what and to whom."""


_INSERT = Prepared(insert(Outbox.__table__))
_INSERT_ONCE = insert_unless_present(Outbox.__table__)


def _pending(kind: str, member_id: int | None, dedupe_key: str, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A new outbox row, due at once."""
    return {"dedupe_key": dedupe_key, "kind": kind, "member_id": member_id, "payload": payload, "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now}


def enqueue(session: Session, *, kind: str, member_id: int | None, dedupe_key: str, payload: dict[str, Any], now: datetime) -> None:
    """Queue a message in the caller's transaction (a Core insert: no unit of work to flush)."""
    _INSERT.execute(session, _pending(kind, member_id, dedupe_key, payload, now))
    signal_on_commit(session, QUEUED)


def enqueue_many(session: Session, kind: str, messages: list[tuple[str, int | None, dict[str, Any]]], now: datetime) -> None:
    """Queue many messages of one kind, each (dedupe key, member id, payload), in one statement:
    a sweep queues thousands, which one INSERT a message cost a round trip each on PostgreSQL."""
    if messages:
        session.execute(insert(Outbox), [_pending(kind, member_id, key, payload, now) for key, member_id, payload in messages])
        signal_on_commit(session, QUEUED)


async def follow_up(db: Database, message: Outbox, kind: str, now: datetime) -> None:
    """Queue, once however often it is asked, a message of `kind` that follows `message` (the SMS of a
    notice): to the same member, the notice's kind and payload in its own payload. It has its own
    attempts, backoff and rate limit, so a retry of one channel never repeats the other."""
    def work(session: Session) -> None:
        session.execute(_INSERT_ONCE[session.get_bind().dialect.name], _pending(
            kind, message.member_id, f"{kind}:{message.id}", {"notice": message.kind, **message.payload}, now))
        signal_on_commit(session, QUEUED)

    await db.run(work)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: a ceiling doubling from BACKOFF_BASE up to
    BACKOFF_MAX, the wait drawn from its upper half, so that messages that failed together do not
    come back together, and each wait is at least the one before until the ceiling stops growing."""
    ceiling = min(BACKOFF_BASE * (2 ** min(attempts - 1, 16)), BACKOFF_MAX)
    return ceiling * random.uniform(0.5, 1.0)


def _pending_in_lane(lane: str):
    """Spelt as the lane's partial index is, its values in the SQL: a planner uses a partial index
    only for a query whose own condition implies the index's, which a bound parameter cannot."""
    if lane not in OUTBOX_LANES_PENDING:
        raise ValueError(f"no outbox lane {lane!r}")
    return text(OUTBOX_LANES_PENDING[lane])


async def keep_sending(db: Database, sender: Sender, now: Callable[[], datetime], poll_s: float,
                       lane: str = NOTICES) -> None:
    """Drain whenever a commit queues a message, and every `poll_s` anyway: for retries that come
    due, and for messages queued where no signal reaches this process (a cron `xinyi sweep` on
    SQLite, a PostgreSQL listener that was reconnecting)."""
    woken = asyncio.Event()
    forget = db.on_commit(QUEUED, woken.set)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), poll_s)
            woken.clear()
            try:
                await drain(db, sender, now, lane=lane)
            except Exception as exc:  # the database went away mid-drain: what was claimed is sent after its lease
                if unavailable(exc):
                    log.warning("outbox: the database is unavailable (%s); trying again in %s s", describe(exc), poll_s)
                else:
                    log.exception("outbox: drain failed; trying again when woken or in %s s", poll_s)
    finally:
        forget()


async def drain(db: Database, sender: Sender, now: Callable[[], datetime], batch: int = 100,
                lane: str = NOTICES) -> tuple[int, int]:
    """Send what is due in `lane` once, oldest first; returns (sent, failed); a dropped message is neither.
    `now` is asked at each claim and each settlement: a backlog takes minutes, and a claim stamped
    with the drain's start would give its message a lease already over, and its sending a wrong time.
    Up to AT_ONCE members' messages are in flight together (one at a time a sender waits out every
    receiver's round trip, and a city's checkouts queue faster than that); each member's go in order."""
    tally = {"sent": 0, "failed": 0, "dropped": 0}
    at_once = asyncio.Semaphore(AT_ONCE)

    async def send_in_turn(messages: list[Outbox]) -> None:
        async with at_once:
            for message in messages:
                tally[await _send(db, sender, message, now)] += 1

    while True:
        claimed = await _claim(db, now(), batch, lane)
        by_member: dict[int | None, list[Outbox]] = {}
        for message in claimed:  # oldest first, so each member's list is in order
            by_member.setdefault(message.member_id, []).append(message)
        errors = [error for error in await asyncio.gather(
            *(send_in_turn(messages) for messages in by_member.values()), return_exceptions=True) if error]
        if errors:  # a settlement the database never took: the rest were settled first, this one waits out its lease
            raise errors[0]
        if len(claimed) < batch:
            return tally["sent"], tally["failed"]


async def _send(db: Database, sender: Sender, message: Outbox, now: Callable[[], datetime]) -> str:
    """Send one claimed message and settle it; which tally it counts in ("dropped" is neither)."""
    try:
        await sender.send(message)
    except Dropped as exc:
        log.info("outbox %s (%s) dropped: %s", message.id, message.kind, exc)
        await _settle(db, message, now(), error=exc)
        return "dropped"
    except Exception as exc:  # a sender's failure of any kind is retried, never lost
        await _settle(db, message, now(), error=exc)
        if isinstance(exc, NotNow) and not exc.counted:  # a rate limit: nothing is wrong, it waits its turn
            log.info("outbox %s (%s) waits: %s", message.id, message.kind, exc)
        else:
            log.warning("outbox %s (%s) failed, attempt %s: %s", message.id, message.kind, message.attempts,
                        type(exc).__name__)
        return "failed"
    await _settle(db, message, now(), error=None)
    return "sent"


def due(now: datetime, batch: int, lane: str) -> Select:
    """A claim's query: the first `batch` messages of `lane` due at `now`, oldest first, and none
    another sender holds."""
    return (select(Outbox).where(_pending_in_lane(lane), Outbox.next_attempt_at <= now)
            .order_by(Outbox.id).limit(batch).with_for_update(skip_locked=True))


async def _claim(db: Database, now: datetime, batch: int, lane: str) -> list[Outbox]:
    def work(session: Session) -> list[Outbox]:
        rows = list(session.scalars(due(now, batch, lane)))
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
        return rows

    return await db.run(work)


async def _settle(db: Database, message: Outbox, now: datetime, error: Exception | None) -> None:
    if error is None:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
    elif isinstance(error, Dropped):
        values = {"status": "dropped", "last_error": str(error)[:500]}
    elif isinstance(error, NotNow) and not error.counted:  # only the timing was wrong: later, the try not counted
        wait = min(error.after or BACKOFF_BASE, RETRY_AFTER_MAX)
        values = {"next_attempt_at": now + wait, "attempts": message.attempts - 1, "last_error": _described(error)}
    elif isinstance(error, Refused) or (message.kind != EVENT and message.attempts >= MAX_ATTEMPTS):
        values = {"status": "dead", "last_error": _described(error)}
    else:
        wait = backoff(message.attempts)
        if isinstance(error, NotNow) and error.after is not None:
            wait = max(wait, min(error.after, RETRY_AFTER_MAX))
        values = {"next_attempt_at": now + wait, "last_error": _described(error)}
    settle = update(Outbox).where(Outbox.id == message.id).values(**values)
    give_up = time.monotonic() + LEASE.total_seconds()  # then the message is another sender's again
    while True:
        try:
            await db.run(lambda session: session.execute(settle))
            return
        except Exception as exc:
            if not unavailable(exc) or time.monotonic() >= give_up:
                raise
            log.warning("outbox %s (%s): the database is unavailable (%s); marking it again in %s s",
                        message.id, message.kind, describe(exc), SETTLE_RETRY_S)
            await asyncio.sleep(SETTLE_RETRY_S)


def _described(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]


async def requeue(db: Database, message_id: int | None, now: datetime, kind: str) -> int:
    """A dead message of `kind` (every dead one when `message_id` is None) goes back to pending, as
    if new; returns how many did."""
    dead = (Outbox.kind == kind) & (Outbox.status == "dead")
    if message_id is not None:
        dead &= Outbox.id == message_id
    def work(session: Session) -> int:
        result = session.execute(
            update(Outbox).where(dead).values(status="pending", attempts=0, next_attempt_at=now, last_error=None))
        if result.rowcount:
            signal_on_commit(session, QUEUED)
        return result.rowcount

    return await db.run(work)


class LogSender:
    """Sandbox delivery: writes each message to the log (no personal numbers are in payloads)."""

    async def send(self, message: Outbox) -> None:
        log.info("outbox %s to member %s: %s %s", message.kind, message.member_id, message.payload.get("bill_no", ""), message.payload)
