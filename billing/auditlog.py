"""The console's audit log: who did what to what, when, why, and the state before and after.

Rows are only ever added, in the transaction of the action they record; no code updates
or deletes them, and the database refuses it (storage.models.AuditEntry's triggers).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import AuditEntry

PAGE_ROWS = 100


class Actor(Protocol):
    id: int
    username: str


def record(session: Session | AsyncSession, now: datetime, actor: Actor, action: str, target: str, reason: str, *,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    session.add(AuditEntry(at=now, operator_id=actor.id, username=actor.username, action=action, target=target,
                           reason=reason, before=before, after=after))


async def entries(session: AsyncSession, *, targets: list[str] | None = None, before_id: int | None = None,
                  limit: int = PAGE_ROWS) -> list[AuditEntry]:
    """Newest first; `targets` narrows to some members' or bills' rows, `before_id` pages on."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if targets is not None:
        query = query.where(AuditEntry.target.in_(targets))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(await session.scalars(query))
