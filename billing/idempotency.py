"""Replays by the caller's own number: same payload, first outcome; other payload, 409.

The key row is inserted before the work, in the same transaction. A concurrent twin
blocks on the unique index (PostgreSQL) or on the write lock (SQLite); once the first
commits it fails the insert, and its retry reads the stored outcome.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.core import Core
from billing.errors import Conflict
from storage.models import IdempotencyKey

Work = Callable[[AsyncSession], Awaitable[dict[str, Any]]]


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_once(core: Core, scope: str, key: str, payload: dict[str, Any], work: Work) -> dict[str, Any]:
    digest = request_hash(payload)
    try:
        return await _attempt(core, scope, key, digest, work)
    except IntegrityError:
        async with core.db.transaction() as session:
            stored = await _find(session, scope, key)
        if stored is None:
            raise
        return _replay(stored, scope, key, digest)


async def _attempt(core: Core, scope: str, key: str, digest: str, work: Work) -> dict[str, Any]:
    async with core.db.transaction() as session:
        stored = await _find(session, scope, key)
        if stored is not None:
            return _replay(stored, scope, key, digest)
        row = IdempotencyKey(scope=scope, key=key, request_hash=digest, created_at=core.clock.now())
        session.add(row)
        await session.flush()
        row.response = await work(session)
        return row.response


async def _find(session: AsyncSession, scope: str, key: str) -> IdempotencyKey | None:
    return await session.scalar(select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key))


def _replay(stored: IdempotencyKey, scope: str, key: str, digest: str) -> dict[str, Any]:
    if stored.request_hash != digest:
        raise Conflict(f"{key} was already used with a different request", reason="idempotency_key_reused",
                       scope=scope.split(":")[0], key=key)
    return stored.response
