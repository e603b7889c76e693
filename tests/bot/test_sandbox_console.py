"""The sandbox console over real HTTP on loopback: the chat simulator's messages really go
through `/wechat` in safe mode (the webhook's own Envelope sees them encrypted), personas are
openids, the staff code is a subscribe with its scene, bill notices come back as template
cards; the hospital panel's calls are signed, sent and answered by `/api/v1`; the demo seed
is idempotent. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import html
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request, unused_port
from sqlalchemy import func, select

from billing import accounts
from billing.booking import local_now
from billing.core import Core
from billing.demo import DEMO_HOSPITAL, DEMO_HOSPITAL_SECRET, DEMO_STAFF_OPENID, DOCTORS, SESSIONS, seed_demo
from billing.hospitals import add_hospital
from billing.members import member_by_openid
from billing.staff import staff_by_openid
from billing.sweep import sweep
from bot.app import build_app
from bot.hospital_api import signature
from bot.sandbox import console
from bot.sandbox.fake_wechat_api import push, text_message
from bot.server import MaskedAccessLogger
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechat_menu import build_menu
from bot.wechat_sender import SANDBOX_TEMPLATES, WeChatSender
from bot.wechat_webhook import ENVELOPE, Envelope, Received
from handlers.i18n import money, t
from storage.models import Hospital, Slot, Staff, Visit

PATIENT, RELATIVE, ELDER = "patient", "relative", "elder"  # the personas, by key
OPENID = {PATIENT: "o-demo-patient", RELATIVE: "o-demo-relative", ELDER: "o-demo-elder"}
MOTHER_ID = "110108195203040075"


class RecordingEnvelope(Envelope):
    """The webhook's own Envelope, keeping what it opened: the proof that /wechat was reached."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.opened: list[Received] = []

    def open(self, query, body) -> Received:
        received = super().open(query, body)
        self.opened.append(received)
        return received


@dataclass
class Sandbox:
    client: TestClient
    core: Core
    envelope: RecordingEnvelope
    account: WeChatAccount

    async def send(self, persona: str, **what) -> list[dict]:
        response = await self.client.post("/sandbox/chat/send", json={"persona": persona, **what})
        assert response.status == 200, await response.text()
        return (await response.json())["entries"]

    async def say(self, persona: str, text: str) -> str:
        """What the account answered at once (the passive reply)."""
        entries = await self.send(persona, kind="text", text=text)
        return "\n".join(e["text"] for e in entries if e["side"] == "account")

    async def history(self, after: int = 0) -> list[dict]:
        response = await self.client.get("/sandbox/chat/history", params={"after": after})
        assert response.status == 200
        return (await response.json())["entries"]

    async def call(self, method: str, path: str, body=None) -> dict:
        response = await self.client.post("/sandbox/hospital/call", json={
            "hospital": DEMO_HOSPITAL, "method": method, "path": path, "body": body})
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
async def sandbox(make_core, aiohttp_server, aiohttp_client) -> Sandbox:
    """What `xinyi serve` mounts in sandbox mode for the console: `/wechat` for the sandbox
    account with the fake WeChat API, the hospital API, the demo programme, the console."""
    port = unused_port()
    core = await make_core(hospital=None)
    core.public_url = f"http://127.0.0.1:{port}"
    await seed_demo(core)
    account = WeChatAccount.sandbox(core.public_url)
    app = build_app(core, background=False, wechat=WeChatApi(core.db, account, clock=core.clock))
    console.setup(app)
    app[ENVELOPE] = envelope = RecordingEnvelope(account, core.clock)
    server = await aiohttp_server(app, port=port)
    return Sandbox(await aiohttp_client(server), core, envelope, account)


# -- the demo programme --------------------------------------------------------------------


async def test_seed_demo_is_idempotent(make_core):
    core = await make_core(hospital=None)

    async def contents():
        async with core.db.transaction() as session:
            slots = (await session.execute(select(Slot.department, Slot.doctor, Slot.day, Slot.start, Slot.capacity,
                                                  Slot.booked, Slot.fee_fen))).all()
            return (sorted(await session.scalars(select(Hospital.code))), sorted(slots),
                    sorted(await session.scalars(select(Staff.openid))))

    await seed_demo(core)
    first = await contents()
    await seed_demo(core)
    assert await contents() == first

    hospitals, slots, staff = first
    assert hospitals == [DEMO_HOSPITAL] and staff == [DEMO_STAFF_OPENID]
    today = local_now(core).date()
    assert {day for _, _, day, *_ in slots} == {today + timedelta(days=n) for n in range(7)}
    assert len(slots) == 7 * len(DOCTORS) * len(SESSIONS)
    assert {"内科", "消化内科", "心血管内科", "儿科"} <= {department for department, *_ in slots}


async def test_seed_demo_keeps_a_hospital_registered_before(make_core):
    core = await make_core(hospital=None)
    await add_hospital(core, DEMO_HOSPITAL, "另一家医院", secret="secret-set-by-the-operator")
    await seed_demo(core)
    async with core.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Hospital)) == 1
        assert await session.scalar(select(Hospital.name)) == "另一家医院"


# -- the chat simulator ---------------------------------------------------------------------


async def test_a_typed_message_goes_through_wechat_encrypted_and_the_reply_is_decrypted(sandbox):
    reply = await sandbox.say(PATIENT, "帮助")

    assert "开通信用就医" in reply  # the real router's menu
    (received,) = sandbox.envelope.opened
    assert received.encrypted and received.incoming.openid == OPENID[PATIENT] and received.incoming.text == "帮助"
    (user, answer) = await sandbox.history()
    assert (user["side"], user["openid"], user["text"]) == ("user", OPENID[PATIENT], "帮助")
    assert (answer["side"], answer["openid"], answer["text"]) == ("account", OPENID[PATIENT], reply)

    # The sandbox account is in safe mode: the plaintext WeChat could also send is refused.
    now = int(sandbox.core.clock.now().timestamp())
    query, body = push(sandbox.account, text_message(OPENID[PATIENT], "帮助", 1, now), now, mode="plain")
    assert (await sandbox.client.post("/wechat", params=query, data=body)).status == 403


async def test_voice_arrives_as_speech_recognition(sandbox):
    reply = await sandbox.say(RELATIVE, "开通")
    assert "隐私说明" in reply
    entries = await sandbox.send(RELATIVE, kind="voice", text="同意")
    assert [e["kind"] for e in entries] == ["voice", "text"]
    assert "姓名" in entries[1]["text"]  # the consent was taken: next, the name
    assert sandbox.envelope.opened[-1].incoming.kind == "voice"


async def test_each_persona_is_its_own_wechat_user(sandbox):
    assert "隐私说明" in await sandbox.say(RELATIVE, "开通")
    assert "开通信用就医" in await sandbox.say(PATIENT, "菜单")  # not in the relative's enrolment
    assert "姓名" in await sandbox.say(RELATIVE, "同意")
    assert [r.incoming.openid for r in sandbox.envelope.opened] == [OPENID[RELATIVE], OPENID[PATIENT], OPENID[RELATIVE]]
    by_persona = {}
    for entry in await sandbox.history():
        by_persona.setdefault(entry["openid"], []).append(entry["side"])
    assert by_persona == {OPENID[RELATIVE]: ["user", "account"] * 2, OPENID[PATIENT]: ["user", "account"]}


async def test_a_menu_click_is_a_click_event(sandbox):
    entries = await sandbox.send(PATIENT, kind="click", key="CREDIT", name="信用就医 › 额度")
    assert [(e["side"], e["kind"]) for e in entries] == [("system", "note"), ("account", "text")]
    assert entries[0]["text"] == "你点了菜单「信用就医 › 额度」"
    assert "您还没有开通信用就医" in entries[1]["text"]
    incoming = sandbox.envelope.opened[-1].incoming
    assert (incoming.kind, incoming.event, incoming.event_key) == ("event", "CLICK", "CREDIT")


async def test_scanning_the_staff_code_enrols_the_resident_for_that_staff_member(sandbox):
    staff = await staff_by_openid(sandbox.core, DEMO_STAFF_OPENID)
    entries = await sandbox.send(ELDER, kind="scan")
    assert entries[0]["text"] == "你扫描了孙丽的开通二维码"
    assert "工作人员 孙丽 帮您开通" in entries[1]["text"] and "隐私说明" in entries[1]["text"]
    first = sandbox.envelope.opened[-1].incoming
    assert (first.event, first.event_key) == ("subscribe", f"staff:{staff.id}")  # qrscene_ taken off by the webhook

    for answer in ("同意", "张秀英", "110105194908150027", "13800138003", "同意"):
        reply = await sandbox.say(ELDER, answer)
    assert "开通成功" in reply
    async with sandbox.core.db.transaction() as session:
        assert (await session.run_sync(member_by_openid, OPENID[ELDER])).onboarded_by_staff_id == staff.id

    await sandbox.send(ELDER, kind="scan")  # a follower scanning again: SCAN, no prefix
    again = sandbox.envelope.opened[-1].incoming
    assert (again.event, again.event_key) == ("SCAN", f"staff:{staff.id}")


@pytest.mark.parametrize("what, status", [
    ({"persona": "nobody", "kind": "text", "text": "你好"}, 400),
    ({"persona": "patient", "kind": "text", "text": "  "}, 400),
    ({"persona": "patient", "kind": "text", "text": "长" * 601}, 400),
    ({"persona": "patient", "kind": "location"}, 400),
])
async def test_what_the_simulator_refuses_changes_nothing(sandbox, what, status):
    response = await sandbox.client.post("/sandbox/chat/send", json=what)
    assert response.status == status and (await response.json())["error"]
    assert sandbox.envelope.opened == [] and await sandbox.history() == []


@pytest.mark.parametrize("locale", ["zh_Hans", "en"])
async def test_the_bill_notice_is_a_template_card_with_the_cashier_link(sandbox, locale):
    for answer in ("开通", "同意", "刘洋", "11010819920709006X", "13800138002", "同意",
                   "家人", "1", "妈妈", "刘桂兰", MOTHER_ID, "1"):
        reply = await sandbox.say(RELATIVE, answer)
    assert "已添加 刘桂兰" in reply
    if locale == "en":
        await sandbox.say(RELATIVE, "English")
    bill = await visit_with_three_orders(sandbox, "V1")
    sender = WeChatSender(sandbox.core, WeChatApi(sandbox.core.db, sandbox.account, clock=sandbox.core.clock),
                          SANDBOX_TEMPLATES)
    seen = (await sandbox.history())[-1]["seq"]

    await sweep(sandbox.core, sender=sender)

    (notice,) = [e for e in await sandbox.history(seen) if e["openid"] == OPENID[RELATIVE]]
    assert notice["kind"] == "template" and notice["url"] == f"{bill['pay_url']}?lang={locale}"
    card = notice["card"]  # the title and labels are the template's (drawn in the page's language), the values the member's
    assert card["title"] == "就诊账单通知" and card["first"] == t("{name}的就诊账单已出，请按时付款。", locale, name="刘桂兰")
    assert card["fields"][:2] == [["账单号", bill["bill_no"]], ["应付金额", money(6450, locale)]]
    assert card["fields"][2][0] == "付款期限" and card["remark"] == t("点这里查看明细并付款。", locale)


# -- the hospital panel ---------------------------------------------------------------------


async def visit_with_three_orders(sandbox: Sandbox, visit_no: str) -> dict:
    """Liu Guilan's visit through the panel: open, three orders, one cancelled, checkout with a split."""
    path = f"/api/v1/visits/{visit_no}"
    opened = await sandbox.call("POST", "/api/v1/visits", {
        "visit_no": visit_no, "id_number": MOTHER_ID, "department": "消化内科", "kind": "outpatient", "exclusion": None})
    assert (opened["status"], opened["answer"]["on_credit"]) == (201, True)
    for charge_no, category, name, amount_fen in (("C1", "lab", "血常规", 3500), ("C2", "exam", "腹部B超", 18000),
                                                  ("C3", "exam", "胃镜检查", 60000)):
        posted = await sandbox.call("POST", f"{path}/charges", {"charge_no": charge_no, "category": category,
                                                              "name": name, "amount_fen": amount_fen, "prepaid": False})
        assert posted["status"] == 201, posted
    assert (await sandbox.call("POST", f"{path}/charges/C3/cancel", {}))["status"] == 200
    checked_out = await sandbox.call("POST", f"{path}/checkout", {"items": [
        {"charge_no": "C1", "insurance_fen": 2450, "personal_account_fen": 0, "self_pay_fen": 1050},
        {"charge_no": "C2", "insurance_fen": 12600, "personal_account_fen": 0, "self_pay_fen": 5400},
    ]})
    assert checked_out["status"] == 200, checked_out
    return checked_out["answer"]


async def test_panel_calls_are_signed_sent_over_http_and_answered(sandbox):
    exchange = await sandbox.call("POST", "/api/v1/eligibility", {"id_number": MOTHER_ID})
    assert exchange["status"] == 200 and exchange["answer"]["status"] == "none"  # not enrolled, not bound yet

    request = exchange["request"]
    headers, raw = request["headers"], json.dumps(request["body"], ensure_ascii=False).encode()
    assert request["url"] == f"{sandbox.core.public_url}/api/v1/eligibility" and headers["X-Hospital"] == DEMO_HOSPITAL
    assert headers["X-Signature"] == signature(DEMO_HOSPITAL_SECRET, "POST", "/api/v1/eligibility",
                                               headers["X-Timestamp"], headers["X-Nonce"], raw)
    # The server saw that nonce: the very same signed request again is a replay.
    async with aiohttp.ClientSession() as http:
        async with http.post(request["url"], data=raw, headers=headers) as again:
            assert (again.status, (await again.json())["error"]) == (401, "replayed_nonce")


async def test_the_panel_runs_a_visit_from_orders_to_bill(sandbox):
    await sandbox.say(RELATIVE, "开通")
    for answer in ("同意", "刘洋", "11010819920709006X", "13800138002", "同意", "家人", "1", "妈妈", "刘桂兰", MOTHER_ID, "1"):
        await sandbox.say(RELATIVE, answer)
    bill = await visit_with_three_orders(sandbox, "V2")
    assert bill["self_pay_fen"] == 1050 + 5400

    response = await sandbox.client.get("/sandbox/hospital/patient",
                                        params={"hospital": DEMO_HOSPITAL, "id_number": MOTHER_ID})
    found = await response.json()
    (visit,) = found["visits"]
    assert found["name"] == "刘桂兰"
    assert (visit["visit_no"], visit["status"], visit["on_credit"]) == ("V2", "checked_out", True)
    assert [(c["charge_no"], c["status"]) for c in visit["charges"]] == [
        ("C1", "posted"), ("C2", "posted"), ("C3", "released")]
    assert visit["bill"]["bill_no"] == bill["bill_no"] and visit["bill"]["pay_url"] == bill["pay_url"]

    queried = await sandbox.call("GET", f"/api/v1/bills/{bill['bill_no']}")
    assert (queried["status"], queried["answer"]["status"], queried["request"]["body"]) == (200, "open", None)
    payer = await member_by_openid_in(sandbox.core, OPENID[RELATIVE])
    (line,) = (await accounts.credit(sandbox.core, payer)).lines
    assert line.used_fen == 6450  # only the self-pay part stays on the line


async def member_by_openid_in(core: Core, openid: str) -> int:
    async with core.db.transaction() as session:
        return (await session.run_sync(member_by_openid, openid)).id


@pytest.mark.parametrize("body, status", [
    ({"hospital": DEMO_HOSPITAL, "method": "POST", "path": "/wechat", "body": {}}, 400),
    ({"hospital": DEMO_HOSPITAL, "method": "POST", "path": "/api/v1/../wechat", "body": {}}, 400),
    ({"hospital": DEMO_HOSPITAL, "method": "DELETE", "path": "/api/v1/eligibility", "body": {}}, 400),
    ({"hospital": "NOPE", "method": "POST", "path": "/api/v1/eligibility", "body": {}}, 404),
])
async def test_the_panel_only_signs_hospital_api_calls_of_known_hospitals(sandbox, body, status):
    response = await sandbox.client.post("/sandbox/hospital/call", json=body)
    assert response.status == status and (await response.json())["error"]


async def test_the_pages_are_served_with_their_data_escaped(sandbox):
    await add_hospital(sandbox.core, "X1", '<script>alert("x")</script>', secret="another-hospital-secret")
    for path in ("/sandbox/", "/sandbox/hospital", "/sandbox/static/chat.js", "/sandbox/static/hospital.js",
                 "/sandbox/static/console.css"):
        assert (await sandbox.client.get(path)).status == 200, path
    page = await (await sandbox.client.get("/sandbox/hospital")).text()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    chat = await sandbox.client.get("/sandbox/")
    assert "script-src 'self'" in chat.headers["Content-Security-Policy"]
    text = await chat.text()
    assert "刘洋" in text and "110108195203040075" in text  # the personas and their papers
    assert (await sandbox.client.get("/sandbox", allow_redirects=False)).headers["Location"] == "/sandbox/"


@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant", "en"])
async def test_the_simulator_speaks_the_pages_language_and_the_menu_is_the_accounts_one(sandbox, locale):
    """WeChat gives an account one menu for everyone: the phone shows it as pushed (zh_Hans); the
    simulator's own words, and the story's directions to the menu, follow the page's language."""
    page = await (await sandbox.client.get("/sandbox/", params={"lang": locale})).text()
    config = json.loads(re.search(r'<script type="application/json" id="config">(.*?)</script>', page, re.S).group(1))
    assert config["menu"] == build_menu() and config["menu"]["button"][0]["name"] == "信用就医"
    assert config["texts"]["account"] == t("信医", locale)
    enrol = "信用就医 › 开通" + ("" if locale == "zh_Hans" else f" ({t('信用就医', locale)} › {t('开通', locale)})")
    assert html.escape(t("{relative}：点菜单“{enrol}”，同意隐私说明，填姓名、身份证号、手机号，签承诺书。", locale,
                         relative="刘洋", enrol=enrol), quote=True) in page
    if locale == "en":
        assert 'tap "信用就医 › 开通 (Credit care › Enrol)" in the menu' in html.unescape(page)


async def test_the_cast_follows_the_policy(make_core, aiohttp_server, aiohttp_client):
    port = unused_port()
    core = await make_core("xiamen", hospital=None)
    core.public_url = f"http://127.0.0.1:{port}"
    api = WeChatApi(core.db, WeChatAccount.sandbox(core.public_url), clock=core.clock)
    app = build_app(core, background=False, wechat=api)
    console.setup(app)
    client = await aiohttp_client(await aiohttp_server(app, port=port))
    names = [p.name for p in await app[console.CONSOLE].cast()]
    assert names == ["林小红", "郑国强", "吴丽华", "孙丽"]  # residents with a 白鹭分 credit score
    assert "郑小雨" in await (await client.get("/sandbox/")).text()


# -- what the console refuses --------------------------------------------------------------------


async def test_a_message_wechat_refuses_is_a_note_and_the_history_still_answers(sandbox):
    entries = await sandbox.send(PATIENT, kind="text", text="a\u0001b")  # no XML can carry U+0001
    assert entries[-1]["kind"] == "note" and "HTTP 400" in entries[-1]["text"]
    assert [e["kind"] for e in await sandbox.history()] == ["text", "note"]
    response = await sandbox.client.get("/sandbox/chat/history", params={"after": "1" * 5000, "lang": "en"})
    assert response.status == 200 and (await response.json())["entries"][-1]["text"].startswith("/wechat refused")


@pytest.mark.parametrize("path", ["/sandbox/chat/send", "/sandbox/hospital/call"])
@pytest.mark.parametrize("headers, status", [
    ({"Origin": "https://evil.example", "Content-Type": "application/json"}, 403),
    ({"Origin": "null", "Content-Type": "application/json"}, 403),
    ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403),
    ({"Content-Type": "text/plain"}, 415),  # what a cross-origin fetch may send without asking
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
])
async def test_posts_from_other_sites_or_not_in_json_are_refused(sandbox, db, path, headers, status):
    what = {"persona": PATIENT, "kind": "text", "text": "你好", "hospital": DEMO_HOSPITAL, "method": "POST",
            "path": "/api/v1/visits", "body": {"visit_no": "V1", "id_number": "110105198503120012", "department": "内科",
                                               "kind": "outpatient", "exclusion": None}}
    response = await sandbox.client.post(path, data=json.dumps(what), headers=headers)
    assert response.status == status and (await response.json())["error"]
    assert sandbox.envelope.opened == []
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Visit)) == 0


async def test_the_console_s_own_origin_may_post(sandbox):
    response = await sandbox.client.post("/sandbox/chat/send", json={"persona": PATIENT, "kind": "text", "text": "你好"},
                                         headers={"Origin": sandbox.core.public_url, "Sec-Fetch-Site": "same-origin"})
    assert response.status == 200


@pytest.mark.parametrize("redirect_uri, status", [
    ("/pay/x/wechat", 302),  # made absolute on the app's own public URL below
    ("https://evil.example/steal", 400),
    ("{own}@evil.example/steal", 400),  # the public URL as a user name
    ("/relative/only", 400),
])
async def test_the_fake_oauth_only_sends_the_user_back_to_this_app(sandbox, redirect_uri, status):
    own = sandbox.core.public_url
    uri = own + redirect_uri if status == 302 else redirect_uri.format(own=own)
    response = await sandbox.client.get("/sandbox/wechat/connect/oauth2/authorize", allow_redirects=False, params={
        "appid": sandbox.account.appid, "redirect_uri": uri, "response_type": "code", "scope": "snsapi_base"})
    assert response.status == status
    if status == 302:
        assert response.headers["Location"].startswith(own + "/pay/x/wechat?code=")


def test_the_access_log_masks_id_and_mobile_numbers():
    lines = []
    logger = MaskedAccessLogger(SimpleNamespace(info=lambda fmt, *args, **kw: lines.append(fmt % args)),
                                '%r %{Referer}i')
    request = make_mocked_request("GET", "/sandbox/hospital/patient?hospital=H1&id_number=11010819920709006X",
                                  headers={"Referer": "http://x/?phone=13800138002"})
    logger.log(request, web.Response(), 0.01)
    assert lines == ["GET /sandbox/hospital/patient?hospital=H1&id_number=110108********006X HTTP/1.1 http://x/?phone=138****8002"]


async def test_the_staff_member_sees_their_code_as_an_image_in_the_chat(sandbox):
    reply = await sandbox.say("staff", "二维码")
    assert "/qr/staff:" in reply and "lang=zh_Hans" in reply

    async def image_entries():
        return [e for e in await sandbox.history() if e["kind"] == "image"]

    for _ in range(100):  # the image goes as a customer-service message, after the passive reply
        if await image_entries():
            break
        await asyncio.sleep(0.05)
    (entry,) = await image_entries()
    assert entry["side"] == "account" and entry["openid"] == DEMO_STAFF_OPENID
    image = await sandbox.client.get(entry["image_url"])
    assert image.status == 200 and image.content_type == "image/png"
    assert (await image.read()).startswith(b"\x89PNG\r\n\x1a\n")


async def test_eligibility_says_what_the_chat_says_for_a_family_member(sandbox):
    for answer in ("开通", "同意", "刘洋", "11010819920709006X", "13800138002", "同意",
                   "家人", "1", "妈妈", "刘桂兰", MOTHER_ID, "1"):
        await sandbox.say(RELATIVE, answer)
    await visit_with_three_orders(sandbox, "V1")  # ¥64.50 on the son's line
    assert "门诊额度：¥2,000.00，已用 ¥64.50，可用 ¥1,935.50" in await sandbox.say(RELATIVE, "额度")

    mother = (await sandbox.call("POST", "/api/v1/eligibility", {"id_number": MOTHER_ID}))["answer"]
    son = (await sandbox.call("POST", "/api/v1/eligibility", {"id_number": "11010819920709006X"}))["answer"]
    assert (mother["status"], mother["line"], mother["available_fen"]) == ("prospect", "family", 193550)
    assert (son["status"], son["line"], son["available_fen"]) == ("active", "own", 193550)
    response = await sandbox.client.get("/sandbox/hospital/patient", params={"hospital": DEMO_HOSPITAL, "id_number": MOTHER_ID})
    assert (await response.json())["payer"] == "刘洋"
