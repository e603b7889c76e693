"""A fake WeChat platform on loopback, for the sandbox and the tests. Both directions:

- the API a server calls (`FakeWeChat.app()`): /cgi-bin/token, message/template/send,
  message/custom/send, qrcode/create, showqrcode (a real QR image of the ticket's URL),
  media/upload and media/get (temporary images), menu/create, /sns/oauth2/access_token,
  and the sandbox's /connect/oauth2/authorize, which redirects back with a code at once.
  Every call is recorded; a test can expire the tokens (40001, 42001), make a path fail,
  or have a user refuse our messages (43004, 43101);
- the pushes WeChat makes to `/wechat` (`push()`), signed and encrypted as WeChat does,
  and the reading of what came back (`read_reply()`).

The signing and AES code here is written apart from bot/wechat_webhook.py (which uses
wechatpy) on purpose: a fake that reused the server's code would agree with its mistakes.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import struct
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeXml
import segno
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from yarl import URL

from billing.validate import BadJson, loads_json
from bot.wechat_api import WeChatAccount

TOKEN_TTL_S = 7200
SENT_JSON = web.RequestKey("sent_json", object)
WECHAT_ROOTS = ("/cgi-bin/", "/sns/", "/connect/")
MENU_MAX_BUTTONS = 3
MENU_MAX_SUB_BUTTONS = 5
ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    42001: "access_token expired",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40029: "invalid code",
    40163: "code been used",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    40016: "invalid button size",
    40023: "invalid sub button size",
    40018: "invalid button name size",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    41005: "media data missing",
    -1: "system error",
}
QR_SCALE = 8  # pixels per module of the QR images showqrcode draws
QR_BORDER = 2  # modules of quiet zone, as WeChat's images have


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # the JSON sent, or None
    raw: bytes


def _error(errcode: int) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")})


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok", **fields})


class FakeWeChat:
    def __init__(self, appid: str, secret: str, *, default_openid: str = "o-sandbox-user", oauth_origin: str = "") -> None:
        """`oauth_origin` is the account's registered web domain (网页授权域名): OAuth redirects only there."""
        self.appid = appid
        self.secret = secret
        self.oauth_origin = oauth_origin
        self.default_openid = default_openid
        self.calls: list[Call] = []
        self.menu: dict[str, Any] | None = None
        self.qr_scenes: dict[str, str] = {}  # ticket -> scene
        self.qr_urls: dict[str, str] = {}  # ticket -> the URL its image encodes
        self.media: dict[str, tuple[str, bytes]] = {}  # media_id -> (type, the bytes uploaded)
        self._tokens: dict[str, int] = {}  # token -> 0 while valid, else the errcode it now gets
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        self._refusing: dict[str, int] = {}  # openid -> errcode
        self._codes: dict[str, str | None] = {}  # OAuth code -> openid, None once used

    @classmethod
    def for_account(cls, account: WeChatAccount) -> FakeWeChat:
        return cls(account.appid, account.secret, oauth_origin=str(URL(account.open_base).origin()))

    # -- what a test can do ----------------------------------------------------------------

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def expire_tokens(self, errcode: int = 40001) -> None:
        """Every token issued so far is refused from now on with `errcode` (40001 or 42001)."""
        for token in self._tokens:
            self._tokens[token] = errcode

    def fail_next(self, path: str, errcode: int = -1, times: int = 1) -> None:
        self._failures[path].extend([errcode] * times)

    def refuse(self, openid: str, errcode: int = 43101) -> None:
        """The user unfollowed (43004) or refused our messages (43101)."""
        self._refusing[openid] = errcode

    # -- the application -------------------------------------------------------------------

    def app(self) -> web.Application:
        """Mountable anywhere (`add_subapp("/sandbox/wechat", fake.app())`): calls are recorded by their WeChat path."""
        app = web.Application(middlewares=[self._record])
        for method, path, handler in (
            ("GET", "/cgi-bin/token", self._token),
            ("POST", "/cgi-bin/message/template/send", self._send),
            ("POST", "/cgi-bin/message/custom/send", self._send),
            ("POST", "/cgi-bin/qrcode/create", self._qrcode),
            ("GET", "/cgi-bin/showqrcode", self._showqrcode),
            ("POST", "/cgi-bin/media/upload", self._upload),
            ("GET", "/cgi-bin/media/get", self._media_get),
            ("POST", "/cgi-bin/menu/create", self._menu),
            ("GET", "/sns/oauth2/access_token", self._oauth_token),
            ("GET", "/connect/oauth2/authorize", self._authorize),
        ):
            app.router.add_route(method, path, handler)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler) -> web.StreamResponse:
        # A media upload is multipart: its handler reads the stream, so it is not read here.
        raw = b"" if request.content_type == "multipart/form-data" else await request.read()
        try:
            body = loads_json(raw) if raw else None
        except BadJson:
            return _error(47001)  # "data format error"
        path = _wechat_path(request.path)
        self.calls.append(Call(request.method, path, dict(request.query), body, raw))
        request[SENT_JSON] = body
        failures = self._failures.get(path)
        if failures:
            return _error(failures.popleft())
        return await handler(request)

    def _refused_token(self, request: web.Request) -> int:
        token = request.query.get("access_token", "")
        return self._tokens.get(token, 40001)

    async def _token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("grant_type") != "client_credential" or query.get("appid") != self.appid:
            return _error(40013)
        if query.get("secret") != self.secret:
            return _error(40125)
        token = secrets.token_urlsafe(48)
        self._tokens[token] = 0
        return web.json_response({"access_token": token, "expires_in": TOKEN_TTL_S})

    async def _send(self, request: web.Request) -> web.Response:
        if refused := self._refused_token(request):
            return _error(refused)
        openid = (request[SENT_JSON] or {}).get("touser", "")
        if errcode := self._refusing.get(openid):
            return _error(errcode)
        if request.path.endswith("/template/send"):
            return _ok(msgid=len(self.calls))
        body = request[SENT_JSON] or {}
        if body.get("msgtype") == "image" and (body.get("image") or {}).get("media_id") not in self.media:
            return _error(40007)  # invalid media_id
        return _ok()

    async def _qrcode(self, request: web.Request) -> web.Response:
        if refused := self._refused_token(request):
            return _error(refused)
        body = request[SENT_JSON] or {}
        scene = body.get("action_info", {}).get("scene", {}).get("scene_str", "")
        ticket = "gQ" + secrets.token_urlsafe(24)
        # WeChat gives a permanent code's scene the same ticket every time.
        if body.get("action_name") == "QR_LIMIT_STR_SCENE":
            ticket = next((known for known, named in self.qr_scenes.items() if named == scene), ticket)
        self.qr_scenes[ticket] = scene
        self.qr_urls[ticket] = f"http://weixin.qq.com/q/{ticket[2:24]}"
        answer: dict[str, Any] = {"ticket": ticket, "url": self.qr_urls[ticket]}
        if body.get("action_name") == "QR_STR_SCENE":
            answer["expire_seconds"] = body.get("expire_seconds", 60)
        return web.json_response(answer)

    async def _showqrcode(self, request: web.Request) -> web.Response:
        ticket = request.query.get("ticket", "")
        if ticket not in self.qr_urls:
            raise web.HTTPNotFound()
        return web.Response(body=qr_png(self.qr_urls[ticket]), content_type="image/png")

    async def _upload(self, request: web.Request) -> web.Response:
        """Temporary media: a multipart form with the file in `media`, `type` in the query."""
        if refused := self._refused_token(request):
            return _error(refused)
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "thumb"):
            return _error(40004)  # invalid media type
        form = await request.post()
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return _error(41005)  # media data missing
        data = media.file.read()
        if kind == "image" and not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8")):
            return _error(40005)  # invalid file type
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = (kind, data)
        return web.json_response({"type": kind, "media_id": media_id, "created_at": len(self.calls)})

    async def _media_get(self, request: web.Request) -> web.Response:
        """The sandbox shows uploaded images from here (real WeChat wants an access token)."""
        found = self.media.get(request.query.get("media_id", ""))
        if found is None or found[0] != "image":
            return _error(40007)
        data = found[1]
        return web.Response(body=data, content_type="image/png" if data.startswith(b"\x89PNG") else "image/jpeg")

    async def _menu(self, request: web.Request) -> web.Response:
        if refused := self._refused_token(request):
            return _error(refused)
        buttons = (request[SENT_JSON] or {}).get("button") or []
        if not 1 <= len(buttons) <= MENU_MAX_BUTTONS:
            return _error(40016)
        for button in buttons:
            if len(button.get("name", "").encode()) > 16:
                return _error(40018)
            if "sub_button" in button and not 1 <= len(button["sub_button"]) <= MENU_MAX_SUB_BUTTONS:
                return _error(40023)
        self.menu = request[SENT_JSON]
        return _ok()

    async def _authorize(self, request: web.Request) -> web.Response:
        """The sandbox stand-in for WeChat's OAuth page: the user is `openid` (a sandbox hint) or the default."""
        query = request.query
        if query.get("appid") != self.appid or query.get("scope") != "snsapi_base" or not query.get("redirect_uri"):
            raise web.HTTPBadRequest(text="appid, redirect_uri and scope=snsapi_base are required")
        if not self._registered(query["redirect_uri"]):  # WeChat's own page says "redirect_uri 参数错误"
            raise web.HTTPBadRequest(text="redirect_uri is not on the account's registered domain (10003)")
        code = secrets.token_urlsafe(16)
        self._codes[code] = query.get("openid") or self.default_openid
        raise web.HTTPFound(_with_query(query["redirect_uri"], code=code, state=query.get("state", "")))

    def _registered(self, redirect_uri: str) -> bool:
        try:
            return str(URL(redirect_uri).origin()) == self.oauth_origin
        except ValueError:  # a relative URL has no origin
            return False

    async def _oauth_token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("appid") != self.appid or query.get("secret") != self.secret:
            return _error(40125)
        code = query.get("code", "")
        if code not in self._codes:
            return _error(40029)
        openid = self._codes[code]
        if openid is None:
            return _error(40163)
        self._codes[code] = None
        return web.json_response({"access_token": secrets.token_urlsafe(32), "expires_in": 7200,
                                  "refresh_token": secrets.token_urlsafe(32), "openid": openid, "scope": "snsapi_base"})


def qr_png(content: str) -> bytes:
    """The image showqrcode answers for a ticket: a QR code of the ticket's URL, drawn by segno."""
    out = io.BytesIO()
    segno.make_qr(content, error="m").save(out, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return out.getvalue()


def _wechat_path(path: str) -> str:
    """`/sandbox/wechat/cgi-bin/token` -> `/cgi-bin/token`, wherever the fake is mounted."""
    for root in WECHAT_ROOTS:
        at = path.find(root)
        if at >= 0:
            return path[at:]
    return path


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- the other direction: what WeChat POSTs to /wechat ------------------------------------------


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _aes(account: WeChatAccount):
    key = base64.b64decode(account.aes_key + "=")
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(account: WeChatAccount, xml: str) -> str:
    """WeChat's message encryption: 16 random bytes, the length (network order), the message and
    the appid, padded PKCS#7 to 32 bytes, AES-256-CBC with the key's first 16 bytes as IV."""
    message = xml.encode()
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + account.appid.encode()
    pad = 32 - len(plain) % 32
    encryptor = _aes(account).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def decrypt(account: WeChatAccount, text: str) -> str:
    decryptor = _aes(account).decryptor()
    plain = decryptor.update(base64.b64decode(text)) + decryptor.finalize()
    plain = plain[:-plain[-1]]
    (length,) = struct.unpack(">I", plain[16:20])
    if plain[20 + length:].decode() != account.appid:
        raise ValueError("the reply was encrypted for another appid")
    return plain[20:20 + length].decode()


def text_message(openid: str, text: str, msg_id: int, create_time: int, to: str = "gh_xinyi") -> str:
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{escape(text)}</Content><MsgId>{msg_id}</MsgId></xml>")


def event_message(openid: str, event: str, create_time: int, key: str = "", to: str = "gh_xinyi") -> str:
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><EventKey>{escape(key)}</EventKey></xml>")


def push(account: WeChatAccount, xml: str, now: int, *, mode: str = "safe",
         nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat sends to /wechat in `mode` plain, compatible or safe."""
    timestamp, nonce = str(now), nonce or str(secrets.randbelow(10**10))
    query = {"signature": signature(account.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if mode == "plain":
        return query, xml.encode()
    encrypted = encrypt(account, xml)
    query.update(encrypt_type="aes", msg_signature=signature(account.token, timestamp, nonce, encrypted))
    envelope = f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
    if mode == "compatible":
        return query, xml.replace("</xml>", envelope + "</xml>").encode()
    return query, f"<xml><ToUserName><![CDATA[gh_xinyi]]></ToUserName>{envelope}</xml>".encode()


def read_reply(account: WeChatAccount, body: bytes) -> dict[str, str] | None:
    """The fields of a passive reply, decrypted and its signature checked; None for "success" or empty."""
    if body in (b"", b"success"):
        return None
    fields = {child.tag: child.text or "" for child in SafeXml.fromstring(body, forbid_dtd=True)}
    if "Encrypt" in fields:
        expected = signature(account.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        if fields["MsgSignature"] != expected:
            raise ValueError("the reply's MsgSignature does not match")
        fields = {child.tag: child.text or "" for child in SafeXml.fromstring(decrypt(account, fields["Encrypt"]))}
    return fields
