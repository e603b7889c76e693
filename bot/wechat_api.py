"""The WeChat official-account API, async on aiohttp (wechatpy's client is synchronous).

The access_token is shared through the database: the worker that finds it missing or near
expiry takes a short refresh lease and fetches it; the others wait and read the new one,
so N workers fetch once. A call answered 40001/42001/40014 invalidates exactly the token
it used (compare-and-set) and is retried once with a fresh one.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping
from urllib.parse import quote, urlencode

import aiohttp
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from billing.clock import Clock, SystemClock
from storage.db import Database
from storage.models import WeChatToken

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.weixin.qq.com"
MP_BASE = "https://mp.weixin.qq.com"  # showqrcode lives here, not on the API host
OPEN_BASE = "https://open.weixin.qq.com"  # the OAuth authorize page
SANDBOX_PATH = "/sandbox/wechat"
# The sandbox account's EncodingAESKey (43 characters): base64 of "xinyi sandbox EncodingAESKey 32B".
SANDBOX_AES_KEY = "eGlueWkgc2FuZGJveCBFbmNvZGluZ0FFU0tleSAzMkI"

BUSY = -1  # WeChat's "system busy, try again"; also used here for an answer that is not WeChat JSON
TOKEN_REFUSED = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
# The user unfollowed (43004), refused our messages (43101), or is not a user of this account (40003).
UNREACHABLE = frozenset({40003, 43004, 43101})
OUT_OF_WINDOW = 45015  # customer-service messages only reach users who wrote within 48 hours

EARLY_REFRESH = timedelta(minutes=5)  # WeChat keeps the old token valid 5 minutes after a refresh
REFRESH_LEASE = timedelta(seconds=15)
REFRESH_WAIT_S = 20.0
TIMEOUT_S = 10.0

QR_MAX_EXPIRE_S = 30 * 24 * 3600
IMAGE_MAX_BYTES = 10 * 1024 * 1024  # media/upload takes images up to 10 MB (PNG, JPEG)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
QR_SCENE_MAX_BYTES = 64
MENU_MAX_BUTTONS = 3
MENU_MAX_SUB_BUTTONS = 5
MENU_NAME_MAX_BYTES = 16
MENU_SUB_NAME_MAX_BYTES = 60
MENU_KEY_MAX_BYTES = 128
MENU_URL_MAX_BYTES = 1024
# What each button type must carry besides its name.
MENU_BUTTON_FIELDS = {
    "click": "key", "view": "url", "miniprogram": "pagepath", "scancode_push": "key", "scancode_waitmsg": "key",
    "pic_sysphoto": "key", "pic_photo_or_album": "key", "pic_weixin": "key", "location_select": "key",
    "media_id": "media_id", "article_id": "article_id", "article_view_limited": "article_id",
}


@dataclass(frozen=True)
class WeChatAccount:
    """An official account: the webhook's token and EncodingAESKey, the API's appid and secret."""

    appid: str
    token: str = field(repr=False)
    secret: str = field(repr=False)
    aes_key: str | None = field(default=None, repr=False)  # set: safe (or compatible) mode, plaintext refused
    api_base: str = DEFAULT_API_BASE
    mp_base: str = MP_BASE
    open_base: str = OPEN_BASE

    @classmethod
    def sandbox(cls, public_url: str) -> WeChatAccount:
        """The account the sandbox runs with: every WeChat host is the fake under /sandbox/wechat,
        and `/wechat` runs in safe mode, as production accounts should."""
        base = public_url.rstrip("/") + SANDBOX_PATH
        return cls(appid="wx00000000sandbox", token="xinyi-sandbox-token", secret="xinyi-sandbox-secret",
                   aes_key=SANDBOX_AES_KEY, api_base=base, mp_base=base, open_base=base)

    @property
    def is_sandbox(self) -> bool:
        return self.api_base.endswith(SANDBOX_PATH)

    @classmethod
    def from_settings(cls, settings: Any) -> WeChatAccount:
        if not settings.wechat_appid:
            return cls.sandbox(settings.public_url)
        base = settings.wechat_api_base.rstrip("/")
        # A base other than WeChat's own (a fake, a proxy) serves the QR and OAuth pages too.
        official = base == DEFAULT_API_BASE
        return cls(appid=settings.wechat_appid, token=settings.wechat_token, secret=settings.wechat_secret,
                   aes_key=settings.wechat_aes_key, api_base=base,
                   mp_base=MP_BASE if official else base, open_base=OPEN_BASE if official else base)


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"{path}: errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path

    @property
    def unreachable(self) -> bool:
        return self.errcode in UNREACHABLE


@dataclass(frozen=True)
class QrCode:
    ticket: str
    url: str  # what the QR image encodes
    image_url: str
    expire_seconds: int | None  # None: permanent


class WeChatApi:
    """Give it a session to share one, or it opens its own on first use; `close()` closes its own."""

    def __init__(self, db: Database, account: WeChatAccount, *, clock: Clock | None = None,
                 session: aiohttp.ClientSession | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.db = db
        self.account = account
        self.clock = clock or SystemClock()
        self._given_session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._holder = uuid.uuid4().hex
        self._cached: tuple[str, datetime] | None = None
        self._refreshing = asyncio.Lock()
        self._row_exists = False

    async def close(self) -> None:
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    # -- messages --------------------------------------------------------------------------

    async def send_text(self, openid: str, text: str) -> None:
        """A customer-service text message (within 48 hours of the user's last message)."""
        await self._call("POST", "/cgi-bin/message/custom/send",
                         body={"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_template(self, openid: str, template_id: str, data: Mapping[str, str], url: str | None = None) -> int:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id,
                                "data": {name: {"value": value} for name, value in data.items()}}
        if url:
            body["url"] = url
        answer = await self._call("POST", "/cgi-bin/message/template/send", body=body)
        return int(answer.get("msgid", 0))

    async def send_image(self, openid: str, media_id: str) -> None:
        """A customer-service image message: the image uploaded first as temporary media."""
        await self._call("POST", "/cgi-bin/message/custom/send",
                         body={"touser": openid, "msgtype": "image", "image": {"media_id": media_id}})

    async def upload_image(self, filename: str, data: bytes, content_type: str = "image/png") -> str:
        """Temporary media (media/upload, kept 3 days by WeChat): its media_id."""
        if not data or len(data) > IMAGE_MAX_BYTES:
            raise ValueError(f"an image is 1 to {IMAGE_MAX_BYTES} bytes, got {len(data)}")
        for attempt in (1, 2):
            token = await self.access_token()
            form = aiohttp.FormData()
            form.add_field("media", data, filename=filename, content_type=content_type)
            try:
                answer = await self._request("POST", "/cgi-bin/media/upload",
                                             params={"access_token": token, "type": "image"}, form=form)
                return str(answer["media_id"])
            except WeChatApiError as exc:
                if exc.errcode not in TOKEN_REFUSED or attempt == 2:
                    raise
                await self._invalidate(token)
        raise AssertionError("unreachable")

    async def qr_image(self, qr: QrCode) -> tuple[bytes, str]:
        """The image WeChat draws for a ticket (showqrcode, no access token: a JPEG from WeChat,
        a PNG from the sandbox) and its content type."""
        async with self._session().get(qr.image_url) as response:
            data = await response.read()
            status = response.status
        kind = "image/png" if data.startswith(PNG_SIGNATURE) else "image/jpeg" if data.startswith(JPEG_SIGNATURE) else None
        if status != 200 or kind is None:
            raise WeChatApiError(BUSY, f"showqrcode: HTTP {status}, not a PNG or JPEG image", "/cgi-bin/showqrcode")
        return data, kind

    async def send_qr_image(self, openid: str, scene: str) -> None:
        """The permanent QR code of `scene` to `openid` as an image message: create (the same
        ticket for the same scene), fetch its image, upload it, send it."""
        qr = await self.create_qr(scene)
        data, kind = await self.qr_image(qr)
        media_id = await self.upload_image("qr.png" if kind == "image/png" else "qr.jpg", data, kind)
        await self.send_image(openid, media_id)

    # -- QR codes, menu, OAuth -----------------------------------------------------------------

    async def create_qr(self, scene: str, *, expire_seconds: int | None = None) -> QrCode:
        """A parametric QR code: temporary (QR_STR_SCENE, up to 30 days) when `expire_seconds`
        is given, else permanent (QR_LIMIT_STR_SCENE, 100,000 per account)."""
        if not scene or len(scene.encode()) > QR_SCENE_MAX_BYTES:
            raise ValueError(f"a QR scene is 1 to {QR_SCENE_MAX_BYTES} bytes, got {len(scene.encode())}")
        body: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene}}}
        if expire_seconds is None:
            body["action_name"] = "QR_LIMIT_STR_SCENE"
        elif 1 <= expire_seconds <= QR_MAX_EXPIRE_S:
            body.update(action_name="QR_STR_SCENE", expire_seconds=expire_seconds)
        else:
            raise ValueError(f"a temporary QR code lives 1 to {QR_MAX_EXPIRE_S} seconds, got {expire_seconds}")
        answer = await self._call("POST", "/cgi-bin/qrcode/create", body=body)
        ticket = answer["ticket"]
        return QrCode(ticket=ticket, url=answer.get("url", ""),
                      image_url=f"{self.account.mp_base}/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}",
                      expire_seconds=answer.get("expire_seconds"))

    async def create_menu(self, menu: Mapping[str, Any]) -> None:
        validate_menu(menu)
        await self._call("POST", "/cgi-bin/menu/create", body=dict(menu))

    def oauth_url(self, redirect_uri: str, state: str = "") -> str:
        """Where an H5 page sends the user to learn their openid silently (snsapi_base).
        WeChat wants the parameters in exactly this order."""
        query = urlencode({"appid": self.account.appid, "redirect_uri": redirect_uri, "response_type": "code",
                           "scope": "snsapi_base", "state": state})
        return f"{self.account.open_base}/connect/oauth2/authorize?{query}#wechat_redirect"

    async def openid_from_code(self, code: str) -> str:
        if not code or len(code) > 128:
            raise ValueError("an OAuth code is 1 to 128 characters")
        path = "/sns/oauth2/access_token"
        answer = await self._request("GET", path, params={
            "appid": self.account.appid, "secret": self.account.secret, "code": code, "grant_type": "authorization_code",
        })
        return str(answer["openid"])

    # -- the access token ----------------------------------------------------------------------

    async def access_token(self) -> str:
        if self._fresh(self._cached):
            return self._cached[0]  # type: ignore[index]
        async with self._refreshing:  # one coroutine per process goes to the database
            if not self._fresh(self._cached):
                self._cached = await self._shared_token()
            return self._cached[0]

    def _fresh(self, token: tuple[str, datetime] | None) -> bool:
        return token is not None and self.clock.now() < token[1] - EARLY_REFRESH

    async def _shared_token(self) -> tuple[str, datetime]:
        await self._ensure_row()
        give_up = asyncio.get_running_loop().time() + REFRESH_WAIT_S
        delay = 0.05
        while True:
            now = self.clock.now()
            async with self.db.transaction() as session:
                row = await session.get(WeChatToken, self.account.appid)
                assert row is not None
                stored = (row.access_token, row.expires_at) if row.access_token and row.expires_at else None
                if self._fresh(stored):
                    return stored  # type: ignore[return-value]
                # The token's staleness is in the condition too: on PostgreSQL a worker that
                # waited on the row lock re-reads it, finds the token just stored, and stands down.
                leased = await session.execute(
                    update(WeChatToken)
                    .where(WeChatToken.appid == self.account.appid,
                           or_(WeChatToken.refresh_until.is_(None), WeChatToken.refresh_until < now),
                           or_(WeChatToken.access_token.is_(None), WeChatToken.expires_at.is_(None),
                               WeChatToken.expires_at <= now + EARLY_REFRESH))
                    .values(refresher=self._holder, refresh_until=now + REFRESH_LEASE)
                )
            if leased.rowcount == 1:
                return await self._refresh()
            if asyncio.get_running_loop().time() > give_up:
                raise WeChatApiError(BUSY, "another worker took the token refresh and has not finished", "/cgi-bin/token")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _refresh(self) -> tuple[str, datetime]:
        mine = (WeChatToken.appid == self.account.appid, WeChatToken.refresher == self._holder)
        try:
            answer = await self._request("GET", "/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.account.appid, "secret": self.account.secret,
            })
        except BaseException:
            async with self.db.transaction() as session:
                await session.execute(update(WeChatToken).where(*mine).values(refresher=None, refresh_until=None))
            raise
        token = str(answer["access_token"])
        expires_at = self.clock.now() + timedelta(seconds=int(answer["expires_in"]))
        async with self.db.transaction() as session:
            await session.execute(update(WeChatToken).where(WeChatToken.appid == self.account.appid)
                                  .values(access_token=token, expires_at=expires_at))
            await session.execute(update(WeChatToken).where(*mine).values(refresher=None, refresh_until=None))
        log.info("wechat: access_token refreshed for %s", self.account.appid)
        return token, expires_at

    async def _invalidate(self, token: str) -> None:
        """Only this token: a newer one another worker stored meanwhile stays."""
        self._cached = None
        async with self.db.transaction() as session:
            await session.execute(update(WeChatToken).where(
                WeChatToken.appid == self.account.appid, WeChatToken.access_token == token).values(expires_at=None))

    async def _ensure_row(self) -> None:
        if self._row_exists:
            return
        try:
            async with self.db.transaction() as session:
                if await session.get(WeChatToken, self.account.appid) is None:
                    session.add(WeChatToken(appid=self.account.appid))
        except IntegrityError:
            pass  # another worker created it between our read and our insert
        self._row_exists = True

    # -- HTTP ----------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An API call with the access token, retried once when WeChat refuses the token."""
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                return await self._request(method, path, params={"access_token": token}, body=body)
            except WeChatApiError as exc:
                if exc.errcode not in TOKEN_REFUSED or attempt == 2:
                    raise
                log.info("wechat: %s refused the access_token (%s); refreshing it once", path, exc.errcode)
                await self._invalidate(token)
        raise AssertionError("unreachable")

    async def _request(self, method: str, path: str, *, params: Mapping[str, str],
                       body: Mapping[str, Any] | None = None, form: aiohttp.FormData | None = None) -> dict[str, Any]:
        # WeChat shows \\uXXXX escapes literally in some places: send UTF-8 as it is.
        data: Any = form if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {} if body is None else {"Content-Type": "application/json; charset=utf-8"}
        async with self._session().request(method, self.account.api_base + path, params=params, data=data,
                                           headers=headers) as response:
            text = await response.text(encoding="utf-8", errors="replace")
            status = response.status
        if status != 200:
            raise WeChatApiError(BUSY, f"HTTP {status}", path)
        try:
            answer = json.loads(text)
        except ValueError:
            raise WeChatApiError(BUSY, "the answer is not JSON", path) from None
        if not isinstance(answer, dict):
            raise WeChatApiError(BUSY, "the answer is not a JSON object", path)
        errcode = int(answer.get("errcode") or 0)
        if errcode:
            raise WeChatApiError(errcode, str(answer.get("errmsg", "")), path)
        return answer

    def _session(self) -> aiohttp.ClientSession:
        if self._given_session is not None:
            return self._given_session
        if self._own_session is None:
            self._own_session = aiohttp.ClientSession(timeout=self._timeout)
        return self._own_session


def validate_menu(menu: Mapping[str, Any]) -> None:
    """WeChat's limits, checked before the call: 1 to 3 buttons, each with 1 to 5 sub-buttons
    or an action; names up to 16 bytes (sub-buttons 60); keys 128 bytes; URLs 1024 bytes."""
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MENU_MAX_BUTTONS:
        raise ValueError(f"a menu has 1 to {MENU_MAX_BUTTONS} buttons")
    for button in buttons:
        _check_name(button, MENU_NAME_MAX_BYTES)
        if "sub_button" in button:
            subs = button["sub_button"]
            if not isinstance(subs, list) or not 1 <= len(subs) <= MENU_MAX_SUB_BUTTONS:
                raise ValueError(f"button {button['name']!r}: 1 to {MENU_MAX_SUB_BUTTONS} sub-buttons")
            for sub in subs:
                _check_name(sub, MENU_SUB_NAME_MAX_BYTES)
                _check_action(sub)
        else:
            _check_action(button)


def _check_name(button: Any, max_bytes: int) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("name"), str) or not button["name"]:
        raise ValueError("every button needs a name")
    if len(button["name"].encode()) > max_bytes:
        raise ValueError(f"button name {button['name']!r} is over {max_bytes} bytes")


def _check_action(button: dict[str, Any]) -> None:
    kind = button.get("type")
    if kind not in MENU_BUTTON_FIELDS:
        raise ValueError(f"button {button['name']!r}: unknown type {kind!r}")
    required = MENU_BUTTON_FIELDS[kind]
    value = button.get(required)
    if not isinstance(value, str) or not value:
        raise ValueError(f"button {button['name']!r} ({kind}) needs {required}")
    if required == "key" and len(value.encode()) > MENU_KEY_MAX_BYTES:
        raise ValueError(f"button {button['name']!r}: key over {MENU_KEY_MAX_BYTES} bytes")
    if kind == "view" and len(value.encode()) > MENU_URL_MAX_BYTES:
        raise ValueError(f"button {button['name']!r}: url over {MENU_URL_MAX_BYTES} bytes")
