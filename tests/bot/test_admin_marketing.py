"""Partners' offers in the console: an operator writes one with its reason and it is queued for the
members who say yes then, audited; no other role may send one; a member's page shows their yes and no,
where an operator records a no they gave elsewhere, and which offers were dropped and why."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from admin_support import ROLES, Browser, Programme, seed_programme
from billing import marketing, outbox
from bot.app import build_app
from helpers import OffersOnly, outbox as outbox_rows, row_counts
from storage.models import AuditEntry, MarketingOffer
from test_admin import visible

OFFER = {"sender": "某银行信用卡中心", "text_zh_Hans": "体检套餐八折", "text_zh_Hant": "", "text_en": "20% off health checks",
         "reason": "partner campaign, approved by the health office"}


@pytest.fixture
async def programme(make_core, clock) -> Programme:
    programme = await seed_programme(await make_core(), clock)
    await marketing.subscribe(programme.core, programme.zhang_wei)  # 张伟 said yes in the chat; 张秀英 has no WeChat
    return programme


@pytest.fixture
async def browser(programme, aiohttp_client) -> Browser:
    return Browser(await aiohttp_client(build_app(programme.core, background=False)))


async def test_an_operator_sends_an_offer_to_the_members_who_said_yes_and_the_audit_log_has_it(browser, programme):
    await browser.log_in("operator")
    status, page = await browser.get("/admin/marketing")
    assert status == 200 and "现在订阅的会员：1 人" in visible(page) and "还没有发过优惠信息" in page
    status, _, location = await browser.post("/admin/marketing", OFFER)
    assert (status, location) == (303, "/admin/marketing?done=1")
    [row] = await outbox_rows(programme.core, marketing.KIND)
    assert (row.member_id, row.status) == (programme.zhang_wei, "pending")
    status, page = await browser.get("/admin/marketing?done=1")
    listed = visible(page)
    assert "已完成，已写入操作记录" in listed and "某银行信用卡中心 体检套餐八折 1 0 0 1" in listed
    status, page = await browser.get("/admin/audit")
    assert "发送优惠信息" in page and "partner campaign, approved by the health office" in page
    async with programme.core.db.transaction() as session:
        offer = await session.scalar(select(MarketingOffer))
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "marketing_offer"))
    assert offer.texts == {"zh_Hans": "体检套餐八折", "en": "20% off health checks"} and entry.target == f"offer:{offer.id}"


@pytest.mark.parametrize("missing, refusal", [("reason", "请写明原因"), ("sender", "请写明发送方"),
                                              ("text_zh_Hans", "请写简体中文的内容")])
async def test_an_offer_without_its_reason_sender_or_text_is_refused_plainly(browser, programme, missing, refusal):
    await browser.log_in("operator")
    await browser.get("/admin/marketing")
    before = await row_counts(programme.core)
    status, page, _ = await browser.post("/admin/marketing", {**OFFER, missing: " "})
    assert status == 400 and refusal in page
    assert await row_counts(programme.core) == before


@pytest.mark.parametrize("role", [role for role in ROLES if role != "operator"])
async def test_no_other_role_sends_an_offer(browser, programme, role):
    await browser.log_in(role)
    status, page = await browser.get("/admin/marketing")
    assert status == (200 if role == "auditor" else 403)
    assert 'action="/admin/marketing"' not in page  # an auditor reads the offers, without the form
    before = await row_counts(programme.core)
    status, page, _ = await browser.post("/admin/marketing", OFFER)
    assert status == 403 and "没有权限" in page
    assert await row_counts(programme.core) == before


async def test_the_member_page_shows_the_yes_and_no_and_an_operator_records_a_no(browser, programme):
    core = programme.core
    await browser.log_in("operator")
    status, page = await browser.get(f"/admin/members/{programme.zhang_wei}")
    shown = visible(page)
    assert "现在：已订阅" in shown and "会员在聊天中" in shown and "代会员退订" in shown
    await browser.post("/admin/marketing", OFFER)
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/marketing-withdraw", {"reason": ""})
    assert status == 400 and (await marketing.subscribe(core, programme.zhang_wei)).granted  # still a yes
    status, _, location = await browser.post(f"/admin/members/{programme.zhang_wei}/marketing-withdraw",
                                             {"reason": "asked at the service desk"})
    assert (status, location) == (303, f"/admin/members/{programme.zhang_wei}?done=1")

    await outbox.drain(core.db, OffersOnly(core), core.clock.now)  # the offer queued before the no: dropped
    status, page = await browser.get(f"/admin/members/{programme.zhang_wei}")
    shown = visible(page)
    assert "现在：未订阅" in shown and "后台代为记录 operator" in shown and "代会员退订" not in shown.split("操作记录")[0]
    assert "优惠信息 未发送：会员已退订" in shown and "代会员退订优惠信息" in shown  # the notice, and the audit row
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/marketing-withdraw", {"reason": "again"})
    assert status == 409 and "没有订阅优惠信息" in page
