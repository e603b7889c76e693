"""Hostile input at every route of the app `xinyi serve` builds in sandbox mode (hypothesis):
generated headers (bytes that are not UTF-8 included), query strings, path segments and
bodies (JSON too deep, lone surrogates, forms, bytes), unsigned and, for the hospital API and
`/wechat`, correctly signed. Whatever comes, no answer is a 5xx, a refusal comes in the
route's own format, and no business row appears or goes.

The routes are read from the app's router, so a route added later is fuzzed with the others;
one that no family below claims fails `test_every_route_belongs_to_a_family` (and the fuzzing). SQLite only:
what is checked here is the HTTP layer, and the other backends' refusals have their own tests."""
from __future__ import annotations

import json
import re
import time
from typing import Callable
from urllib.parse import quote_from_bytes
from xml.sax.saxutils import escape

import pytest
from aiohttp.test_utils import unused_port
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from raw_http import raw_request
from sqlalchemy import func, select

from billing.demo import DEMO_HOSPITAL, DEMO_HOSPITAL_SECRET
from bot.config import Settings
from bot.hospital_api import CORE, signed_headers
from bot.sandbox.fake_wechat_api import push
from bot.server import make_app
from bot.wechat_api import WeChatAccount
from storage.models import Bill, Charge, Member, Payment, Refund, Trade, Visit

BUSINESS = (Member, Visit, Charge, Bill, Payment, Trade, Refund)
EXAMPLES = 25  # each example goes to every route: about 60 requests


# -- what a refusal of each family of routes looks like ----------------------------------------


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def api_refusal(status: int, body: bytes) -> bool:
    """DESIGN §4.3: `{"error": code, "message": text}`."""
    answer = _json(body)
    return status < 400 or isinstance(answer, dict) and all(isinstance(answer.get(k), str) for k in ("error", "message"))


def console_refusal(status: int, body: bytes) -> bool:
    answer = _json(body)
    return status < 400 or isinstance(answer, dict) and isinstance(answer.get("error"), str)


def wechatpay_refusal(status: int, body: bytes) -> bool:
    """WeChat Pay v3: a 4xx with `{"code": "FAIL", "message": ...}`."""
    answer = _json(body)
    return status < 400 or isinstance(answer, dict) and answer.get("code") == "FAIL" and isinstance(answer.get("message"), str)


def alipay_answer(status: int, body: bytes) -> bool:
    """Alipay reads the text only: `success` or anything else (we say `failure`)."""
    return body in (b"success", b"failure")


def any_answer(status: int, body: bytes) -> bool:
    return True


def wechat_answer(status: int, body: bytes) -> bool:
    """What WeChat's servers can take: `success`, an empty 200 or an encrypted reply; else a 4xx."""
    return status >= 400 or body in (b"", b"success") or b"<Encrypt>" in body


# (route path pattern, whether an answer is in its format). The first match wins; pages and the
# sandbox's stand-ins for other parties (WeChat, WeChat Pay, Alipay) must only never fail.
FAMILIES: tuple[tuple[str, Callable[[int, bytes], bool]], ...] = (
    (r"/api/v1/openapi\.json", any_answer),
    (r"/api/v1/.+", api_refusal),
    (r"/notify/wechatpay", wechatpay_refusal),
    (r"/notify/alipay", alipay_answer),
    (r"/wechat", wechat_answer),
    (r"/sandbox/(chat|hospital|insurer|sms)/.+", console_refusal),
    (r"/sandbox/(wechat|wechatpay|alipay)/.+", any_answer),
    (r"/sandbox(/|/hospital|/static)?", any_answer),
    (r"/pay/\{token\}(/wechat|/alipay)?", any_answer),
    (r"/qr/\{scene\}(/image)?", any_answer),
    (r"/static", any_answer),
    (r"/admin(/.*)?", any_answer),  # the operator console's pages, behind its login
    (r"/documents/\{name\}", any_answer),
    (r"/healthz", any_answer),
    (r"/metrics", any_answer),
    (r"/favicon\.ico", any_answer),
)


def family(path: str) -> Callable[[int, bytes], bool] | None:
    return next((check for pattern, check in FAMILIES if re.fullmatch(pattern, path)), None)


# -- the app ---------------------------------------------------------------------------------------


@pytest.fixture
async def served(tmp_path, aiohttp_server, aiohttp_client):
    """The sandbox app exactly as `xinyi serve` builds it (console, fake WeChat, both gateways)."""
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    config = Settings(secret_key="hostile-secret-key-0123456789abcdef", sandbox=True, public_url=base, port=port,
                      database_url=f"sqlite+inline:///{tmp_path / 'xinyi.db'}", data_dir=tmp_path)
    app = await make_app(config)
    return await aiohttp_client(await aiohttp_server(app, port=port))


async def business_rows(client) -> dict[str, int]:
    async with client.server.app[CORE].db.transaction() as session:
        return {model.__tablename__: await session.scalar(select(func.count()).select_from(model)) for model in BUSINESS}


async def test_every_route_belongs_to_a_family(served):
    paths = {route.resource.canonical for route in served.server.app.router.routes()}
    assert sorted(path for path in paths if family(path) is None) == [], "add these routes to FAMILIES"


# -- generated input -------------------------------------------------------------------------------

SPECIAL_TEXT = ["1" * 5000, "²", "１７７２４４２０００", "\x00", "a\u0001b", "\ud800", "NaN", "-1", "0", "",
                "110105198503120012", "staff:" + "9" * 40, "../../etc/passwd", "<xml>", "{}", "[]"]
text = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=40),  # st.text() makes no surrogates: add one
                 st.text(st.characters(codec="utf-8"), max_size=12).map(lambda t: t + "\ud800"))
# Header values as bytes: anything HTTP can carry in a field (no CR, LF, NUL or other controls).
header_bytes = st.one_of(
    st.sampled_from([b"1" * 5000, "²".encode(), "ａ".encode() * 64, b"\xff\xfe", b"null", b"cross-site"]),
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F)),
)
HEADER_NAMES = ["X-Hospital", "X-Timestamp", "X-Nonce", "X-Signature", "Wechatpay-Serial", "Wechatpay-Timestamp",
                "Wechatpay-Nonce", "Wechatpay-Signature", "Origin", "Sec-Fetch-Site", "Accept-Language",
                "User-Agent", "Authorization", "Referer", "Cookie"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", "text/xml",
                 "multipart/form-data; boundary=x", "application/json; charset=gbk", "ａ/ｂ"]
QUERY_NAMES = ["check", "lang", "after", "hospital", "id_number", "code", "state", "method", "signature", "timestamp",
               "nonce", "echostr", "encrypt_type", "msg_signature", "sig", "appid", "redirect_uri", "scope", "openid"]
FIELDS = ["persona", "kind", "text", "key", "hospital", "method", "path", "body", "visit_no", "id_number", "charge_no",
          "amount_fen", "items", "payment_no", "channel", "out_trade_no", "trade_no", "sign", "sign_type", "app_id"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | text, inner, max_size=4),
    max_leaves=12,
)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate travels as its escape


# What the console's pages post, with hostile values: gets past "no such persona" to /wechat and /api/v1.
console_posts = st.fixed_dictionaries({
    "persona": st.sampled_from(["patient", "relative", "elder", "staff"]) | text,
    "kind": st.sampled_from(["text", "voice", "click", "follow", "scan"]) | text,
    "text": text, "key": text, "name": text,
    "hospital": st.just(DEMO_HOSPITAL) | text,
    "method": st.sampled_from(["GET", "POST"]),
    "path": st.sampled_from(["/api/v1/visits", "/api/v1/eligibility", "/api/v1/bills/B1"]) | text.map(lambda t: "/api/v1/" + t),
    "body": json_values,
})
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(_json_bytes),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(_json_bytes),
    console_posts.map(_json_bytes),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.lists(st.tuples(st.sampled_from(FIELDS) | text, text), max_size=6).map(
        lambda pairs: b"&".join(_quote(k) + b"=" + _quote(v) for k, v in pairs)),
)


def _quote(value: str) -> bytes:
    return quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="").encode()


xml_text = text.filter(lambda t: "\ud800" not in t)  # the XML is encrypted as UTF-8
# What WeChat pushes, with hostile fields; the required ones are there (often valid) so that
# messages get past parsing into the conversations.
wechat_fields = st.fixed_dictionaries(
    {"FromUserName": st.sampled_from(["o-hostile", "o-demo-patient"]) | xml_text,
     "CreateTime": st.sampled_from([str(int(time.time())), "9" * 100, "²"]) | xml_text,
     "MsgType": st.sampled_from(["event", "text", "voice"]) | xml_text},
    optional={"Event": st.sampled_from(["subscribe", "SCAN", "CLICK", "unsubscribe"]) | xml_text,
              "EventKey": st.sampled_from(["qrscene_staff:" + "9" * 5000, "staff:1", "BILLS"]) | xml_text,
              "Content": xml_text, "Recognition": xml_text,
              "MsgId": st.sampled_from([str(time.time_ns()), "9" * 40]) | xml_text},
)


@st.composite
def requests(draw):
    segment = draw(text.filter(bool))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | text, text), max_size=5))
    # Within aiohttp's 8,190 bytes of request line (longer is refused before the app sees it),
    # on a route with two path parameters.
    assume(len(_target("/{a}/{b}", segment, query, static=False)) <= 7900)
    return {
        "segment": segment,
        "query": query,
        "headers": draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_bytes, max_size=5)),
        "content_type": draw(st.just("application/json") | st.sampled_from(CONTENT_TYPES)),
        "body": draw(bodies),
        "signed": draw(st.booleans()),
        "wechat": draw(wechat_fields),
    }


# -- sending one generated request to one route -------------------------------------------------------


def _target(canonical: str, segment: str, query: list[tuple[str, str]], static: bool) -> str:
    path = re.sub(r"\{[^}]+\}", _quote(segment).decode(), canonical) + ("/" + _quote(segment).decode() if static else "")
    return path + ("?" + "&".join(f"{_quote(k).decode()}={_quote(v).decode()}" for k, v in query) if query else "")


def _signed(method: str, target: str, body: bytes) -> dict[str, bytes]:
    headers = signed_headers(DEMO_HOSPITAL, DEMO_HOSPITAL_SECRET, method, target, body, int(time.time()), f"n{time.time_ns()}")
    return {name: value.encode() for name, value in headers.items()}


def _wechat_push(client, fields: dict[str, str]) -> tuple[str, bytes]:
    xml = "<xml>" + "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items()) + "</xml>"
    query, body = push(WeChatAccount.sandbox(str(client.make_url("")).rstrip("/")), xml, int(time.time()))
    return "/wechat?" + "&".join(f"{k}={v}" for k, v in query.items()), body


async def _send(client, route, generated) -> tuple[int, bytes, str]:
    method, canonical = route.method, route.resource.canonical
    target = _target(canonical, generated["segment"], generated["query"], static=canonical.endswith("static"))
    headers = {**generated["headers"], "Content-Type": generated["content_type"].encode()}
    body = generated["body"] if method == "POST" else b""
    if generated["signed"] and canonical.startswith("/api/v1/"):
        headers |= _signed(method, target, body)
    if generated["signed"] and canonical == "/wechat" and method == "POST":
        target, body = _wechat_push(client, generated["wechat"])
    status, answer = await raw_request(client, method, target, headers, body)
    return status, answer, target


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=requests())
async def test_no_route_fails_answers_out_of_format_or_changes_business_rows(served, generated):
    routes = list(served.server.app.router.routes())
    before = await business_rows(served)
    for route in routes:
        status, answer, target = await _send(served, route, generated)
        where = f"{route.method} {target[:200]}"
        assert status < 500, f"{where} answered {status}: {answer[:300]!r}"
        if route.method != "HEAD":
            assert family(route.resource.canonical)(status, answer), f"{where} answered out of format: {answer[:300]!r}"
    assert await business_rows(served) == before
