"""Replays by the caller's own number: same payload, first outcome; other payload, 409.

The key row goes in with the outcome, after the work, in the same transaction, and
nothing looks for it first: the unique index is the check. A repeat (late or concurrent)
either fails that insert or is refused earlier by the state its twin left (the charge
number taken, the credit used, the visit closed); either way its transaction rolls back,
and if the key is stored by then the stored outcome is replayed. A first request, the
usual case, so costs one statement; a repeat does its work and throws it away.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import BillingError, Conflict
from billing.metrics import APPLIED
from storage.models import IdempotencyKey
from storage.prepared import Prepared

Work = Callable[[Session], dict[str, Any]]

# Core statements on the table, prepared once: building a statement, or passing it through the
# ORM, costs more than SQLite takes to run it.
_KEYS = IdempotencyKey.__table__
_FIND = Prepared(select(_KEYS.c.request_hash, _KEYS.c.response).where(_KEYS.c.scope == bindparam("scope"), _KEYS.c.key == bindparam("key")))
_STORE = Prepared(insert(_KEYS))


@dataclass(frozen=True)
class Once:
    """A request under the caller's own number (`key` within `scope`): `work(session)` is done
    once; the same payload again gets the first outcome, another payload a 409."""

    scope: str
    key: str
    payload: dict[str, Any]
    work: Work


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_once(core: Core, once: Once) -> dict[str, Any]:
    """`once.work(session)` in one `Database.run` transaction of its own, or its first outcome replayed."""
    kind = once.scope.partition(":")[0]
    try:
        response = await core.db.run(once_in, core, once)
    except (IntegrityError, BillingError):
        stored = await core.db.run(_find, once.scope, once.key)
        if stored is None:
            raise
        response = _replay(stored, once.scope, once.key, request_hash(once.payload))
        APPLIED.labels(kind, "replay").inc()
        return response
    APPLIED.labels(kind, "first").inc()
    return response


def once_in(session: Session, core: Core, once: Once) -> dict[str, Any]:
    """The work and its key inside a transaction the caller runs, beside other work (a booking opens
    its visit and charges its fee in the transaction that takes its place). A repeat fails on the
    key and takes the caller's whole transaction with it; only `run_once` replays."""
    response = once.work(session)
    _STORE.execute(session, {"scope": once.scope, "key": once.key, "request_hash": request_hash(once.payload),
                             "response": response, "created_at": core.clock.now()})
    return response


def _find(session: Session, scope: str, key: str) -> Row | None:
    return _FIND.execute(session, {"scope": scope, "key": key}).first()


def _replay(stored: Row, scope: str, key: str, digest: str) -> dict[str, Any]:
    if stored.request_hash != digest:
        raise Conflict(f"{key} was already used with a different request", reason="idempotency_key_reused",
                       scope=scope.split(":")[0], key=key)
    return stored.response
