"""The message ledger and the users' leases, below the webhook: which transaction takes and gives back a lease."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import wechat_dedupe as ledger
from bot.wechat_dedupe import UserLocks
from handlers.messages import Replies
from storage.models import Staff, WeChatUserLease
from wechat_support import another_worker_db


async def lease_of(db, openid: str):
    async with db.transaction() as session:
        return (await session.execute(select(WeChatUserLease.holder, WeChatUserLease.until)
                                      .where(WeChatUserLease.openid == openid))).first()


async def test_a_message_first_in_line_takes_the_lease_with_its_claim_and_gives_it_back_with_its_reply(db, clock):
    locks = UserLocks(db, clock)
    first = locks.reserve("u")
    assert await ledger.claim(db, "msg:1", "u", clock.now(), first)
    assert first.leased  # the user's lease row is made with the claim, the first time
    assert (await lease_of(db, "u")).holder == locks.holder
    async with first:
        assert first.leased and (await lease_of(db, "u")).holder == locks.holder
    assert (await lease_of(db, "u")).holder is None

    second, third = locks.reserve("u"), locks.reserve("u")
    assert await ledger.claim(db, "msg:2", "u", clock.now(), second)
    assert second.leased and (await lease_of(db, "u")).holder == locks.holder
    assert await ledger.claim(db, "msg:3", "u", clock.now(), third)
    assert not third.leased  # behind the second in line: it waits, and takes the lease on entering
    async with second:
        assert await ledger.settle(db, "msg:2", Replies(["好的"]), second, clock.now())  # the passive reply, all there is
        assert not second.leased and (await lease_of(db, "u")).holder is None
    async with third:
        assert await ledger.defer(db, "msg:3") is None  # its request gave up waiting
        assert not await ledger.settle(db, "msg:3", Replies(["好的"]), third, clock.now())
        assert third.leased and (await lease_of(db, "u")).holder == locks.holder  # kept while it sends
    assert (await lease_of(db, "u")).holder is None

    fourth = locks.reserve("u")
    assert await ledger.claim(db, "msg:4", "u", clock.now(), fourth)
    async with fourth:
        assert await ledger.settle(db, "msg:4", Replies(["一", "二"]), fourth, clock.now())  # passive, with one more to send
        assert fourth.leased and (await lease_of(db, "u")).holder == locks.holder
    assert (await lease_of(db, "u")).holder is None
    await locks.close()


async def test_a_repeated_message_takes_no_lease(db, clock):
    locks = UserLocks(db, clock)
    async with locks.reserve("u"):  # makes the user's lease row
        pass
    assert await ledger.claim(db, "msg:1", "u", clock.now(), locks.reserve("u"))
    again = locks.reserve("u")
    assert not await ledger.claim(db, "msg:1", "u", clock.now(), again)
    assert not again.leased
    await locks.close()


async def test_two_workers_making_a_new_users_lease_row_at_once_record_both_messages_and_one_holds_it(db, clock):
    other_db = await another_worker_db(db)
    try:
        mine, theirs = UserLocks(db, clock), UserLocks(other_db, clock)
        turns = mine.reserve("new"), theirs.reserve("new")
        claimed = await asyncio.gather(ledger.claim(db, "msg:a", "new", clock.now(), turns[0]),
                                       ledger.claim(other_db, "msg:b", "new", clock.now(), turns[1]))
        assert claimed == [True, True]  # the second insert of the row is skipped, its message kept
        assert sorted(turn.leased for turn in turns) == [False, True]
        holder = (await lease_of(db, "new")).holder
        assert holder == (mine if turns[0].leased else theirs).holder
        for turn in turns:
            turn.cancel()
        await mine.close()
        await theirs.close()
    finally:
        await other_db.close()


async def test_a_lease_held_by_another_worker_is_not_taken_with_the_claim(db, clock):
    other_db = await another_worker_db(db)
    try:
        mine, theirs = UserLocks(db, clock), UserLocks(other_db, clock)
        async with theirs.reserve("u"):
            turn = mine.reserve("u")
            assert await ledger.claim(db, "msg:1", "u", clock.now(), turn)
            assert not turn.leased and (await lease_of(db, "u")).holder == theirs.holder
        await theirs.close()
    finally:
        await other_db.close()


async def test_leases_held_here_are_renewed_together_while_their_handlers_run(db, clock):
    locks = UserLocks(db, clock, lease=timedelta(seconds=0.3))
    async with locks.reserve("a"), locks.reserve("b"):
        clock.advance(seconds=5)
        await asyncio.sleep(0.25)  # past a third of the lease: renewed at least once
        for openid in ("a", "b"):
            holder, until = await lease_of(db, openid)
            assert holder == locks.holder and until.replace(tzinfo=clock.now().tzinfo) > clock.now()
    for openid in ("a", "b"):
        assert (await lease_of(db, openid)).holder is None
    await locks.close()


async def test_the_conversations_new_state_commits_with_the_replies_or_not_at_all(db, clock):
    locks = UserLocks(db, clock)
    written: list[str] = []

    def record(session) -> None:
        written.append("state")
        session.add(Staff(openid="o-state-marker", name="状态", created_at=clock.now()))

    def broken(session) -> None:
        raise LookupError("the state write failed")

    turn = locks.reserve("u")
    assert await ledger.claim(db, "msg:1", "u", clock.now(), turn)
    async with turn:
        with pytest.raises(LookupError):
            await ledger.settle(db, "msg:1", Replies(["好的"], broken), turn, clock.now())
        assert await ledger.lookup(db, "msg:1") == ("processing", None)  # no replies stored without the state
        assert await ledger.settle(db, "msg:1", Replies(["好的"], record), turn, clock.now())
    assert await ledger.lookup(db, "msg:1") == ("done", ["好的"]) and written == ["state"]
    async with db.transaction() as session:
        assert await session.scalar(select(Staff.name).where(Staff.openid == "o-state-marker")) == "状态"
    await locks.close()
