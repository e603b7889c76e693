"""`/wechat`: where the WeChat servers knock (DESIGN §4.2), in layers:

    verify -> decrypt -> parse -> dedupe -> route -> reply -> encrypt

`Envelope` speaks the protocol (signatures, AES, XML, both ways) and knows no HTTP and no
database; `WeChatWebhook` takes a parsed message through dedupe, the user's turn, the
responder and the deadline, and knows no XML; the two aiohttp handlers at the end only
move bytes. WeChat waits 5 s, retries 3 times, then shows the user "该公众号暂时无法提供服务":
so a reply not ready within REPLY_DEADLINE_S is answered "success" at once and sent later
as customer-service messages.
"""
from __future__ import annotations

import asyncio
import binascii
import hmac
import logging
import re
import secrets
import struct
import traceback
import unicodedata
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Mapping
from xml.etree.ElementTree import ParseError

import aiohttp
import defusedxml.ElementTree as SafeXml
from aiohttp import web
from defusedxml import DefusedXmlException
from prometheus_client import Counter
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.replies import TextReply
from wechatpy.utils import WeChatSigner

from billing.clock import Clock
from billing.core import Core
from billing.members import member_by_openid
from billing.pii import mask_numbers
from billing.validate import printable_ascii, whole_number
from bot import wechat_dedupe as ledger
from bot.hospital_api import CORE
from bot.sandbox.fake_wechat_api import FakeWeChat
from bot.wechat_api import BUSY, SANDBOX_PATH, WeChatAccount, WeChatApi, WeChatApiError
from bot.wechat_dedupe import UserLocks
from handlers.engine import image_reply
from handlers.i18n import SOURCE_LOCALE, t
from handlers.messages import Incoming, Replies, Responder

log = logging.getLogger(__name__)
PAST_DEADLINE = Counter("xinyi_wechat_past_deadline", "Requests of WeChat answered \"success\" at the reply deadline, "
                        "their message's replies left to go as customer-service messages")

MAX_BODY_BYTES = 256 * 1024  # a text message is at most a few kB; compatible mode triples it
MAX_SKEW_S = 300
REPLY_DEADLINE_S = 4.0
DEFER_WAIT_S = 0.5  # past the deadline, how long an answer waits to record that its replies go later
FLUSH_WAIT_S = 2.0  # how long further replies wait for the passive one to leave first
POLL_S = 0.1
SEND_ATTEMPTS = 3
SEND_RETRY_S = 1.0
PRUNE_EVERY_S = 3600
SEND_UNSENT_EVERY_S = 60
ROUTED_EVENTS = frozenset({"subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW"})
SORRY = "抱歉，刚才系统出了点问题，您的消息没有处理成功。请稍后再发一次；需要帮助请回复“帮助”。"

XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class BadRequest(Exception):
    """Input refused before anything changed: `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- verify, decrypt, parse; and back: reply, encrypt ----------------------------------------


@dataclass(frozen=True)
class Received:
    incoming: Incoming
    dedupe_key: str | None  # None: an event the conversations do not take (LOCATION, TEMPLATESENDJOBFINISH...)
    account_id: str  # ToUserName, our gh_ id: the sender of the reply
    encrypted: bool


class Envelope:
    def __init__(self, account: WeChatAccount, clock: Clock) -> None:
        self.account = account
        self.clock = clock
        self.crypto = WeChatCrypto(account.token, account.aes_key, account.appid) if account.aes_key else None

    def verify_server(self, query: Mapping[str, str]) -> str:
        """The GET WeChat sends when the URL is configured: the echostr back, in every mode."""
        timestamp, nonce = _timestamp_nonce(query)
        echostr = query.get("echostr", "")
        if not 1 <= len(echostr) <= 128:
            raise BadRequest(400, "echostr is required")
        self._check(query.get("signature", ""), "signature", timestamp, nonce)
        return echostr

    def open(self, query: Mapping[str, str], body: bytes) -> Received:
        timestamp, nonce = _timestamp_nonce(query)
        encrypted = query.get("encrypt_type", "raw") == "aes"
        if self.crypto is None:
            if encrypted:
                raise BadRequest(400, "encrypt_type=aes, but this account has no EncodingAESKey")
            self._check(query.get("signature", ""), "signature", timestamp, nonce)
            return self._received(parse_xml(body), encrypted=False)
        if not encrypted:
            raise BadRequest(403, "this account is in safe mode: plaintext messages are refused")
        ciphertext = parse_xml(body).get("Encrypt", "")
        if not ciphertext:
            raise BadRequest(400, "Encrypt is required in safe mode")
        self._check(query.get("msg_signature", ""), "msg_signature", timestamp, nonce, ciphertext)
        try:
            plain = PrpCrypto(self.crypto.key).decrypt(ciphertext, self.account.appid)
        except InvalidAppIdException:
            raise BadRequest(400, "the message was encrypted for another appid") from None
        except (ValueError, TypeError, IndexError, struct.error, binascii.Error, UnicodeDecodeError):
            raise BadRequest(400, "Encrypt does not decrypt with this account's EncodingAESKey") from None
        return self._received(parse_xml(plain.encode()), encrypted=True)

    def seal(self, received: Received, text: str | None) -> bytes:
        """The passive reply, encrypted when the message was; "success" when there is none yet."""
        if text is None:
            return b"success"
        now = str(int(self.clock.now().timestamp()))
        # wechatpy writes the content into CDATA as it is: split any "]]>" across two sections.
        content = XML_FORBIDDEN.sub("", text).replace("]]>", "]]]]><![CDATA[>")
        xml = TextReply(source=received.account_id, target=received.incoming.openid, content=content, time=now).render()
        if received.encrypted and self.crypto is not None:
            xml = self.crypto.encrypt_message(xml, nonce=str(secrets.randbelow(10**10)), timestamp=now)
        return xml.encode()

    def _check(self, given: str, name: str, timestamp: str, nonce: str, *extra: str) -> None:
        signer = WeChatSigner()
        signer.add_data(self.account.token, timestamp, nonce, *extra)
        if not (printable_ascii(given, 64) and hmac.compare_digest(signer.signature.encode(), given.lower().encode())):
            raise BadRequest(403, f"{name} does not match")
        if abs(self.clock.now().timestamp() - int(timestamp)) > MAX_SKEW_S:
            raise BadRequest(403, f"timestamp is more than {MAX_SKEW_S} s away from the server's clock")

    def _received(self, fields: dict[str, str], *, encrypted: bool) -> Received:
        openid, kind, created = fields.get("FromUserName", ""), fields.get("MsgType", ""), fields.get("CreateTime", "")
        if not (0 < len(openid) <= 64 and kind and whole_number(created, 12) is not None):
            raise BadRequest(400, "FromUserName, MsgType and CreateTime are required")
        account_id = fields.get("ToUserName", "")
        if kind == "event":
            event, key = fields.get("Event", ""), fields.get("EventKey", "")
            if event == "subscribe" and key.startswith("qrscene_"):
                key = key[len("qrscene_"):]
            incoming = Incoming(openid=openid, kind="event", event=event, event_key=key)
            dedupe_key = f"event:{openid}:{created}:{event}" if event in ROUTED_EVENTS else None
            return Received(incoming, dedupe_key, account_id, encrypted)
        msg_id = fields.get("MsgId", "")
        if whole_number(msg_id, 32) is None:
            raise BadRequest(400, "MsgId is required")
        said = fields.get("Recognition", "") if kind == "voice" else fields.get("Content", "")
        # Full-width digits and letters, as many older users type them, become ASCII.
        text = unicodedata.normalize("NFKC", said).strip()
        return Received(Incoming(openid=openid, kind=kind, text=text, msg_id=msg_id), f"msg:{msg_id}", account_id, encrypted)


def _timestamp_nonce(query: Mapping[str, str]) -> tuple[str, str]:
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if whole_number(timestamp, 12) is None or not printable_ascii(nonce, 64):
        raise BadRequest(400, "timestamp and nonce are required")
    return timestamp, nonce


def parse_xml(raw: bytes) -> dict[str, str]:
    """The children of `<xml>` as text. No DTD, so no entities, no external references."""
    try:
        root = SafeXml.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError):
        raise BadRequest(400, "the body is not acceptable XML (well-formed, no DTD)") from None
    if root.tag != "xml":
        raise BadRequest(400, "the body's root element must be <xml>")
    return {child.tag: child.text or "" for child in root}


# -- dedupe, the user's turn, the responder, the deadline --------------------------------------


@dataclass
class Pending:
    """A message being processed here: its replies when they can still be the passive answer
    (None when they go as customer-service messages, or processing failed), and whether the
    passive reply has left (further replies wait for it)."""

    replies: asyncio.Future[list[str] | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    flushed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Taking:
    """A message being taken in: its Pending once recorded (None when its key was seen before),
    and whether its request stopped waiting for that."""

    taken: asyncio.Future[Pending | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    given_up: bool = False


@dataclass(frozen=True)
class Answer:
    text: str | None  # None: "success" (nothing, or later as customer-service messages)
    on_sent: Callable[[], None] = lambda: None


class WeChatWebhook:
    def __init__(self, core: Core, responder: Responder, api: WeChatApi, *,
                 reply_deadline_s: float = REPLY_DEADLINE_S, locks: UserLocks | None = None) -> None:
        self.core = core
        self.responder = responder
        self.api = api
        self.reply_deadline_s = reply_deadline_s
        self.locks = locks or UserLocks(core.db, core.clock)
        self._pending: dict[str, Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def receive(self, received: Received, deadline: float) -> Answer:
        """The passive answer to one message, by `deadline` (the event loop's clock). The message
        is taken in by a task of its own: while the database cannot record it (another process
        holds SQLite's write lock), the request answers "success" at the deadline, and the
        message is recorded and processed when it can be, its replies sent later."""
        if received.dedupe_key is None:
            return Answer(None)
        key, openid = received.dedupe_key, received.incoming.openid
        turn = self.locks.reserve(openid)  # before any await: arrival order
        taking = Taking()
        self._spawn(self._take_in(received.incoming, key, turn, taking))
        try:
            async with asyncio.timeout_at(deadline):  # no task of its own, as wait_for has: this is every message's path
                pending = await asyncio.shield(taking.taken)
        except TimeoutError:
            taking.given_up = True
            PAST_DEADLINE.inc()
            log.warning("wechat: %s not recorded by the deadline (the database is busy): its replies go later", key)
            return Answer(None)
        except asyncio.CancelledError:  # WeChat hung up: the message is still taken in, its replies go later
            taking.given_up = True
            raise
        if pending is None:
            log.info("wechat: %s again (a retry): the first answer stands", key)
            return await self._await_replies(key, openid, deadline, self._pending.get(key))
        answer = await self._await_replies(key, openid, deadline, pending)
        return Answer(answer.text, pending.flushed.set)

    async def _take_in(self, incoming: Incoming, key: str, turn: ledger.Turn, taking: Taking) -> None:
        """Record the message and, the first time its key is seen, process it. Its request has
        the Pending through `taking` while it still waits, else the replies are deferred first."""
        try:
            claimed = await ledger.claim(self.core.db, key, incoming.openid, self.core.clock.now(), turn)
        except asyncio.CancelledError:
            turn.cancel()
            taking.taken.cancel()
            raise
        except Exception as exc:  # the request raises it; a request that gave up leaves it to WeChat's retries
            turn.cancel()
            if taking.given_up:
                log.error("wechat: recording %s failed after its request gave up: %s", key, type(exc).__name__)
            else:
                taking.taken.set_exception(exc)
            return
        if not claimed:
            turn.cancel()
            taking.taken.set_result(None)
            return
        pending = self._pending[key] = Pending()
        if taking.given_up:
            await ledger.defer(self.core.db, key)  # nobody waits: the replies are to go as customer-service messages
        else:
            taking.taken.set_result(pending)
        await self._process(incoming, key, turn, pending)

    async def close(self) -> None:
        """On shutdown: every message taken in is processed and its late replies sent."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.locks.close()

    def _spawn(self, work) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_replies(self, key: str, openid: str, deadline: float, pending: Pending | None) -> Answer:
        loop = asyncio.get_running_loop()
        replies: list[str] | None = None
        if pending is not None:
            try:
                replies = await asyncio.wait_for(asyncio.shield(pending.replies), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                pass
        else:  # processed by another worker, or already finished here
            while loop.time() < deadline:
                status, stored = await ledger.lookup(self.core.db, key)
                if status == "done":
                    replies = stored
                    break
                if status != "processing":
                    return Answer(None)
                await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
        if replies is None:
            PAST_DEADLINE.inc()
            deferring = asyncio.ensure_future(ledger.defer(self.core.db, key))
            try:
                replies = await asyncio.wait_for(asyncio.shield(deferring), DEFER_WAIT_S)
            except asyncio.TimeoutError:  # the database is busy: the answer cannot wait for it
                self._spawn(self._deferred_late(deferring, openid, key, pending))
                return Answer(None)
        return Answer(replies[0] if replies else None)

    async def _deferred_late(self, deferring: asyncio.Future[list[str] | None], openid: str, key: str,
                             pending: Pending | None) -> None:
        """A deferral that outlived its request: replies ready meanwhile were stored as the passive
        answer, which never went, so their first goes as a customer-service message; the worker
        that made them sends the rest (here, once the first has gone)."""
        replies = await deferring
        if replies:
            await self._send_later(openid, key, replies[:1])
        if pending is not None:
            pending.flushed.set()

    async def _process(self, incoming: Incoming, key: str, turn: ledger.Turn, pending: Pending) -> None:
        try:
            async with turn:
                answer = await self._respond(incoming)
                replies = answer.replies
                passive = await ledger.settle(self.core.db, key, answer, turn, self.core.clock.now())
                pending.replies.set_result(replies if passive else None)
                if passive:
                    if len(replies) > 1:
                        try:
                            await asyncio.wait_for(pending.flushed.wait(), FLUSH_WAIT_S)
                        except asyncio.TimeoutError:
                            pass
                        await self._send_later(incoming.openid, key, replies[1:])
                else:
                    await self._send_later(incoming.openid, key, replies)
        except Exception as exc:  # the database failed under us: the waiting request answers "success"
            log.error("wechat: processing %s failed: %s\n%s", key, type(exc).__name__, _frames(exc))
            if not pending.replies.done():
                pending.replies.set_result(None)
        finally:
            self._pending.pop(key, None)

    async def _respond(self, incoming: Incoming) -> Replies:
        try:
            answer = await self.responder(self.core, incoming)
        except Exception as exc:  # the one error handler: logged without the user's words, the user told what to do
            log.error("wechat: the responder failed on a %s message: %s\n%s", incoming.kind, type(exc).__name__, _frames(exc))
            return Replies([t(SORRY, await self._locale(incoming.openid))])
        return Replies([mask_numbers(reply) for reply in answer.replies if reply and reply.strip()], answer.record)

    async def _locale(self, openid: str) -> str:
        try:
            member = await self.core.db.run(member_by_openid, openid)
        except Exception:  # the apology must not fail too
            return SOURCE_LOCALE
        return member.locale if member else SOURCE_LOCALE

    async def send_unsent(self) -> int:
        """Late replies left unsent by a worker that died (see wechat_dedupe): sent now, out of their
        user's turn, minutes late. Returns how many messages' replies were taken."""
        unsent = await ledger.take_unsent(self.core.db, self.core.clock.now())
        for message in unsent:
            log.warning("wechat: %s: sending the late replies its worker left unsent", message.key)
            await self._send_later(message.openid, message.key, message.texts)
        return len(unsent)

    async def _send_later(self, openid: str, key: str, texts: list[str]) -> None:
        """Customer-service messages, in order, then the ledger records them sent. A reply given
        up on is logged, and the ones after it are not tried."""
        for number, text in enumerate(texts, 1):
            if not await self._send_text(openid, text, f"reply {number}/{len(texts)} to {key}"):
                break
        await ledger.mark_sent(self.core.db, key)

    async def _send_text(self, openid: str, text: str, what: str) -> bool:
        """One customer-service message (text, or a QR image: see handlers.engine.image_reply);
        a transient failure is retried a few times."""
        scene = image_reply(text)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                if scene is None:
                    await self.api.send_text(openid, text)
                else:
                    await self.api.send_qr_image(openid, scene)
                return True
            except (WeChatApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                transient = not isinstance(exc, WeChatApiError) or exc.errcode == BUSY
                if not transient or attempt == SEND_ATTEMPTS:
                    log.warning("wechat: %s not delivered: %s", what, exc)
                    return False
            await asyncio.sleep(SEND_RETRY_S * attempt)


def _frames(exc: BaseException) -> str:
    """Where it failed, without the exception's message: that may quote what the user typed."""
    return "".join(traceback.format_tb(exc.__traceback__))


# -- the transport ------------------------------------------------------------------------------

WEBHOOK = web.AppKey("wechat_webhook", WeChatWebhook)
ENVELOPE = web.AppKey("wechat_envelope", Envelope)
WECHAT_API = web.AppKey("wechat_api", WeChatApi)
FAKE_WECHAT = web.AppKey("fake_wechat", FakeWeChat)


async def verify_endpoint(request: web.Request) -> web.Response:
    try:
        return web.Response(text=request.app[ENVELOPE].verify_server(request.query))
    except BadRequest as exc:
        return _refuse(request, exc)


async def message_endpoint(request: web.Request) -> web.StreamResponse:
    webhook, envelope = request.app[WEBHOOK], request.app[ENVELOPE]
    deadline = asyncio.get_running_loop().time() + webhook.reply_deadline_s
    try:
        received = envelope.open(request.query, await _read_body(request))
    except BadRequest as exc:
        return _refuse(request, exc)
    answer = await webhook.receive(received, deadline)
    body = envelope.seal(received, answer.text)
    response = web.Response(body=body, content_type="text/plain" if answer.text is None else "application/xml")
    await response.prepare(request)
    await response.write_eof()
    answer.on_sent()
    return response


async def _read_body(request: web.Request) -> bytes:
    too_large = BadRequest(413, f"the body is over {MAX_BODY_BYTES} bytes")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def _refuse(request: web.Request, exc: BadRequest) -> web.Response:
    log.warning("wechat: %s %s refused with %s: %s", request.method, request.path, exc.status, exc.message)
    return web.Response(status=exc.status, text=exc.message)


def setup(app: web.Application, responder: Responder, api: WeChatApi, *,
          reply_deadline_s: float = REPLY_DEADLINE_S) -> None:
    """Routes `/wechat` for the account of `api` on an app holding the core; the app closes `api`.
    For the sandbox's account, the fake WeChat API is mounted at /sandbox/wechat."""
    core = app[CORE]
    app[ENVELOPE] = Envelope(api.account, core.clock)
    app[WECHAT_API] = api
    app[WEBHOOK] = WeChatWebhook(core, responder, api, reply_deadline_s=reply_deadline_s)
    app.router.add_get("/wechat", verify_endpoint)
    app.router.add_post("/wechat", message_endpoint)
    if api.account.is_sandbox:
        app[FAKE_WECHAT] = FakeWeChat.for_account(api.account)
        app.add_subapp(SANDBOX_PATH, app[FAKE_WECHAT].app())
    app.cleanup_ctx.append(_lifetime)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    core, webhook = app[CORE], app[WEBHOOK]
    upkeep = [asyncio.create_task(_every(PRUNE_EVERY_S, "pruning the message ledger", lambda: _prune(core))),
              asyncio.create_task(_every(SEND_UNSENT_EVERY_S, "sending unsent late replies", webhook.send_unsent))]
    yield
    for task in upkeep:
        task.cancel()
    await asyncio.wait(upkeep)
    await webhook.close()
    await app[WECHAT_API].close()


async def _every(seconds: float, what: str, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception as exc:  # the next round tries again
            log.warning("wechat: %s failed: %s", what, type(exc).__name__)


async def _prune(core: Core) -> None:
    pruned = await ledger.prune(core.db, core.clock.now())
    if pruned:
        log.info("wechat: %s old messages pruned from the ledger", pruned)
