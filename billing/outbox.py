"""The outbox: side effects recorded in the transaction that caused them, sent later.

A sender claims due rows with a lease (a crash mid-send only delays the message until
the lease ends), sends, and marks them sent; a failure backs off exponentially, and
after MAX_ATTEMPTS the row is dead and shows in `xinyi stats`. A commit that queues a
message raises QUEUED, which wakes the senders (`xinyi serve`'s, bot/app.py) at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from storage.db import Database, describe, signal_on_commit, unavailable
from storage.models import Outbox
from storage.prepared import Prepared

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=30)
QUEUED = "outbox"  # the signal a commit that queued messages raises


class Sender(Protocol):
    async def send(self, message: Outbox) -> None:
        """Deliver one message or raise; `message.payload` and `member_id` say what and to whom."""


_INSERT = Prepared(insert(Outbox.__table__))


def enqueue(session: Session, *, kind: str, member_id: int | None, dedupe_key: str, payload: dict[str, Any], now: datetime) -> None:
    """Queue a message in the caller's transaction (a Core insert: no unit of work to flush)."""
    _INSERT.execute(session, {"dedupe_key": dedupe_key, "kind": kind, "member_id": member_id, "payload": payload,
                                           "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
    signal_on_commit(session, QUEUED)


def backoff(attempts: int) -> timedelta:
    return BACKOFF_BASE * (2 ** min(attempts - 1, 10))


async def keep_sending(db: Database, sender: Sender, now: Callable[[], datetime], poll_s: float) -> None:
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
                await drain(db, sender, now())
            except Exception as exc:  # the database went away mid-drain: what was claimed is sent after its lease
                if unavailable(exc):
                    log.warning("outbox: the database is unavailable (%s); trying again in %s s", describe(exc), poll_s)
                else:
                    log.exception("outbox: drain failed; trying again when woken or in %s s", poll_s)
    finally:
        forget()


async def drain(db: Database, sender: Sender, now: datetime, batch: int = 100) -> tuple[int, int]:
    """Send what is due once; returns (sent, failed)."""
    sent = failed = 0
    while True:
        claimed = await _claim(db, now, batch)
        for message in claimed:
            try:
                await sender.send(message)
            except Exception as exc:  # a sender's failure of any kind is retried, never lost
                failed += 1
                await _settle(db, message, now, error=f"{type(exc).__name__}: {exc}")
                log.warning("outbox %s (%s) failed, attempt %s: %s", message.id, message.kind, message.attempts, type(exc).__name__)
            else:
                sent += 1
                await _settle(db, message, now, error=None)
        if len(claimed) < batch:
            return sent, failed


async def _claim(db: Database, now: datetime, batch: int) -> list[Outbox]:
    async with db.transaction() as session:
        rows = list(await session.scalars(
            select(Outbox)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= now)
            .order_by(Outbox.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ))
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
        return rows


async def _settle(db: Database, message: Outbox, now: datetime, error: str | None) -> None:
    if error is None:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
    elif message.attempts >= MAX_ATTEMPTS:
        values = {"status": "dead", "last_error": error[:500]}
    else:
        values = {"next_attempt_at": now + backoff(message.attempts), "last_error": error[:500]}
    async with db.transaction() as session:
        await session.execute(update(Outbox).where(Outbox.id == message.id).values(**values))


class LogSender:
    """Sandbox delivery: writes each message to the log (no personal numbers are in payloads)."""

    async def send(self, message: Outbox) -> None:
        log.info("outbox %s to member %s: %s %s", message.kind, message.member_id, message.payload.get("bill_no", ""), message.payload)
