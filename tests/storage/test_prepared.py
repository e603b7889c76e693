"""Prepared statements answer as SQLAlchemy's own path does, on every backend: values converted
both ways, column defaults filled in, rows read by name, the transaction's fate shared, failures
as SQLAlchemy's exceptions. On `sqlite+inline` they run on sqlite3 itself; elsewhere through
`Connection.execute`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound, StatementError

from storage.models import Conversation, Outbox, Staff
from storage.prepared import Prepared, Rows

NOW = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=timezone.utc)
_OUTBOX, _STAFF, _CONVERSATIONS = Outbox.__table__, Staff.__table__, Conversation.__table__

ADD_MESSAGE = Prepared(insert(_OUTBOX).returning(_OUTBOX.c.id, _OUTBOX.c.status))
READ_MESSAGE = Prepared(select(
    _OUTBOX.c.kind, _OUTBOX.c.payload, _OUTBOX.c.status, _OUTBOX.c.attempts, _OUTBOX.c.next_attempt_at,
    (_OUTBOX.c.attempts + 1).label("next_attempt"),
).where(_OUTBOX.c.dedupe_key == bindparam("dedupe_key")))
ATTEMPTED = Prepared(update(_OUTBOX).where(_OUTBOX.c.status == "pending").values(attempts=_OUTBOX.c.attempts + bindparam("more")))
ADD_STAFF = Prepared(insert(_STAFF))
ACTIVE_STAFF = Prepared(select(_STAFF.c.name, _STAFF.c.active).where(_STAFF.c.active.is_(True)).order_by(_STAFF.c.name))
ADD_CONVERSATION = Prepared(insert(_CONVERSATIONS))
CONVERSATION = Prepared(select(_CONVERSATIONS.c.data, _CONVERSATIONS.c.locale, _CONVERSATIONS.c.version, _CONVERSATIONS.c.expires_at))


def message(key: str, payload=None) -> dict:
    return {"dedupe_key": key, "kind": "bill_issued", "member_id": None, "payload": payload or {"bill_no": "B1", "fen": 5550},
            "next_attempt_at": NOW, "created_at": NOW}


async def test_values_go_in_and_come_back_as_sqlalchemy_converts_them(db):
    def work(session):
        added = ADD_MESSAGE.execute(session, message("m1", {"bill_no": "B1", "名字": "张伟", "fen": 5550})).one()
        row = READ_MESSAGE.execute(session, {"dedupe_key": "m1"}).one()
        orm = session.scalar(select(Outbox).where(Outbox.dedupe_key == "m1"))
        return added, row, (orm.kind, orm.payload, orm.status, orm.attempts, orm.next_attempt_at)

    added, row, orm = await db.run(work)
    assert isinstance(added.id, int) and added.status == "pending"  # RETURNING, the column default filled in
    assert (row.kind, row.payload, row.status, row.attempts, row.next_attempt_at) == orm
    assert row.payload == {"bill_no": "B1", "名字": "张伟", "fen": 5550}
    assert row.next_attempt_at == NOW and row.next_attempt_at.tzinfo is not None
    assert row.next_attempt == 1 and tuple(row)[0] == "bill_issued"


async def test_defaults_scalar_and_callable_and_booleans_both_ways(db):
    def work(session):
        ADD_STAFF.execute(session, {"openid": "o1", "name": "李", "created_at": NOW})  # active: default True
        ADD_STAFF.execute(session, {"openid": "o2", "name": "王", "active": False, "created_at": NOW})
        ADD_CONVERSATION.execute(session, {"openid": "o1", "state": None, "updated_at": NOW, "expires_at": None})  # data: dict()
        return ACTIVE_STAFF.execute(session, {}).all(), CONVERSATION.execute(session, {}).one()

    staff, conversation = await db.run(work)
    assert [tuple(row) for row in staff] == [("李", True)]
    assert tuple(conversation) == ({}, "zh_Hans", 1, None)


async def test_rowcount_counts_what_an_update_changed(db):
    def work(session):
        for key in ("a", "b"):
            ADD_MESSAGE.execute(session, message(key))
        changed = ATTEMPTED.execute(session, {"more": 2}).rowcount
        return changed, READ_MESSAGE.execute(session, {"dedupe_key": "b"}).one().attempts

    assert await db.run(work) == (2, 2)
    assert await db.run(lambda session: ATTEMPTED.execute(session, {"more": 1}).rowcount) == 2


async def test_a_prepared_statement_shares_its_transactions_fate_and_sees_its_orm_work(db):
    def add_then_fail(session):
        ADD_MESSAGE.execute(session, message("gone"))
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        await db.run(add_then_fail)

    def orm_then_prepared(session):
        session.add(Outbox(**message("orm")))  # pending, not flushed: the statement flushes it first, as autoflush does
        return READ_MESSAGE.execute(session, {"dedupe_key": "orm"}).first(), READ_MESSAGE.execute(session, {"dedupe_key": "gone"}).first()

    found, gone = await db.run(orm_then_prepared)
    assert found.kind == "bill_issued" and gone is None
    assert await db.run(lambda session: session.scalar(select(func.count()).select_from(Outbox))) == 1


async def test_a_unique_key_fails_as_sqlalchemys_integrity_error_and_keeps_nothing(db):
    await db.run(lambda session: ADD_MESSAGE.execute(session, message("twice")))

    def again(session):
        ADD_MESSAGE.execute(session, message("other"))
        ADD_MESSAGE.execute(session, message("twice"))

    with pytest.raises(IntegrityError):
        await db.run(again)
    assert await db.run(lambda session: READ_MESSAGE.execute(session, {"dedupe_key": "other"}).first()) is None
    await db.run(lambda session: ADD_MESSAGE.execute(session, message("after")))  # the connection is fine afterwards


async def test_a_missing_parameter_is_a_statement_error_and_runs_nothing(db):
    def without_key(session):
        return READ_MESSAGE.execute(session, {})

    with pytest.raises(StatementError, match="dedupe_key"):
        await db.run(without_key)


async def test_one_insists_on_exactly_one_row(db):
    def work(session):
        for key in ("a", "b"):
            ADD_MESSAGE.execute(session, message(key))
        ADD_CONVERSATION.execute(session, {"openid": "o1", "state": None, "updated_at": NOW, "expires_at": None})
        ADD_CONVERSATION.execute(session, {"openid": "o2", "state": None, "updated_at": NOW, "expires_at": None})
        return READ_MESSAGE.execute(session, {"dedupe_key": "none"})

    with pytest.raises(NoResultFound):
        (await db.run(work)).one()

    def two(session):
        return CONVERSATION.execute(session, {}).one()

    with pytest.raises(MultipleResultsFound):
        await db.run(two)


def test_the_fast_path_answers_the_result_methods_its_callers_use():
    rows = Rows([("a", 1), ("b", 2)], 2)
    assert (rows.first(), rows.scalar(), rows.all(), rows.rowcount) == (("a", 1), "a", [("a", 1), ("b", 2)], 2)
    assert Rows([], 0).first() is None and Rows([], 0).scalar() is None


def test_what_cannot_be_fixed_once_is_refused_when_declared():
    with pytest.raises(ValueError, match="ORM entities"):
        Prepared(select(Outbox))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(select(_OUTBOX.c.id).where(_OUTBOX.c.kind.in_(bindparam("kinds", expanding=True))))
    with pytest.raises(ValueError, match="callable"):
        Prepared(select(_OUTBOX.c.id).where(_OUTBOX.c.next_attempt_at < bindparam("at", callable_=lambda: NOW + timedelta(1))))


async def test_every_backend_answers_with_the_same_rows_of_the_same_named_tuples(db):
    def work(session):
        added = ADD_MESSAGE.execute(session, message("same"))
        return added, READ_MESSAGE.execute(session, {"dedupe_key": "same"}), ATTEMPTED.execute(session, {"more": 1})

    added, read, updated = await db.run(work)
    assert all(type(result) is Rows for result in (added, read, updated))
    assert type(added.one()) is ADD_MESSAGE.row and type(read.one()) is READ_MESSAGE.row
    assert read.one()._fields == ("kind", "payload", "status", "attempts", "next_attempt_at", "next_attempt")
    assert (updated.all(), updated.rowcount) == ([], 1)


async def test_with_autoflush_off_pending_orm_rows_stay_unseen(db):
    def work(session):
        with session.no_autoflush:
            session.add(Outbox(**message("later")))
            return READ_MESSAGE.execute(session, {"dedupe_key": "later"}).first()

    assert await db.run(work) is None


async def test_from_an_async_session_they_run_in_its_transaction(db):
    async with db.transaction() as session:
        await session.run_sync(lambda sync: ADD_MESSAGE.execute(sync, message("async")))
        assert await session.run_sync(lambda sync: READ_MESSAGE.execute(sync, {"dedupe_key": "async"}).first()) is not None
        await session.rollback()
    assert await db.run(lambda session: READ_MESSAGE.execute(session, {"dedupe_key": "async"}).first()) is None


BY_KIND = Prepared(select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.kind == bindparam("kind", value="bill_issued")))


async def test_a_parameter_with_a_value_of_its_own_takes_the_callers_when_given(db):
    def work(session):
        ADD_MESSAGE.execute(session, message("a"))
        return BY_KIND.execute(session, {}).scalar(), BY_KIND.execute(session, {"kind": "refund_due"}).scalar()

    assert await db.run(work) == (1, 0)
