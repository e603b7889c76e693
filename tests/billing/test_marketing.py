"""Partners' offers only with a separate, revocable consent (seed 004: "严禁金融机构在未获得用户授权的前提下
开展商业营销活动"): every yes and no kept, an operator's offer queued for the members who say yes then,
asked again when it is sent, audited with its reason; a refused offer changes nothing."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from audit import audit
from billing import console, marketing, outbox
from billing.errors import Conflict, InvalidInput, NotFound
from billing.operators import add_operator, signed_in
from helpers import OffersOnly, enrol, outbox as outbox_rows, row_counts, status_of
from storage.models import AuditEntry, MarketingConsent, MarketingOffer

ZHANG_WEI = "110105198503120012"
LIU_YANG = "11010819920709006X"
LIU_GUILAN = "110108195203040075"
ZHANG_XIUYING = "110105194908150027"
OFFER = {"zh_Hans": "体检套餐八折", "en": "20% off health checks"}


async def actor(core, role="operator", hospital=None):
    operator_id = await add_operator(core, f"{role}-{hospital or 'all'}", "a long enough password", role, hospital=hospital)
    return await signed_in(core, operator_id)


async def consents(core, member_id: int) -> list[tuple[bool, str, int | None]]:
    async with core.db.transaction() as session:
        rows = await session.scalars(select(MarketingConsent).where(MarketingConsent.member_id == member_id)
                                     .order_by(MarketingConsent.id))
        return [(row.granted, row.via, row.operator_id) for row in rows]


async def test_every_yes_and_no_is_kept_and_the_latest_is_the_choice(make_core, clock):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI, openid="o-zhang")
    assert await consents(core, member_id) == []  # enrolling says nothing about offers: no is the default
    first = await marketing.subscribe(core, member_id)
    assert (first.granted, first.since, first.changed) == (True, clock.now(), True)
    clock.advance(hours=1)
    again = await marketing.subscribe(core, member_id)
    assert (again.granted, again.since, again.changed) == (True, first.since, False)  # nothing written twice
    clock.advance(hours=1)
    assert (await marketing.unsubscribe(core, member_id)).changed
    assert not (await marketing.unsubscribe(core, member_id)).changed
    await marketing.subscribe(core, member_id)
    await marketing.unfollowed(core, member_id)
    assert await consents(core, member_id) == [(True, "chat", None), (False, "chat", None), (True, "chat", None),
                                               (False, "unfollow", None)]
    async with core.db.transaction() as session:
        kept = await session.run_sync(marketing.history, member_id)
    assert [(row.granted, row.at - first.since) for row, _ in kept] == [  # newest first, each when it was said
        (False, timedelta(hours=2)), (True, timedelta(hours=2)), (False, timedelta(hours=2)), (True, timedelta(0))]
    assert await outbox_rows(core, marketing.KIND) == []
    await audit(core)


async def test_an_offer_reaches_only_the_members_who_say_yes_when_it_is_queued(make_core):
    core = await make_core()
    taker = await enrol(core, ZHANG_WEI, openid="o-zhang")
    changed_mind = await enrol(core, LIU_YANG, openid="o-liu")
    silent = await enrol(core, LIU_GUILAN, openid="o-liu-mother")
    suspended = await enrol(core, ZHANG_XIUYING, openid="o-zhang-mother")
    for member_id in (taker, changed_mind, suspended):
        await marketing.subscribe(core, member_id)
    await marketing.unsubscribe(core, changed_mind)
    operator = await actor(core)
    await console.suspend(core, operator, suspended, "identity in doubt")  # the choice is theirs, whatever the status

    assert await console.send_offer(core, operator, " 厦门某银行 ", {**OFFER, "zh_Hant": ""}, "partner campaign 3") == 2

    rows = await outbox_rows(core, marketing.KIND)
    assert sorted(row.member_id for row in rows) == sorted([taker, suspended]) and silent not in [r.member_id for r in rows]
    async with core.db.transaction() as session:
        offer = await session.scalar(select(MarketingOffer))
        [entry] = await session.scalars(select(AuditEntry).where(AuditEntry.action == "marketing_offer"))
    assert (offer.sender, offer.texts, offer.recipients) == ("厦门某银行", OFFER, 2)  # an empty language is left out
    assert {row.payload["offer_id"] for row in rows} == {offer.id}
    assert (entry.username, entry.target, entry.reason) == ("operator-all", f"offer:{offer.id}", "partner campaign 3")
    assert entry.after == {"sender": "厦门某银行", "texts": OFFER, "recipients": 2}

    sender = OffersOnly(core)
    assert await outbox.drain(core.db, sender, core.clock.now) == (4 + 1 + 2, 0)  # enrolled, suspended, the offers
    assert sorted(sender.sent) == sorted([(taker, "厦门某银行: 体检套餐八折"), (suspended, "厦门某银行: 体检套餐八折")])
    assert await status_of(core, suspended) == "suspended"
    await audit(core)


async def test_a_no_between_queueing_and_sending_drops_the_message(make_core):
    core = await make_core("xiamen")
    stays, leaves = await enrol(core, "350203198703210132", openid="o-lin"), await enrol(core, "350200196601100161", openid="o-zheng")
    for member_id in (stays, leaves):
        await marketing.subscribe(core, member_id)
    assert await console.send_offer(core, await actor(core), "某保险公司", OFFER, "campaign") == 2
    await marketing.unsubscribe(core, leaves)  # 退订 after the offer was queued, before it went

    sender = OffersOnly(core)
    assert await outbox.drain(core.db, sender, core.clock.now) == (2 + 1, 0)  # two enrolled, one offer
    assert sender.sent == [(stays, "某保险公司: 体检套餐八折")]  # no zh_Hant text: the Simplified Chinese one
    statuses = {row.member_id: (row.status, row.last_error) for row in await outbox_rows(core, marketing.KIND)}
    assert statuses == {stays: ("sent", None), leaves: ("dropped", "consent_withdrawn")}
    assert await outbox.drain(core.db, sender, core.clock.now) == (0, 0)  # dropped is final: never tried again
    await audit(core)


@pytest.mark.parametrize("sender, texts, reason, field", [
    ("某银行", OFFER, "  ", "reason"),
    ("", OFFER, "campaign", "sender"),
    ("某" * 51, OFFER, "campaign", "sender"),
    ("某银行", {"en": "English only"}, "campaign", "text_zh_Hans"),
    ("某银行", {"zh_Hans": "八" * 301}, "campaign", "text_zh_Hans"),
    ("某银行", {"zh_Hans": "八折", "en": "bell\x07"}, "campaign", "text_en"),
])
async def test_an_offer_without_its_reason_sender_or_chinese_text_is_refused_and_changes_nothing(
        make_core, sender, texts, reason, field):
    core = await make_core()
    await marketing.subscribe(core, await enrol(core, ZHANG_WEI, openid="o-zhang"))
    operator = await actor(core)
    before = await row_counts(core)
    with pytest.raises(InvalidInput) as refused:
        await console.send_offer(core, operator, sender, texts, reason)
    assert refused.value.details["field"] == field
    assert await row_counts(core) == before


async def test_only_an_account_of_the_whole_programme_sends_offers(make_core):
    core = await make_core()
    await marketing.subscribe(core, await enrol(core, ZHANG_WEI, openid="o-zhang"))
    hospital = await actor(core, "hospital", "H1")
    before = await row_counts(core)
    with pytest.raises(NotFound):
        await console.send_offer(core, hospital, "某银行", OFFER, "campaign")
    assert await row_counts(core) == before


async def test_a_programme_that_sends_no_offers_refuses_them_and_drops_what_was_queued(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI, openid="o-zhang")
    await marketing.subscribe(core, member_id)
    operator = await actor(core)
    await console.send_offer(core, operator, "某银行", OFFER, "campaign")
    core.policy = replace(core.policy, marketing_allowed=False)  # the policy changed before it went
    before = await row_counts(core)
    with pytest.raises(Conflict) as refused:
        await console.send_offer(core, operator, "某银行", OFFER, "campaign")
    assert refused.value.details["reason"] == "marketing_off" and await row_counts(core) == before
    sender = OffersOnly(core)
    assert await outbox.drain(core.db, sender, core.clock.now) == (1, 0) and sender.sent == []  # enrolled: sent
    [row] = await outbox_rows(core, marketing.KIND)
    assert (row.status, row.last_error) == ("dropped", "marketing_off")


async def test_an_operator_records_a_members_no_never_a_yes(make_core):
    core = await make_core()
    member_id = await enrol(core, ZHANG_WEI, openid="o-zhang")
    operator = await actor(core)
    before = await row_counts(core)
    with pytest.raises(Conflict) as refused:  # nothing to withdraw: the member never said yes
        await console.withdraw_marketing(core, operator, member_id, "phoned the hotline")
    assert refused.value.details["reason"] == "not_consenting" and await row_counts(core) == before

    await marketing.subscribe(core, member_id)
    with pytest.raises(InvalidInput):
        await console.withdraw_marketing(core, operator, member_id, "")
    await console.withdraw_marketing(core, operator, member_id, "asked at the service desk to stop offers")
    assert await consents(core, member_id) == [(True, "chat", None), (False, "console", operator.id)]
    async with core.db.transaction() as session:
        [entry] = await session.scalars(select(AuditEntry).where(AuditEntry.action == "marketing_withdraw"))
    assert (entry.target, entry.before, entry.after) == (f"member:{member_id}", {"marketing": True}, {"marketing": False})
    await audit(core)
