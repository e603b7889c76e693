"""The operator console in Chromium, as each role meets it, on a Beijing programme that asks
for credit repair (the preset with `repair_required = true`: a policy is data). The operator
sees the dashboard's charts drawn, exports the overdue list (the advanced bill, masked), is
refused a repair while the advanced bill is unpaid, writes the bill off, then repairs the
member; the hospital sees its own figures, an overdue list empty once the bill is written off,
and cannot open another hospital's bill; the community office sees its resident without any
action but showing a number; the auditor reads the audit log and its
POST is refused. Screenshots go to artifacts/admin-*.png, at a desktop's width and a phone's."""
from __future__ import annotations

import csv

import pytest
from playwright.async_api import Page, expect

from admin_support import PASSWORD, Programme, seed_programme
from billing.policy import PRESETS_DIR
from bot.app import build_app
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)
from helpers import bill, status_of

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]
PHONE = {"width": 320, "height": 640}


@pytest.fixture
async def console(make_core, clock, tmp_path, aiohttp_server) -> tuple[str, Programme]:
    policy = tmp_path / "beijing-with-repair.toml"
    policy.write_text((PRESETS_DIR / "beijing-shijingshan.toml").read_text(encoding="utf-8")
                      .replace("repair_required = false", "repair_required = true"), encoding="utf-8")
    programme = await seed_programme(await make_core(str(policy)), clock)
    server = await aiohttp_server(build_app(programme.core, background=False))
    return str(server.make_url("")).rstrip("/"), programme


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"admin-{name}.png", full_page=True)


async def log_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/admin/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("heading", name=f"欢迎，{username}")).to_be_visible()


async def act(page: Page, action: str, reason: str) -> None:
    """Open the action's fold, give the reason, press its button."""
    fold = page.locator("details", has=page.locator("summary", has_text=action))
    await fold.locator("summary").click()
    await fold.get_by_label("原因（写入操作记录）").fill(reason)
    await fold.get_by_role("button", name=action).click()


async def export_overdue(page: Page, base: str) -> list[list[str]]:
    """The overdue list as CSV from the exports page, made in the background, then downloaded:
    its rows under the header."""
    await page.goto(f"{base}/admin/exports/")
    await page.get_by_role("button", name="逾期账单 CSV").click()
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="下载 CSV").click()
    header, *rows = csv.reader((await (await downloading.value).path()).read_text(encoding="utf-8-sig").splitlines())
    assert header[:5] == ["账单号", "医院代码", "医院", "姓名", "身份证号（脱敏）"]
    return rows


async def test_each_role_in_the_console(browser, console):
    base, programme = console
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()

    await page.goto(f"{base}/admin/members")
    await expect(page.get_by_role("heading", name="登录")).to_be_visible()
    await page.get_by_label("用户名").fill("operator")
    await page.get_by_label("密码").fill("wrong password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_contain_text("用户名或密码不对")
    await shot(page, "01-wrong-password")

    await log_in(page, base, "operator")
    await expect(page.locator(".chart-box.drawn")).to_have_count(3)  # the dashboard's charts, drawn (the CSP forbids eval)
    await expect(page.locator(".tiles")).to_contain_text("¥120.00")  # Zhang Wei's bill, put on credit
    await shot(page, "01b-operator-dashboard")
    [overdue] = await export_overdue(page, base)
    assert (overdue[0], overdue[1], overdue[4]) == (programme.h1_bill, "H1", "110105********0012")
    await page.goto(f"{base}/admin/")
    await page.get_by_label("查找会员或账单").fill("张伟")
    await page.get_by_role("button", name="查找").click()
    await page.get_by_role("link", name="张伟").click()
    await expect(page.locator(".facts")).to_contain_text("暂停使用")
    await shot(page, "02-operator-member")
    await act(page, "信用修复", "张伟到窗口申请信用修复")
    await expect(page.get_by_role("alert")).to_contain_text("还有逾期账单没有付清")
    await shot(page, "03-operator-repair-refused")

    await page.goto(f"{base}/admin/bills/{programme.h1_bill}")
    await act(page, "核销（保险已垫付）", "保险已先行赔付，经办公室批准核销")
    await expect(page.get_by_role("status")).to_contain_text("已完成")
    await expect(page.locator(".facts")).to_contain_text("已核销")
    await shot(page, "04-operator-written-off")
    assert (await bill(programme.core, programme.h1_bill)).status == "written_off"

    await page.get_by_role("link", name="付款人的会员页").click()
    await act(page, "信用修复", "账单已核销，申请信用修复")
    await expect(page.locator(".facts")).to_contain_text("正常")
    await shot(page, "05-operator-repaired")
    assert await status_of(programme.core, programme.zhang_wei) == "active"

    await page.get_by_role("link", name="操作记录").click()
    await expect(page.locator("table")).to_contain_text("核销")
    await expect(page.locator("table")).to_contain_text("信用修复")
    await shot(page, "06-operator-audit-log")
    await page.get_by_role("button", name="退出登录").click()

    await log_in(page, base, "hospital")
    await expect(page.locator(".note")).to_contain_text("不分医院")  # its own hospital's figures, said so
    assert await export_overdue(page, base) == []  # H1's only overdue bill is written off now
    response = await page.goto(f"{base}/admin/bills/{programme.h2_bill}")
    assert response.status == 404
    await expect(page.get_by_role("alert")).to_contain_text("不在您的范围内")
    await shot(page, "07-hospital-other-hospitals-bill")
    assert (await page.goto(f"{base}/admin/audit")).status == 403
    await page.get_by_role("button", name="退出登录").click()

    await log_in(page, base, "community")
    await page.goto(f"{base}/admin/members/{programme.zhang_wei}")
    await expect(page.locator("summary")).to_have_text(["显示完整身份证号", "显示完整手机号"])
    await act(page, "显示完整手机号", "居民来社区办公室核对手机号")
    await expect(page.locator(".number")).to_have_text("13812345678")
    await shot(page, "08-community-number-shown")
    await page.get_by_role("button", name="退出登录").click()

    await log_in(page, base, "auditor")
    await page.goto(f"{base}/admin/bills/{programme.h2_bill}")
    await expect(page.locator("form[action$='/dispute']")).to_have_count(0)
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    refused = await page.request.post(f"{base}/admin/bills/{programme.h2_bill}/dispute",
                                      form={"csrf": csrf, "reason": "auditor tries"}, max_redirects=0)
    assert refused.status == 403
    assert (await bill(programme.core, programme.h2_bill)).disputed_at is None
    await page.goto(f"{base}/admin/audit")
    await shot(page, "09-auditor-audit-log")

    phone = await (await browser.new_context(viewport=PHONE, locale="zh-CN")).new_page()
    await log_in(phone, base, "operator")
    await phone.goto(f"{base}/admin/members/{programme.zhang_wei}")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await shot(phone, "10-320-member")
    await context.close()
