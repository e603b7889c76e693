"""The sandbox console: a WeChat chat simulator at /sandbox/ and a hospital panel at
/sandbox/hospital, for trying the whole programme in a browser on the real code paths.

The simulator is the WeChat server's side of the official account. A message typed on the
page becomes the XML WeChat would push (MsgId, CreateTime, FromUserName = the persona's
openid), signed and encrypted in safe mode, and is POSTed over HTTP to the app's own
`/wechat`; the passive reply is checked and decrypted as WeChat does. Customer-service and
template messages are read from the record of the fake WeChat API the app sends them to.

The panel plays the hospital's HIS: each call is signed with the hospital's API secret
and sent over HTTP to `/api/v1`, and the answer is shown as it came.
"""
from __future__ import annotations

import functools
import json
import re
import secrets
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from yarl import URL

from billing.core import Core
from billing.demo import DEMO_STAFF_NAME, DEMO_STAFF_OPENID
from billing.errors import InvalidInput, NotFound
from billing.hospitals import hospital_by_code, hospital_secret
from billing.identity import normalise_id_number
from billing.members import check_eligibility, member_by_id_number
from billing.staff import onboarding_scene, staff_by_openid
from billing.visits import credit_for
from billing.validate import BadJson, loads_json, whole_number
from bot.cashier import page_locale
from bot.hospital_api import CORE, signed_headers
from bot.sandbox.console_pages import chat_page, hospital_page
from bot.sandbox.fake_wechat_api import FakeWeChat, event_message, push, read_reply, text_message
from bot.sandbox.insurer import INSURER
from bot.sandbox.sms import SANDBOX_SMS
from bot.wechat_api import SANDBOX_PATH, WeChatAccount
from bot.wechat_sender import SANDBOX_TEMPLATES
from bot.wechat_webhook import FAKE_WECHAT, WECHAT_API
from handlers.i18n import N_, t
from storage.models import Bill, Charge, CreditLine, Hospital, Member, Slot, Visit, WeChatToken

STATIC_DIR = Path(__file__).with_name("static")
ICON = STATIC_DIR.parent.parent / "static" / "cashier.svg"
TRANSCRIPT_MAX = 5000
TEXT_MAX_CHARS = 600
VISITS_SHOWN = 10
TIMEOUT = aiohttp.ClientTimeout(total=15)  # the webhook answers within its 5 s; the rest is slack
API_PATH = re.compile(r"/api/v1/[A-Za-z0-9/_-]{1,200}")
ACCOUNT_ID = "gh_xinyi"  # the official account's own id, the ToUserName of what WeChat pushes


@dataclass(frozen=True)
class Persona:
    key: str  # patient, relative, elder, staff: what the page styles and the buttons name
    openid: str
    name: str
    role: str  # N_
    id_number: str = ""
    phone: str = ""
    family: tuple[str, str, str] | None = None  # (what they call them, name, ID number)


# One cast per preset, residents of billing/data/demo_registry.csv: the page shows the first
# whose patient and relative the programme's policy admits.
CASTS = (
    (
        Persona("patient", "o-demo-patient", "张伟", N_("患者"), "110105198503120012", "13800138001"),
        Persona("relative", "o-demo-relative", "刘洋", N_("儿子，替妈妈付款"), "11010819920709006X", "13800138002",
                ("妈妈", "刘桂兰", "110108195203040075")),
        Persona("elder", "o-demo-elder", "张秀英", N_("老人，请社区工作人员帮忙开通"), "110105194908150027", "13800138003"),
    ),
    (
        Persona("patient", "o-demo-patient", "陈一鸣", N_("患者，14 岁以上可以自己开通"), "320611201104050115", "13800138001"),
        Persona("relative", "o-demo-relative", "陈静", N_("女儿，替爸爸付款"), "320602198305160096", "13800138002",
                ("爸爸", "陈德华", "320600195009230102")),
    ),
    (
        Persona("patient", "o-demo-patient", "林小红", N_("患者"), "350203198703210132", "13800138001"),
        Persona("relative", "o-demo-relative", "郑国强", N_("爸爸，替女儿付款"), "350200196601100161", "13800138002",
                ("女儿", "郑小雨", "350211201608180179")),
        Persona("elder", "o-demo-elder", "吴丽华", N_("居民，请社区工作人员帮忙开通"), "350200197509300157", "13800138003"),
    ),
)
STAFF = Persona("staff", DEMO_STAFF_OPENID, DEMO_STAFF_NAME, N_("社区工作人员"))

# The templates the sandbox account has on the WeChat platform: the card's title and the
# labels of keyword1, keyword2, ... (the `first` and `remark` values come with each message).
TEMPLATES = {
    SANDBOX_TEMPLATES["bill_issued"]: (N_("就诊账单通知"), (N_("账单号"), N_("应付金额"), N_("付款期限"))),
    SANDBOX_TEMPLATES["bill_reminder"]: (N_("缴费提醒"), (N_("账单号"), N_("待付金额"), N_("付款期限"))),
    SANDBOX_TEMPLATES["bill_overdue"]: (N_("逾期提醒"), (N_("账单号"), N_("待付金额"), N_("付款期限"))),
}


class ConsoleError(Exception):
    """A request the console refuses; `message` is source-language text for t(), filled in with
    `params` (which may be named `status`: the HTTP status has another name)."""

    def __init__(self, message: str, http_status: int = 400, **params: object) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.params = params


class Console:
    """The simulator's state: the personas, the chat transcript of every persona, and the
    HTTP client it reaches the app's own endpoints with."""

    def __init__(self, core: Core, fake: FakeWeChat, account: WeChatAccount) -> None:
        self.core = core
        self.fake = fake
        self.account = account
        self.base = core.public_url.rstrip("/")
        self.origin = str(URL(self.base).origin())  # what a browser names as the Origin of the console's pages
        self.http: aiohttp.ClientSession | None = None
        self.entries: deque[dict[str, Any]] = deque(maxlen=TRANSCRIPT_MAX)
        self.seq = 0
        self.seen_calls = 0  # how much of the fake's record is in the transcript
        self.followed: set[str] = set()
        self._created: dict[str, int] = {}  # openid -> the CreateTime of its last message
        self._cast: tuple[Persona, ...] | None = None

    async def cast(self) -> tuple[Persona, ...]:
        if self._cast is None:
            self._cast = (*await self._admitted_cast(), STAFF)
        return self._cast

    async def _admitted_cast(self) -> tuple[Persona, ...]:
        for cast in CASTS:
            verdicts = [await check_eligibility(self.core, p.id_number, p.name)
                        for p in cast if p.key in ("patient", "relative")]
            if all(verdict.eligible for verdict in verdicts):
                return cast
        return CASTS[0]  # a policy none admits: the refusals are part of the demo

    async def persona(self, key: object) -> Persona:
        found = next((p for p in await self.cast() if p.key == key), None)
        if found is None:
            raise ConsoleError(N_("没有这个身份：{key}"), key=str(key)[:20])
        return found

    # -- the transcript --------------------------------------------------------------------

    def add(self, openid: str, side: str, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        entry = {"seq": self.seq, "openid": openid, "side": side, "kind": kind,
                 "at": self.core.clock.now().isoformat(), **fields}
        self.entries.append(entry)
        return entry

    def collect(self) -> None:
        """What the app sent through the fake WeChat API since the last look, as chat messages."""
        calls = self.fake.calls
        for call in calls[self.seen_calls:]:
            body = call.body if isinstance(call.body, dict) else {}
            if call.path == "/cgi-bin/message/custom/send" and body.get("msgtype") == "text":
                self.add(body.get("touser", ""), "account", "text", text=(body.get("text") or {}).get("content", ""))
            elif call.path == "/cgi-bin/message/custom/send" and body.get("msgtype") == "image":
                media_id = (body.get("image") or {}).get("media_id", "")
                self.add(body.get("touser", ""), "account", "image",
                         image_url=f"{SANDBOX_PATH}/cgi-bin/media/get?{urlencode({'media_id': media_id})}")
            elif call.path == "/cgi-bin/message/template/send":
                self.add(body.get("touser", ""), "account", "template", template_id=body.get("template_id", ""),
                         data={name: value.get("value", "") for name, value in (body.get("data") or {}).items()},
                         url=body.get("url"))
        self.seen_calls = len(calls)

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["seq"] > seq]

    # -- what WeChat pushes ----------------------------------------------------------------

    async def say(self, persona: Persona, kind: str, text: str) -> None:
        text = text.strip()
        if not 0 < len(text) <= TEXT_MAX_CHARS:
            raise ConsoleError(N_("消息要有 1 到 {count} 个字。"), count=TEXT_MAX_CHARS)
        self.add(persona.openid, "user", kind, text=text)
        now, msg_id = self._create_time(persona), secrets.randbits(63)
        if kind == "voice":
            xml = voice_message(persona.openid, text, msg_id, now)
        else:
            xml = text_message(persona.openid, text, msg_id, now, to=ACCOUNT_ID)
        await self._push(persona, xml)

    async def event(self, persona: Persona, event: str, key: str, note: tuple[str, dict[str, str]]) -> None:
        self.add(persona.openid, "system", "note", note=list(note))
        await self._push(persona, event_message(persona.openid, event, self._create_time(persona), key, to=ACCOUNT_ID))

    async def scan_staff_code(self, persona: Persona) -> None:
        """What WeChat sends when the persona scans the demo staff member's onboarding code:
        a subscribe with `qrscene_` to someone new to the account, SCAN to a follower."""
        staff = await staff_by_openid(self.core, DEMO_STAFF_OPENID)
        if staff is None:
            raise ConsoleError(N_("没有演示工作人员：请重新启动 xinyi serve。"), 409)
        scene = onboarding_scene(staff.id)
        note = (N_("你扫描了{name}的开通二维码"), {"name": staff.name})
        if persona.openid in self.followed:
            await self.event(persona, "SCAN", scene, note)
        else:
            await self.event(persona, "subscribe", f"qrscene_{scene}", note)

    async def _push(self, persona: Persona, xml: str) -> None:
        """POST to /wechat as WeChat does; the passive reply, or what went wrong, joins the chat."""
        try:
            reply = await self._deliver(xml)
        except ConsoleError as problem:
            self.add(persona.openid, "system", "note", note=[problem.message, problem.params], error=True)
            return
        self.followed.add(persona.openid)
        if reply is not None:
            self.add(persona.openid, "account", "text", text=reply.get("Content", ""))
        self.collect()

    async def _deliver(self, xml: str) -> dict[str, str] | None:
        query, body = push(self.account, xml, self._now())  # safe mode: signed and AES-encrypted
        try:
            async with self.http.post(f"{self.base}/wechat", params=query, data=body) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConsoleError(N_("连不上 {url}：{error}"), url=f"{self.base}/wechat", error=type(exc).__name__) from None
        if status != 200:
            raise ConsoleError(N_("/wechat 拒绝了这条消息（HTTP {status}）：{error}"), status=status,
                               error=raw.decode("utf-8", "replace")[:200])
        if raw not in (b"", b"success") and b"<Encrypt>" not in raw:
            raise ConsoleError(N_("/wechat 的回复没有加密，安全模式下微信不接受。"))
        try:
            return read_reply(self.account, raw)
        except ValueError as exc:  # a bad MsgSignature, or encrypted for another appid
            raise ConsoleError(N_("/wechat 的回复验签或解密失败：{error}"), error=str(exc)) from None

    def _now(self) -> int:
        return int(self.core.clock.now().timestamp())

    def _create_time(self, persona: Persona) -> int:
        """Now, but after the persona's last message: events are deduplicated by sender and
        CreateTime, and two menu taps within a second are two taps."""
        created = self._created[persona.openid] = max(self._now(), self._created.get(persona.openid, 0) + 1)
        return created

    # -- the hospital's HIS ----------------------------------------------------------------

    async def hospital_call(self, code: str, method: str, path: str, body: Any) -> dict[str, Any]:
        """One signed call to the hospital API over HTTP; the request as sent and the answer."""
        if method not in ("GET", "POST") or not API_PATH.fullmatch(path) or "//" in path:
            raise ConsoleError(N_("只能调用 /api/v1/ 下的接口。"))
        secret = await hospital_secret(self.core, code)
        if secret is None:
            raise ConsoleError(N_("没有这家医院：{code}"), 404, code=code[:32])
        raw = b"" if method == "GET" else json.dumps(body, ensure_ascii=False).encode()
        headers = signed_headers(code, secret, method, path, raw, self._now(), secrets.token_hex(12))
        try:
            async with self.http.request(method, self.base + path, data=raw or None, headers=headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConsoleError(N_("连不上 {url}：{error}"), 502, url=self.base + path, error=type(exc).__name__) from None
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return {"request": {"method": method, "url": self.base + path, "headers": headers, "body": body if raw else None},
                "status": status, "answer": answer}

    async def patient_visits(self, code: str, id_number: str) -> dict[str, Any]:
        """What the HIS knows of a patient at this hospital: their latest visits, charges and bills."""
        try:
            number = normalise_id_number(id_number)
        except InvalidInput:
            raise ConsoleError(N_("身份证号不对，请检查 18 位数字。")) from None
        async with self.core.db.transaction() as session:
            try:
                hospital = await session.run_sync(hospital_by_code, code)
            except NotFound:
                raise ConsoleError(N_("没有这家医院：{code}"), 404, code=code[:32]) from None
            member = await session.run_sync(member_by_id_number, self.core, number)
            resident = await self.core.registry.lookup(number)
            name = member.name if member else resident.name if resident else None
            if member is None:
                return {"name": name, "payer": None, "visits": []}
            payer = await session.run_sync(_payer_name, self.core, member)
            visits = list(await session.scalars(
                select(Visit).where(Visit.hospital_id == hospital.id, Visit.patient_id == member.id)
                .order_by(Visit.created_at.desc(), Visit.id.desc()).limit(VISITS_SHOWN)))
            ids = [v.id for v in visits]
            charges = list(await session.scalars(select(Charge).where(Charge.visit_id.in_(ids)).order_by(Charge.id)))
            bills = {b.visit_id: b for b in await session.scalars(select(Bill).where(Bill.visit_id.in_(ids)))}
        return {"name": name, "payer": payer,
                "visits": [_visit_view(self.core, v, charges, bills.get(v.id)) for v in visits]}

    async def hospitals(self) -> list[dict[str, Any]]:
        """The programme's hospitals, each with the departments its schedule names."""
        async with self.core.db.transaction() as session:
            rows = (await session.execute(select(Hospital.id, Hospital.code, Hospital.name).order_by(Hospital.id))).all()
            departments = (await session.execute(
                select(Slot.hospital_id, Slot.department).distinct().order_by(Slot.department))).all()
        return [{"code": code, "name": name, "departments": [d for owner, d in departments if owner == id_]}
                for id_, code, name in rows]


def voice_message(openid: str, recognition: str, msg_id: int, create_time: int) -> str:
    """A voice message with WeChat's speech recognition on: what was said arrives as Recognition."""
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
            f"<MediaId><![CDATA[sandbox-{msg_id}]]></MediaId><Format><![CDATA[amr]]></Format>"
            f"<Recognition>{escape(recognition)}</Recognition><MsgId>{msg_id}</MsgId></xml>")


def _payer_name(session: Session, core: Core, member: Member) -> str | None:
    """The relative on whose line this person's visits are served (家人), or None: the panel names them."""
    line_id, _ = credit_for(session, core, member, "outpatient", None)
    owner_id = session.scalar(select(CreditLine.member_id).where(CreditLine.id == line_id)) if line_id else None
    return session.get(Member, owner_id).name if owner_id not in (None, member.id) else None


def _visit_view(core: Core, visit: Visit, charges: list[Charge], bill: Bill | None) -> dict[str, Any]:
    return {
        "visit_no": visit.visit_no, "department": visit.department, "kind": visit.kind, "status": visit.status,
        "exclusion": visit.exclusion, "on_credit": visit.on_credit, "reason": visit.reason,
        "created_at": visit.created_at.isoformat(),
        "charges": [{"charge_no": c.charge_no, "category": c.category, "name": c.name, "amount_fen": c.amount_fen,
                     "status": c.status} for c in charges if c.visit_id == visit.id],
        "bill": None if bill is None else {
            "bill_no": bill.bill_no, "status": bill.status, "self_pay_fen": bill.self_pay_fen, "paid_fen": bill.paid_fen,
            "due_at": bill.due_at.isoformat(), "pay_url": core.pay_url(bill.pay_token)},
    }


# -- HTTP ------------------------------------------------------------------------------------

CONSOLE = web.AppKey("sandbox_console", Console)


def setup(app: web.Application) -> None:
    """Routes the console on a sandbox app that has `/wechat` with the fake WeChat API mounted."""
    app[CONSOLE] = Console(app[CORE], app[FAKE_WECHAT], app[WECHAT_API].account)
    app.router.add_get("/sandbox", to_chat)
    app.router.add_get("/sandbox/", show_chat)
    app.router.add_get("/sandbox/hospital", show_hospital)
    app.router.add_post("/sandbox/chat/send", chat_send)
    app.router.add_get("/sandbox/chat/history", chat_history)
    app.router.add_get("/sandbox/hospital/patient", hospital_patient)
    app.router.add_post("/sandbox/hospital/call", hospital_call)
    app.router.add_static("/sandbox/static/", STATIC_DIR)
    app.router.add_get("/favicon.ico", favicon)  # for the sandbox gateways' pages, which name no icon
    app.cleanup_ctx.append(_lifetime)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    # The fake WeChat API forgets the tokens it issued when the process ends: a token stored
    # by an earlier run would be refused once, and the refused send would show twice.
    async with console.core.db.transaction() as session:
        await session.execute(delete(WeChatToken).where(WeChatToken.appid == console.account.appid))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as console.http:
        yield


PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


def _page(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(ICON, headers={"Content-Type": "image/svg+xml"})


async def to_chat(request: web.Request) -> web.Response:
    raise web.HTTPFound("/sandbox/")


async def show_chat(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    locale = page_locale(request)
    return _page(chat_page(locale, [persona_view(p, locale) for p in await console.cast()], insurer=INSURER in request.app,
                           sms=SANDBOX_SMS in request.app))


async def show_hospital(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    locale = page_locale(request)
    return _page(hospital_page(locale, [persona_view(p, locale) for p in await console.cast()],
                               await console.hospitals(), console.core.policy.exclusions))


def _refused(error: ConsoleError, locale: str) -> web.Response:
    return web.json_response({"error": t(error.message, locale, **error.params)}, status=error.http_status)


def from_the_console(handler):
    """The console's POSTs act as a hospital and as WeChat users: a page on another origin must
    not make them. A form or a text/plain fetch crosses origins without asking (a "simple"
    request), so the request must name this app as its Origin (or, without one, not come from
    another site) and be JSON, which no cross-origin page can send unasked."""
    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            foreign = request.headers.get("Sec-Fetch-Site") == "cross-site"
        else:
            foreign = origin != request.app[CONSOLE].origin
        if foreign:
            return _refused(ConsoleError(N_("只接受信医自己页面发来的请求。"), 403), page_locale(request))
        if request.content_type != "application/json":
            return _refused(ConsoleError(N_("请求要用 JSON（Content-Type: application/json）。"), 415), page_locale(request))
        return await handler(request)

    return checked


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = loads_json(await request.read())
    except BadJson:
        body = None
    if not isinstance(body, dict):
        raise ConsoleError(N_("请求要是一个 JSON 对象。"))
    return body


@from_the_console
async def chat_send(request: web.Request) -> web.Response:
    """`{persona, kind: text | voice | click | follow | scan, text, key}`: one thing the persona does in WeChat."""
    console, locale = request.app[CONSOLE], page_locale(request)
    start = console.seq
    try:
        body = await _json_body(request)
        persona = await console.persona(body.get("persona"))
        kind = body.get("kind")
        if kind in ("text", "voice"):
            await console.say(persona, kind, str(body.get("text", "")))
        elif kind == "click":
            key, name = str(body.get("key", "")), str(body.get("name", ""))
            await console.event(persona, "CLICK", key, (N_("你点了菜单「{name}」"), {"name": name[:20]}))
        elif kind == "follow":
            await console.event(persona, "subscribe", "", (N_("你关注了公众号"), {}))
        elif kind == "scan":
            await console.scan_staff_code(persona)
        else:
            raise ConsoleError(N_("不认识的操作：{kind}"), kind=str(kind)[:20])
    except ConsoleError as error:
        return _refused(error, locale)
    return web.json_response({"entries": [shown(e, locale) for e in console.after(start)]})


async def chat_history(request: web.Request) -> web.Response:
    console, locale = request.app[CONSOLE], page_locale(request)
    console.collect()
    seq = whole_number(request.query.get("after", "0")) or 0
    return web.json_response({"entries": [shown(e, locale) for e in console.after(seq)]})


def shown(entry: dict[str, Any], locale: str) -> dict[str, Any]:
    """An entry as the page draws it: notes and template labels in the page's language."""
    entry = dict(entry)
    if entry["kind"] == "note":
        message, params = entry.pop("note")
        entry["text"] = t(message, locale, **params)
    elif entry["kind"] == "template":
        title, labels = TEMPLATES.get(entry.pop("template_id"), (N_("服务通知"), ()))
        data = entry.pop("data")
        keywords = sorted((name for name in data if name.startswith("keyword")), key=lambda k: int(k[7:] or 0))
        entry["card"] = {
            "title": t(title, locale), "first": data.get("first", ""), "remark": data.get("remark", ""),
            "fields": [[t(labels[n], locale) if n < len(labels) else name, data[name]] for n, name in enumerate(keywords)],
        }
    return entry


async def hospital_patient(request: web.Request) -> web.Response:
    console, locale = request.app[CONSOLE], page_locale(request)
    try:
        found = await console.patient_visits(request.query.get("hospital", ""), request.query.get("id_number", ""))
    except ConsoleError as error:
        return _refused(error, locale)
    return web.json_response(found)


@from_the_console
async def hospital_call(request: web.Request) -> web.Response:
    """`{hospital, method, path, body}`: signed with the hospital's secret and sent to /api/v1 over HTTP."""
    console, locale = request.app[CONSOLE], page_locale(request)
    try:
        body = await _json_body(request)
        answer = await console.hospital_call(str(body.get("hospital", "")), str(body.get("method", "")),
                                             str(body.get("path", "")), body.get("body"))
    except ConsoleError as error:
        return _refused(error, locale)
    return web.json_response(answer)


def persona_view(persona: Persona, locale: str) -> dict[str, Any]:
    view = asdict(persona)
    view["role"] = t(persona.role, locale)
    return view
