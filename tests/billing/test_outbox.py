"""The outbox's sender: several members' messages in flight at once, each member's in order."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import insert, select, text

from billing import outbox
from storage.models import Outbox

from helpers import enrol

PEOPLE = ["110105198503120012", "110105194908150027", "11010819920709006X", "110108195203040075"]


class Recording:
    """Holds each message a while, noting what is in flight; fails for the members in `failing`."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.failing = failing
        self.in_flight: set[int] = set()
        self.most_in_flight = 0
        self.order: list[tuple[int, int]] = []  # (member, n) as they were sent

    async def send(self, message: Outbox) -> None:
        assert message.member_id not in {member for member, _ in self.in_flight}, "a member's messages overlapped"
        self.in_flight.add((message.member_id, message.id))
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        await asyncio.sleep(0.02)
        self.in_flight.discard((message.member_id, message.id))
        if message.member_id in self.failing:
            raise ConnectionError("the receiver hung up")
        self.order.append((message.member_id, message.payload["n"]))


async def members_with_messages(core, per_member: int) -> list[int]:
    """Enrolled people, their enrolment notices sent, then `per_member` messages each, interleaved."""
    member_ids = [await enrol(core, id_number) for id_number in PEOPLE]
    assert await outbox.drain(core.db, outbox.LogSender(), core.clock.now) == (len(PEOPLE), 0)
    async with core.db.transaction() as session:
        for n in range(per_member):
            for member_id in member_ids:
                await session.run_sync(lambda s, m=member_id, n=n: outbox.enqueue(
                    s, kind="note", member_id=m, dedupe_key=f"note:{m}:{n}", payload={"n": n}, now=core.clock.now()))
    return member_ids


async def test_members_messages_go_together_and_each_members_in_the_order_they_were_queued(make_core):
    core = await make_core()
    member_ids = await members_with_messages(core, per_member=3)
    sender = Recording()
    assert await outbox.drain(core.db, sender, core.clock.now) == (12, 0)
    assert sender.most_in_flight == len(member_ids)
    for member_id in member_ids:
        assert [n for member, n in sender.order if member == member_id] == [0, 1, 2]


async def test_no_more_than_at_once_are_in_flight(make_core, monkeypatch):
    core = await make_core()
    await members_with_messages(core, per_member=2)
    monkeypatch.setattr(outbox, "AT_ONCE", 2)
    sender = Recording()
    assert await outbox.drain(core.db, sender, core.clock.now) == (8, 0)
    assert sender.most_in_flight == 2


async def test_one_members_failures_hold_up_no_one_else_and_wait_their_backoff(make_core):
    core = await make_core()
    member_ids = await members_with_messages(core, per_member=2)
    sender = Recording(failing=frozenset(member_ids[:1]))
    assert await outbox.drain(core.db, sender, core.clock.now) == (6, 2)
    assert {member for member, _ in sender.order} == set(member_ids[1:])
    async with core.db.transaction() as session:
        failed = list(await session.scalars(select(Outbox.member_id).where(Outbox.kind == "note", Outbox.status == "pending")))
    assert failed == [member_ids[0]] * 2
    assert await outbox.drain(core.db, sender, core.clock.now) == (0, 0)  # not before their backoff


async def test_a_long_drain_claims_each_batch_with_a_full_lease_and_marks_each_message_when_it_went(make_core, clock, monkeypatch):
    core = await make_core()
    await members_with_messages(core, per_member=2)
    monkeypatch.setattr(outbox, "AT_ONCE", 1)
    lease_left, went_at = [], {}

    class Slow:
        async def send(self, message: Outbox) -> None:
            lease_left.append(message.next_attempt_at - clock.now())
            clock.advance(minutes=1)
            went_at[message.id] = clock.now()

    assert await outbox.drain(core.db, Slow(), clock.now, batch=2) == (8, 0)
    assert min(lease_left) == outbox.LEASE - timedelta(minutes=1)  # the second of a batch of two
    async with core.db.transaction() as session:
        assert dict((await session.execute(select(Outbox.id, Outbox.sent_at).where(Outbox.kind == "note"))).all()) == went_at


async def test_a_claim_reads_its_lanes_pending_messages_not_the_outboxs_history(db, clock):
    """A city's outbox keeps every message it sent, and events pile up pending while no receiver is
    set: each lane's claim goes by its lane's partial index, on every backend."""
    now = clock.now()
    kinds = [("bill_issued", "sent")] * 2000 + [(outbox.EVENT, "pending")] * 2000 + [("bill_issued", "pending")] * 5
    async with db.transaction() as session:
        await session.execute(insert(Outbox), [
            {"dedupe_key": f"m:{n}", "kind": kind, "status": status, "payload": {}, "next_attempt_at": now,
             "created_at": now} for n, (kind, status) in enumerate(kinds)])

    def plan(session, lane: str) -> str:
        session.execute(text("ANALYZE"))
        query = outbox.due(now, 100, lane).compile(dialect=session.get_bind().dialect,
                                                   compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
        return " ".join(str(row[-1]) for row in session.connection().exec_driver_sql(explain + str(query)))

    for lane in (outbox.NOTICES, outbox.EVENTS):
        assert f"ix_outbox_pending_{lane}" in await db.run(plan, lane)
