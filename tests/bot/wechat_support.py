"""Shared by the WeChat tests: the sample account, a recording responder, the fake WeChat
on loopback, and a second database connection standing for another worker process."""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from billing.core import Core
from bot.hospital_api import CORE
from bot.sandbox.fake_wechat_api import FakeWeChat, push, read_reply
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechat_webhook import setup
from handlers.messages import Replies, Incoming
from storage.db import Database

# The sample credentials of WeChat's message-encryption documentation (token as in its Python sample).
SAMPLE = WeChatAccount(appid="wx5823bf96d3bd56c7", token="spamtest", secret="sample-app-secret",
                       aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
CUSTOM = "/cgi-bin/message/custom/send"  # where customer-service messages go


async def another_worker_db(db: Database) -> Database:
    """A second engine on the same database (file or schema): what another process would have."""
    if db.is_sqlite:
        return Database(db.url)
    async with db.transaction() as session:
        schema = await session.scalar(text("SELECT current_schema()"))
    return Database(db.url, connect_args={"server_settings": {"search_path": schema}})


def on_fake(account: WeChatAccount, fake_server: TestServer) -> WeChatAccount:
    base = str(fake_server.make_url("")).rstrip("/")
    return dataclasses.replace(account, api_base=base, mp_base=base, open_base=base)


@dataclass
class Recorder:
    """A responder that records each message, how many ran at once, and answers `reply(incoming)`."""

    reply: Callable[[Incoming], list[str]] = lambda incoming: [f"收到：{incoming.text or incoming.event}"]
    delay_s: float = 0.0
    seen: list[Incoming] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0

    async def __call__(self, core: Core, incoming: Incoming) -> Replies:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.seen.append(incoming)
            await asyncio.sleep(self.delay_s)
            return Replies(self.reply(incoming))
        finally:
            self.running -= 1


@dataclass
class Chat:
    """One xinyi worker with `/wechat`, and the fake WeChat it talks to."""

    client: TestClient
    core: Core
    fake: FakeWeChat
    account: WeChatAccount

    def now(self) -> int:
        return int(self.core.clock.now().timestamp())

    async def post(self, xml: str, *, mode: str = "safe", **query_changes: str):
        query, body = push(self.account, xml, self.now(), mode=mode)
        return await self.client.post("/wechat", params={**query, **query_changes}, data=body)

    async def say(self, xml: str, mode: str = "safe") -> dict[str, str] | None:
        response = await self.post(xml, mode=mode)
        assert response.status == 200, await response.text()
        return read_reply(self.account, await response.read())

    def custom_texts(self, openid: str = OPENID) -> list[str]:
        return [call.body["text"]["content"] for call in self.fake.calls_to(CUSTOM)
                if call.body["touser"] == openid]


async def start_chat(core: Core, responder, fake: FakeWeChat, fake_server: TestServer, aiohttp_client, *,
                     account: WeChatAccount = SAMPLE, reply_deadline_s: float = 4.0) -> Chat:
    account = on_fake(account, fake_server)
    app = web.Application()
    app[CORE] = core
    setup(app, responder, WeChatApi(core.db, account, clock=core.clock), reply_deadline_s=reply_deadline_s)
    return Chat(await aiohttp_client(app), core, fake, account)


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not condition():
        assert loop.time() < give_up, "timed out waiting"
        await asyncio.sleep(0.02)
