"""`xinyi serve` as a real process, for the tests of several workers and of PostgreSQL's failures:
a database of its own on a PostgreSQL server, a programme in it (hospital H1, one member bound to
WeChat), the fake WeChat API on loopback in the test's loop, and the server started with
`--workers N` on a free port. Requests are signed and encrypted as a hospital and WeChat do."""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer, unused_port
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from billing.clock import Clock, SystemClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.members import enrol
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from bot.hospital_api import signed_headers
from bot.sandbox.fake_wechat_api import FakeWeChat, push, read_reply, text_message
from bot.wechat_sender import TEMPLATE_KINDS
from storage import migrate
from storage.db import Database
from wechat_support import OPENID, SAMPLE

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "test-secret-key-0123456789abcdef"
HOSPITAL, HOSPITAL_SECRET = "H1", "hospital-secret-0123456789"
PATIENT = "110105198503120012"  # 张伟 in the demo registry, bound to OPENID
TEMPLATE = "/cgi-bin/message/template/send"
CLI = "import sys; from bot.cli import main; sys.exit(main())"
BOOT_WAIT_S = 60.0


async def create_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`; its URL."""
    name = f"xinyi_w_{uuid.uuid4().hex[:10]}"
    await _admin(server_url, f"CREATE DATABASE {name}")
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    await _admin(url, f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def programme(url: str, clock: Clock | None = None) -> Core:
    """The schema, hospital H1 and the member bound to OPENID; the caller closes `core.db`."""
    await migrate.upgrade(url)
    core = Core(db=Database(url), policy=load_policy("beijing-shijingshan"), pii=PiiCipher(SECRET_KEY),
                registry=CsvRegistry(), clock=clock or SystemClock())
    await add_hospital(core, HOSPITAL, "测试医院", secret=HOSPITAL_SECRET)
    await enrol(core, openid=OPENID, name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    return core


async def fake_wechat() -> tuple[FakeWeChat, TestServer]:
    fake = FakeWeChat.for_account(SAMPLE)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    return fake, server


class Served:
    """`xinyi serve --workers N`, its output in `log_path`."""

    def __init__(self, database_url: str, wechat_base: str, log_path: Path, *, workers: int = 2, **settings: str) -> None:
        self.port = unused_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = log_path
        self.env = {**os.environ, "XINYI_SANDBOX": "0", "XINYI_DATABASE_URL": database_url, "XINYI_SECRET_KEY": SECRET_KEY,
                    "XINYI_HOST": "127.0.0.1", "XINYI_PORT": str(self.port), "XINYI_PUBLIC_URL": self.base,
                    "XINYI_DATA_DIR": str(log_path.parent), "XINYI_WECHAT_APPID": SAMPLE.appid,
                    "XINYI_WECHAT_SECRET": SAMPLE.secret, "XINYI_WECHAT_TOKEN": SAMPLE.token,
                    "XINYI_WECHAT_AES_KEY": SAMPLE.aes_key, "XINYI_WECHAT_API_BASE": wechat_base,
                    "XINYI_WECHAT_TEMPLATES": ",".join(f"{kind}=T-{kind}" for kind in TEMPLATE_KINDS),
                    **{f"XINYI_{key.upper()}": value for key, value in settings.items()}}
        self.process: subprocess.Popen | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Served:
        # A connection per request: the kernel hands each to whichever worker accepts first.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
        self.process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--workers", str(self.workers)], cwd=ROOT,
                                        env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        await self.until(lambda: len(self.worker_pids()) == self.workers and self._answers(), BOOT_WAIT_S)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:  # waited for off the loop: the fake WeChat, on this loop, may still be sent late replies
                await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        await self.http.close()

    def _answers(self) -> bool:
        """/healthz says 200 (a blocking GET: the boot wait has nothing else to do meanwhile)."""
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:  # refused, or an HTTPError
            return False

    def worker_pids(self) -> set[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return set()
        return {int(pid) for pid in children}

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def pids_logging(self, fragment: str) -> Counter[int]:
        """How many lines holding `fragment` each process logged (the access log names each request)."""
        return Counter(int(pid) for pid, line in re.findall(r"\[(\d+)\] (.*)", self.log()) if fragment in line)

    async def across_workers(self, fragment: str, send, tries: int = 20):
        """`await send(attempt)` (a batch of requests at once, whose access-log lines hold `fragment`)
        until one batch is taken by both workers: the first worker to wake often accepts every
        connection waiting. Returns that batch's answers and its attempt number."""
        for attempt in range(tries):
            before = self.pids_logging(fragment)
            answers = await send(attempt)
            await asyncio.sleep(0.2)  # the access log is written as each response goes
            if len(self.pids_logging(fragment) - before) == self.workers:
                return answers, attempt
        raise AssertionError(f"no batch of {tries} reached every worker")

    async def until(self, condition, timeout_s: float = 10.0) -> None:
        give_up = time.monotonic() + timeout_s
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"xinyi serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            assert time.monotonic() < give_up, f"timed out; the server's log ends:\n{self.log()[-3000:]}"
            await asyncio.sleep(0.05)

    async def hospital(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = signed_headers(HOSPITAL, HOSPITAL_SECRET, method, path, data, int(time.time()), secrets.token_hex(8))
        async with self.http.request(method, self.base + path, data=data, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def wechat(self, content: str, msg_id: int) -> tuple[int, dict | None, aiohttp.typedefs.LooseHeaders]:
        query, body = push(SAMPLE, text_message(OPENID, content, msg_id, int(time.time())), int(time.time()))
        async with self.http.post(f"{self.base}/wechat", params=query, data=body) as response:
            raw = await response.read()
            reply = read_reply(SAMPLE, raw) if response.status == 200 else json.loads(raw)
            return response.status, reply, response.headers
