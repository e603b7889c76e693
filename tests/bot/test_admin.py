"""The operator console over HTTP (aiohttp's test client, real SQLite or PostgreSQL, real argon2
and real encrypted cookies): logging in and out, the lockout, the session's expiry, CSRF, what
each role may see and do, and that every refusal leaves the database as it was."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from yarl import URL

from admin_support import PASSWORD, ROLES, ZHANG_WEI, ZHANG_XIUYING, Browser, Programme, password_hash, seed_programme
from billing.operators import LOCKOUT, MAX_FAILURES
from bot.admin import ADMIN, bills
from billing.payments import pay_at_hospital
from bot.admin.session import IDLE
from bot.app import build_app
from bot.config import Settings
from bot.hospital_api import CORE
from bot.server import SANDBOX_OPERATOR, make_app
from helpers import bill, billed_visit, row_counts, status_of
from billing.members import enrol as enrol_member
from storage.models import AuditEntry, Operator

ALL = ROLES


@pytest.fixture
async def programme(make_core, clock) -> Programme:
    return await seed_programme(await make_core(), clock)


@pytest.fixture
async def browser(programme, aiohttp_client) -> Browser:
    return Browser(await aiohttp_client(build_app(programme.core, background=False)))


async def actions(core) -> list[tuple[str, str, str]]:
    async with core.db.transaction() as session:
        return [(e.username, e.action, e.target) for e in await session.scalars(
            select(AuditEntry).where(AuditEntry.action.not_in(("login", "lockout"))).order_by(AuditEntry.id))]


def visible(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def main(page: str) -> str:
    """The page's own content, without the header (whose language links repeat the URL asked for)."""
    return page[page.index("<main>"):]


async def test_the_console_asks_for_a_login_and_lets_the_right_password_in(browser):
    status, _ = await browser.get("/admin/members")
    assert status == 303
    status, page, location = await browser.log_in("operator")
    assert (status, location) == (303, "/admin/")
    status, page = await browser.get("/admin/")
    assert status == 200 and "operator · 项目运营" in visible(page)


async def test_the_session_cookie_is_encrypted_httponly_strict_and_scoped_to_the_console(browser):
    await browser.get("/admin/login")
    async with browser.client.post("/admin/login", data={"username": "operator", "password": PASSWORD, "csrf": browser.csrf},
                                   allow_redirects=False) as response:
        cookie = response.headers["Set-Cookie"]
    assert "xinyi_admin=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # the public URL is http here
    assert "operator" not in cookie.split(";")[0]


async def test_the_cookie_is_secure_when_the_public_url_is_https(make_core, clock, aiohttp_client):
    core = await make_core()
    core.public_url = "https://xinyi.example.cn"
    browser = Browser(await aiohttp_client(build_app(core, background=False)))
    async with browser.client.get("/admin/login") as response:
        assert "Secure" in response.headers["Set-Cookie"]


async def test_a_wrong_password_is_refused_and_signs_no_one_in(browser, programme):
    before = await row_counts(programme.core)
    status, page, _ = await browser.log_in("operator", "not the password")
    assert status == 401 and "用户名或密码不对" in page
    status, page, _ = await browser.log_in("nobody", PASSWORD)
    assert status == 401 and "用户名或密码不对" in page
    assert (await browser.get("/admin/"))[0] == 303
    assert await row_counts(programme.core) == before  # the failure count is a column, not a row


async def test_repeated_failures_lock_the_account_for_a_while_and_say_so(browser, programme):
    for _ in range(MAX_FAILURES):
        assert (await browser.log_in("hospital", "wrong"))[0] == 401
    status, page, _ = await browser.log_in("hospital")  # the right password, during the lockout
    assert status == 429 and "已锁定到" in page and "请到时再试" in page
    assert (await browser.get("/admin/"))[0] == 303
    programme.clock.advance(LOCKOUT + timedelta(seconds=1))
    assert (await browser.log_in("hospital"))[0] == 303


async def test_an_idle_session_expires_and_its_form_changes_nothing(browser, programme):
    await browser.log_in("operator")
    await browser.get(f"/admin/bills/{programme.h1_bill}")
    programme.clock.advance(IDLE + timedelta(seconds=1))
    before = await row_counts(programme.core)
    status, _, location = await browser.post(f"/admin/bills/{programme.h1_bill}/write-off", {"reason": "late"})
    assert status == 303 and location.startswith("/admin/login?") and "expired=1" in location
    assert (await bill(programme.core, programme.h1_bill)).status == "advanced"
    assert await row_counts(programme.core) == before
    status, page = await browser.get(location)
    assert "已自动退出" in page


async def test_a_session_ends_after_twelve_hours_however_busy(browser, programme):
    await browser.log_in("operator")
    for _ in range(12 * 60 // 20):
        programme.clock.advance(timedelta(minutes=20))
        assert (await browser.get("/admin/"))[0] == 200
    programme.clock.advance(timedelta(minutes=20))
    assert (await browser.get("/admin/"))[0] == 303


@pytest.mark.parametrize("csrf", ["", "forged-token-0123456789abcdefghijklmnopqrstu"])
async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(browser, programme, csrf):
    await browser.log_in("operator")
    await browser.get(f"/admin/bills/{programme.h1_bill}")
    before = await row_counts(programme.core)
    status, page, _ = await browser.post(f"/admin/bills/{programme.h1_bill}/write-off", {"reason": "forged"}, csrf=csrf)
    assert status == 403 and "请刷新页面后再试" in page
    assert (await bill(programme.core, programme.h1_bill)).status == "advanced"
    assert await row_counts(programme.core) == before


async def test_another_hospitals_bill_by_url_is_not_found_and_not_shown(browser, programme):
    await browser.log_in("hospital")  # of H1
    status, page = await browser.get(f"/admin/bills/{programme.h2_bill}")
    assert status == 404 and programme.h2_bill not in main(page) and "张秀英" not in page and "第二医院" not in page
    before = await row_counts(programme.core)
    status, _, _ = await browser.post(f"/admin/bills/{programme.h2_bill}/dispute", {"reason": "let me in"})
    assert status == 404
    assert await row_counts(programme.core) == before
    assert (await bill(programme.core, programme.h2_bill)).disputed_at is None
    status, page = await browser.get(f"/admin/members/{programme.zhang_xiuying}")
    assert status == 404 and "张秀英" not in page
    assert (await browser.get(f"/admin/bills/{programme.h1_bill}"))[0] == 200


async def test_an_auditor_reads_everything_and_every_post_is_refused(browser, programme):
    await browser.log_in("auditor")
    for path in (f"/admin/bills/{programme.h1_bill}", f"/admin/bills/{programme.h2_bill}", "/admin/audit",
                 f"/admin/members/{programme.zhang_wei}"):
        assert (await browser.get(path))[0] == 200
    before = await row_counts(programme.core)
    for action in ("write-off", "dispute", "resend"):
        status, page, _ = await browser.post(f"/admin/bills/{programme.h1_bill}/{action}", {"reason": "audit", "channel": "wechat"})
        assert status == 403 and "没有权限" in page
    assert await row_counts(programme.core) == before


def routes(p: Programme) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every page and call of the console with the roles it is for."""
    member, h1 = f"/admin/members/{p.zhang_wei}", f"/admin/bills/{p.h1_bill}"
    return [
        ("GET", "/admin/", ALL),
        ("GET", "/admin/members?q=张", ALL),
        ("GET", member, ALL),
        ("GET", "/admin/bills?status=advanced", ALL),
        ("GET", h1, ALL),
        ("GET", "/admin/audit", ("operator", "auditor")),
        ("GET", "/admin/exports/", ALL),
        ("GET", "/admin/exports/overdue.csv", ALL),
        ("POST", "/admin/exports/overdue.xlsx", ALL),
        ("GET", "/admin/exports/jobs/none", ALL),
        ("GET", "/admin/exports/jobs/none/progress", ALL),
        ("GET", "/admin/exports/jobs/none/file", ALL),
        ("POST", "/admin/exports/jobs/none/cancel", ALL),
        ("POST", f"{member}/reveal", ("operator", "hospital", "community")),
        ("POST", f"{member}/repair", ("operator",)),
        ("POST", f"{member}/suspend", ("operator",)),
        ("POST", f"{member}/restore", ("operator",)),
        ("POST", f"{member}/marketing-withdraw", ("operator",)),
        ("GET", "/admin/marketing", ("operator", "auditor")),
        ("POST", "/admin/marketing", ("operator",)),
        ("POST", f"{h1}/write-off", ("operator",)),
        ("POST", f"{h1}/resend", ("operator", "hospital")),
        ("POST", f"{h1}/dispute", ("operator", "hospital")),
        ("POST", f"{h1}/resolve", ("operator", "hospital")),
        ("POST", "/admin/refunds/1/retry", ("operator", "hospital")),
        ("POST", "/admin/logout", ALL),
    ]


async def test_the_role_table_names_every_route_of_the_console(browser, programme):
    def canonical(path: str) -> str:
        return (path.split("?")[0].replace(f"/members/{programme.zhang_wei}", "/members/{member_id}")
                .replace(f"/bills/{programme.h1_bill}", "/bills/{bill_no}").replace("/refunds/1/", "/refunds/{refund_id}/")
                .replace("/jobs/none", "/jobs/{job}").replace("/overdue.csv", "/{what}.{fmt}").replace("/overdue.xlsx", "/{what}.{fmt}"))

    named = {(method, canonical(path)) for method, path, _ in routes(programme)}
    mounted = {(route.method, route.resource.canonical) for route in browser.client.app[ADMIN].router.routes()
               if route.method in ("GET", "POST")}
    assert named == mounted


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_refused_every_route_outside_it_and_nothing_changes(browser, programme, role):
    await browser.log_in(role)
    await browser.get("/admin/")  # its CSRF token serves every form of the session
    for method, path, allowed in routes(programme):  # logging out comes last
        before = await row_counts(programme.core)
        if method == "GET":
            status, page = await browser.get(path)
        else:
            status, page, _ = await browser.post(path, {"reason": "role table", "field": "phone", "channel": "wechat"})
        if role in allowed:
            assert status != 403, (role, method, path)
        else:
            assert status == 403 and "没有权限" in page, (role, method, path, status)
            assert await row_counts(programme.core) == before, (role, method, path)


async def test_an_operator_writes_off_a_bill_and_the_audit_log_shows_it(browser, programme):
    await browser.log_in("operator")
    status, page = await browser.get(f"/admin/bills/{programme.h1_bill}")
    assert "核销（保险已垫付）" in page
    status, _, location = await browser.post(f"/admin/bills/{programme.h1_bill}/write-off", {"reason": "insurer paid 120 yuan"})
    assert (status, location) == (303, f"/admin/bills/{programme.h1_bill}?done=1")
    assert (await bill(programme.core, programme.h1_bill)).status == "written_off"
    status, page = await browser.get("/admin/audit")
    assert "insurer paid 120 yuan" in page and f"bill:{programme.h1_bill}" in page and ">核销<" in page
    assert await actions(programme.core) == [("operator", "write_off", f"bill:{programme.h1_bill}")]


async def test_an_action_without_a_reason_is_refused_plainly(browser, programme):
    await browser.log_in("operator")
    await browser.get(f"/admin/members/{programme.zhang_wei}")
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/repair", {"reason": " "})
    assert status == 400 and "请写明原因" in page
    assert await status_of(programme.core, programme.zhang_wei) == "suspended" and await actions(programme.core) == []


async def test_credit_repair_shows_repair_credits_refusal(browser, programme):
    await browser.log_in("operator")
    await browser.get(f"/admin/members/{programme.zhang_wei}")
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/repair", {"reason": "asked"})
    assert status == 409 and "还有逾期账单没有付清" in page
    assert await actions(programme.core) == []


@pytest.mark.parametrize(("role", "query", "found"), [
    ("operator", "张", {"张伟", "张秀英"}),
    ("operator", "0012", {"张伟"}),  # the ID number's last four
    ("operator", "0027", {"张秀英"}),  # the phone's last four
    ("operator", ZHANG_WEI, {"张伟"}),
    ("operator", "13912340027", {"张秀英"}),
    ("hospital", "张", {"张伟"}),  # H1 served only Zhang Wei
    ("community", "张", {"张伟"}),  # 孙丽 onboarded only Zhang Wei
    ("auditor", "张", {"张伟", "张秀英"}),
])
async def test_search_finds_members_within_the_role_with_numbers_masked(browser, programme, role, query, found):
    await browser.log_in(role)
    status, page = await browser.get("/admin/members", params={"q": query})
    assert status == 200
    assert {name for name in ("张伟", "张秀英") if f">{name}</a>" in page} == found
    if "张伟" in found:
        assert "110105********0012" in page and ZHANG_WEI not in main(page).replace(f'value="{ZHANG_WEI}"', "")


async def test_a_bill_number_leads_to_the_bill(browser, programme):
    await browser.log_in("operator")
    async with browser.client.get("/admin/members", params={"q": programme.h2_bill}, allow_redirects=False) as response:
        assert response.headers["Location"] == f"/admin/bills/{programme.h2_bill}"


async def test_the_member_page_masks_numbers_and_shows_history_lines_bills_and_staff(browser, programme):
    await browser.log_in("community")
    status, page = await browser.get(f"/admin/members/{programme.zhang_wei}")
    text = visible(page)
    assert status == 200
    assert "110105********0012" in text and "138****5678" in text and ZHANG_WEI not in text
    assert "孙丽" in text and programme.h1_bill in text and "暂停使用" in text and "ladder:days_overdue>=0" in text
    assert "¥2,000.00" in text  # the line


async def test_a_full_number_is_shown_only_for_a_reason_and_the_showing_is_audited(browser, programme):
    await browser.log_in("community")
    await browser.get(f"/admin/members/{programme.zhang_wei}")
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/reveal", {"field": "id_number", "reason": ""})
    assert status == 400 and ZHANG_WEI not in page
    status, page, _ = await browser.post(f"/admin/members/{programme.zhang_wei}/reveal",
                                         {"field": "id_number", "reason": "resident asks at the community office"})
    assert status == 200 and ZHANG_WEI in page
    assert await actions(programme.core) == [("community", "reveal_id_number", f"member:{programme.zhang_wei}")]


async def test_logging_out_ends_the_session(browser):
    await browser.log_in("auditor")
    await browser.get("/admin/")
    status, _, location = await browser.post("/admin/logout", {})
    assert (status, location) == (303, "/admin/login")
    assert (await browser.get("/admin/"))[0] == 303


async def test_the_console_speaks_the_language_chosen(browser):
    await browser.log_in("operator")
    status, page = await browser.get("/admin/", params={"lang": "en"})
    assert '<html lang="en">' in page
    status, page = await browser.get("/admin/members")
    assert '<html lang="en">' in page  # remembered in the session


async def test_a_hospital_sees_a_shared_patient_without_another_hospitals_bills_or_notices(browser, programme):
    h1_bill = await billed_visit(programme.core, ZHANG_XIUYING, 2000)  # she comes to H1 too
    await browser.log_in("hospital")
    status, page = await browser.get(f"/admin/members/{programme.zhang_xiuying}")
    assert status == 200 and h1_bill in page and programme.h2_bill not in page


async def test_the_sandbox_seeds_an_operator_with_the_password_of_this_start(tmp_path, aiohttp_client):
    settings = Settings(secret_key="sandbox-secret-key-0123456789abcdef", sandbox=True, data_dir=tmp_path,
                        database_url=f"sqlite+inline:///{tmp_path / 'xinyi.db'}")
    first = await make_app(settings, sandbox_password="first start password")
    await first[CORE].db.close()
    browser = Browser(await aiohttp_client(await make_app(settings, sandbox_password="second start password")))
    assert (await browser.log_in(SANDBOX_OPERATOR, "first start password"))[0] == 401
    assert (await browser.log_in(SANDBOX_OPERATOR, "second start password"))[0] == 303


@pytest.mark.parametrize("query", ["%E5%BC%A0%00%E4%BC%9F", "%ED%A0%80", "x" * 51])  # 张 NUL 伟, a lone surrogate, too long
async def test_a_search_no_member_can_match_finds_nothing_and_fails_nothing(browser, query):
    await browser.log_in("operator")
    status, page = await browser.get(URL(f"/admin/members?q={query}", encoded=True))
    assert status == 200 and "没有找到" in page
    assert (await browser.get("/admin/bills/B%00"))[0] == 404


async def test_the_bill_page_names_how_each_payment_was_taken(browser, programme):
    await pay_at_hospital(programme.core, "H2", programme.h2_bill, {"payment_no": "F1", "channel": "face", "amount_fen": 100})
    await browser.log_in("operator")
    status, page = await browser.get(f"/admin/bills/{programme.h2_bill}")
    assert status == 200 and "<td>刷脸支付</td>" in page and "<td>F1</td>" in page


@pytest.mark.parametrize("role, shown", [("operator", ("h1_bill", "h2_bill")), ("hospital", ("h1_bill",)),
                                          ("community", ("h1_bill",)), ("auditor", ("h1_bill", "h2_bill"))])
async def test_the_bill_list_holds_the_roles_bills_newest_first(browser, programme, role, shown):
    await browser.log_in(role)
    status, page = await browser.get("/admin/bills")
    listed = re.findall(r'href="/admin/bills/(B\w+)"', page)
    assert status == 200 and listed == [getattr(programme, name) for name in reversed(shown)]
    status, page = await browser.get("/admin/bills?status=advanced")
    assert re.findall(r'href="/admin/bills/(B\w+)"', page) == [programme.h1_bill] and 'value="advanced" selected' in page


async def test_the_bill_list_pages_on_and_ignores_what_it_cannot_read(browser, programme, monkeypatch):
    monkeypatch.setattr(bills, "LISTED", 1)
    await browser.log_in("operator")
    status, page = await browser.get("/admin/bills")
    assert re.findall(r'href="/admin/bills/(B\w+)"', page) == [programme.h2_bill] and 'rel="next"' in page
    older = html.unescape(re.search(r'href="(/admin/bills\?[^"]+)" rel="next"', page).group(1))
    status, page = await browser.get(older)
    assert re.findall(r'href="/admin/bills/(B\w+)"', page) == [programme.h1_bill] and 'rel="next"' not in page
    for query in ("?before=abc", "?before=" + "9" * 40, "?status=<b>", "?before=-1"):
        status, page = await browser.get("/admin/bills" + query)
        assert status == 200 and len(re.findall(r'href="/admin/bills/(B\w+)"', page)) == 1, query
async def test_a_members_notices_name_the_sms_and_what_it_carries(browser, programme):
    """An SMS is an outbox row of its own (bot/wechat_sender.py); the member page says which notice it carries."""
    from billing import outbox
    from storage.models import Outbox

    async with programme.core.db.transaction() as session:
        notice = await session.scalar(select(Outbox).where(Outbox.member_id == programme.zhang_wei,
                                                           Outbox.kind == "bill_issued"))
    await outbox.follow_up(programme.core.db, notice, "sms", programme.clock.now())
    await browser.log_in("operator")
    status, page = await browser.get(f"/admin/members/{programme.zhang_wei}?lang=en")
    assert status == 200 and "SMS：Bill notice" in visible(page)


async def test_the_console_shows_the_institution_chosen_and_a_bills_interest(make_core, clock, aiohttp_client):
    """Xiamen: 吴丽华 chose 海西示例保险 (60 interest-free days, 300 ppm, at most 1,000 yuan); her 400-yuan bill is
    a day and an hour past due: floor(40,000 x 300 / 1,000,000) = 12 fen of interest."""
    core = await make_core("xiamen")
    member_id = await enrol_wu_lihua(core)
    bill_no = await billed_visit(core, "350200197509300157", 40000)
    clock.advance(days=61, hours=1)
    async with core.db.transaction() as session:
        session.add(Operator(username="operator", password_hash=password_hash(), role="operator", active=True,
                             failed_logins=0, created_at=clock.now()))
    browser = Browser(await aiohttp_client(build_app(core, background=False)))
    await browser.log_in("operator")
    text = visible(main((await browser.get(f"/admin/members/{member_id}"))[1]))
    assert "金融机构 海西示例保险 · 免息 60 天，之后每欠 1000 元每天利息 ¥0.30，最高额度 ¥1,000.00" in text
    assert "¥1,000.00" in text and "¥0.12" in text  # the capped line; the bill's interest as of now
    text = visible(main((await browser.get(f"/admin/bills/{bill_no}"))[1]))
    assert "金融机构 海西示例保险 · 每欠 1000 元每天利息 ¥0.30" in text
    assert "利息 ¥0.12，已付 ¥0.00" in text and "还欠 ¥400.12" in text


async def enrol_wu_lihua(core) -> int:
    return (await enrol_member(core, openid=None, name="吴丽华", id_number="350200197509300157", phone="13912345678",
                               consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version,
                               institution="haixi-insurance")).member_id
