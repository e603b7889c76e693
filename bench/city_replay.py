"""A day of bench/city_day.py played against `xinyi serve --workers N` on PostgreSQL through the
real HTTP contracts, then swept, audited and checked against the generator's ledger.

The outside world runs on loopback in this process: the fake WeChat (template messages, OAuth),
the sandbox WeChat Pay merchant API and the sandbox Alipay gateway, with keys made here. The
server runs in production mode (XINYI_SANDBOX=0) with those keys in PEM files, so every notice
is verified as a real one: RSA-signed and AES-GCM encrypted (WeChat Pay), RSA2-signed (Alipay).

Members are enrolled and dependants bound through billing's own API (`enrol`, `bind_dependent`)
before the server starts, as bench/workers.py does. Then every visit goes through the hospital
API (open, charges with the HIS's self-pay estimate, checkout with the insurance split); a paid
bill's payer opens the cashier (WeChat Pay: the OAuth hop and the JSAPI prepay at the sandbox;
Alipay: the WAP redirect, the sandbox's cashier page and its pay button) and the gateway's notice
goes to /notify/* in random order, some twice, the late ones after the day's last visit. The
server reads the system clock, so the day is played as fast as it goes, and the end-of-day
sweep (`xinyi sweep --now`) runs one day past the latest due date of the day's bills (the preset's
longest interest-free period): every unpaid bill is overdue then, and bears the interest of its
payer's institution, which the ledger checks to the fen.

With an `Outage`, PostgreSQL is stopped for its seconds once a share of the visits is done and
then started again. Every client then does what its real counterpart does with a 503: the
hospital's HIS and WeChat send the same request again (the HIS re-signed, with a new nonce) after
the Retry-After, a gateway sends its notice again, a payer whose cashier failed opens the link
again; a 503 is then an expected answer, counted apart.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port
from sqlalchemy import func, select

from bench.city_day import HOSPITALS, POLICY, Day
from billing.clock import SystemClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.members import bind_dependent, enrol
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from bot.hospital_api import signed_headers
from bot.sandbox import alipay_gateway, wechatpay_gateway
from bot.sandbox.alipay_gateway import private_pem, public_pem
from bot.sandbox.fake_wechat_api import FakeWeChat, push, text_message
from bot.wechat_api import WeChatAccount
from bot.wechat_sender import TEMPLATE_KINDS
from storage import migrate
from storage.db import Database
from storage.models import Bill, CreditLine, Member, Outbox, Visit

ROOT = Path(__file__).resolve().parent.parent
CLI = "import sys; from bot.cli import main; sys.exit(main())"
SECRET_KEY = "cityday-secret-key-0123456789abcdef"
ACCOUNT = WeChatAccount(appid="wxc1tyday0000000", token="citytoken", secret="city-app-secret",
                        aes_key=base64.b64encode(b"cityday-aes-key-32-bytes-long!!!").decode().rstrip("="))
PREPAY = re.compile(r"prepay_id=([\w-]+)")
NOTICE_SENDERS = 4
READY_S = 90
DRAIN_S = 300
ENROL_CONCURRENCY = 8
# The end-of-day sweep: this many whole days after the latest due time of the day's bills (the preset's
# longest interest-free period), so that every unpaid bill is overdue and bears interest.
LATEST_DUE_DAYS = max(institution.interest_free_days for institution in load_policy(POLICY).institutions)
DAYS_PAST_DUE = 1


def secret_of(hospital: str) -> str:
    return f"{hospital.lower()}-api-secret-0123456789"


@dataclass
class Outage:
    """PostgreSQL stopped for `seconds` once `after` of the visits are done, then started again."""
    stop: Callable[[], None]
    start: Callable[[], None]
    seconds: float = 10.0
    after: float = 0.4
    began: float | None = None  # perf_counter times, set by the replay
    ended: float | None = None


@dataclass
class Tally:
    """Per endpoint: when each request started and ended, and its answer's status."""
    calls: dict[str, list[tuple[float, float, int]]] = field(default_factory=lambda: defaultdict(list))
    unexpected: Counter = field(default_factory=Counter)  # (endpoint, status)
    unavailable: Counter = field(default_factory=Counter)  # endpoint -> 503s answered during an outage, each tried again

    def note(self, endpoint: str, started: float, status: int, expected: tuple[int, ...]) -> None:
        self.calls[endpoint].append((started, time.perf_counter(), status))
        if status not in expected:
            self.unexpected[endpoint, status] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.unexpected.items() if isinstance(status, int) and status >= 500)

    def figures(self) -> dict[str, tuple[int, float, float, float]]:
        """endpoint -> (requests, per second over its first start to its last end, p50 ms, p99 ms)."""
        out = {}
        for endpoint, calls in sorted(self.calls.items()):
            took = sorted(end - start for start, end, _ in calls)
            span = max(end for _, end, _ in calls) - min(start for start, _, _ in calls)
            out[endpoint] = (len(calls), len(calls) / span, statistics.median(took) * 1000, took[int(len(took) * 0.99)] * 1000)
        return out


# --- the outside world --------------------------------------------------------------------


class Outside:
    """The fake WeChat and both payment sandboxes on loopback, and the server's settings for them."""

    def __init__(self, folder: Path, server_base: str) -> None:
        self.folder = folder
        self.wechat = FakeWeChat(ACCOUNT.appid, ACCOUNT.secret, oauth_origin=server_base)
        self.ports = {name: unused_port() for name in ("wechat", "wechatpay", "alipay")}
        base = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.wechatpay_config, self.wechatpay = wechatpay_gateway.sandbox_merchant(
            clock=SystemClock(), appid=ACCOUNT.appid, notify_url=f"{server_base}/notify/wechatpay", api_base=base["wechatpay"])
        self.alipay_config, self.alipay = alipay_gateway.sandbox_merchant(
            clock=SystemClock(), notify_url=f"{server_base}/notify/alipay", gateway=f"{base['alipay']}/gateway.do")
        self.alipay.deliver_notices = False  # the replay sends each notice itself, when and as often as the day says
        self.alipay_base = base["alipay"]
        pems = {"wechatpay_merchant.pem": private_pem(self.wechatpay_config.private_key),
                "wechatpay_platform.pem": public_pem(self.wechatpay.platform_key),
                "alipay_app.pem": self.alipay_config.app_private_key, "alipay_public.pem": self.alipay_config.alipay_public_key}
        for name, pem in pems.items():
            (folder / name).write_text(pem)
        self.env = {
            "XINYI_WECHAT_APPID": ACCOUNT.appid, "XINYI_WECHAT_SECRET": ACCOUNT.secret, "XINYI_WECHAT_TOKEN": ACCOUNT.token,
            "XINYI_WECHAT_AES_KEY": ACCOUNT.aes_key, "XINYI_WECHAT_API_BASE": base["wechat"],
            "XINYI_WECHAT_TEMPLATES": ",".join(f"{kind}=T-{kind}" for kind in TEMPLATE_KINDS),
            "XINYI_WECHATPAY_MCHID": self.wechatpay_config.mchid, "XINYI_WECHATPAY_SERIAL_NO": self.wechatpay_config.serial_no,
            "XINYI_WECHATPAY_PRIVATE_KEY": str(folder / "wechatpay_merchant.pem"),
            "XINYI_WECHATPAY_APIV3_KEY": self.wechatpay_config.apiv3_key.decode(),
            "XINYI_WECHATPAY_PUBLIC_KEY": str(folder / "wechatpay_platform.pem"),
            "XINYI_WECHATPAY_PUBLIC_KEY_ID": self.wechatpay.public_key_id, "XINYI_WECHATPAY_API_BASE": base["wechatpay"],
            "XINYI_ALIPAY_APPID": self.alipay_config.app_id, "XINYI_ALIPAY_PRIVATE_KEY": str(folder / "alipay_app.pem"),
            "XINYI_ALIPAY_PUBLIC_KEY": str(folder / "alipay_public.pem"), "XINYI_ALIPAY_GATEWAY": self.alipay_config.gateway,
        }
        self.runners: list[web.AppRunner] = []

    async def __aenter__(self) -> Self:
        for name, app in (("wechat", self.wechat.app()), ("wechatpay", self.wechatpay.app()), ("alipay", self.alipay.app())):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.ports[name]).start()
            self.runners.append(runner)
        return self

    async def __aexit__(self, *exc) -> None:
        for runner in self.runners:
            await runner.cleanup()


# --- the programme, before the day ----------------------------------------------------------


def new_core(url: str, registry: Path) -> Core:
    return Core(db=Database(url), policy=load_policy(POLICY), pii=PiiCipher(SECRET_KEY), registry=CsvRegistry(registry),
                clock=SystemClock())


async def prepare(url: str, day: Day, registry: Path) -> None:
    """The schema, both hospitals, every member enrolled and every dependant bound."""
    await migrate.upgrade(url)
    core = new_core(url, registry)
    for code, name in HOSPITALS.items():
        await add_hospital(core, code, name, secret=secret_of(code))
    ids: dict[str, int] = {}
    gate = asyncio.Semaphore(ENROL_CONCURRENCY)

    async def sign_up(member) -> None:
        async with gate:
            enrolled = await enrol(core, openid=member.openid, name=member.name, id_number=member.id_number, phone="13900000000",
                                   consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version,
                                   institution=member.institution)
            ids[member.id_number] = enrolled.member_id

    await asyncio.gather(*(sign_up(member) for member in day.members))
    for payer, relation, dependant in day.dependants:
        await bind_dependent(core, ids[payer], relation, dependant.name, dependant.id_number)
    await core.db.close()


# --- the server ---------------------------------------------------------------------------


class Server:
    """`xinyi serve --workers N` in a process of its own, its log in `log_path`."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.env, self.workers, self.log_path = env, workers, log_path
        self.base = env["XINYI_PUBLIC_URL"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--workers", str(self.workers)], cwd=ROOT,
                                        env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def ready(self) -> None:
        give_up = time.monotonic() + READY_S
        while not (len(self.worker_pids()) == self.workers and await asyncio.to_thread(self._answers)):
            if self.process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"xinyi serve did not get ready; its log ends:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.2)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        try:
            return sorted(int(pid) for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split())
        except OSError:
            return []

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def requests_by_pid(self) -> Counter:
        return Counter(int(pid) for pid in re.findall(r"\[(\d+)\] INFO aiohttp\.access", self.log()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, float]:
    """`xinyi ARGS` in a process of its own: exit code, output, seconds."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", CLI, *args, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode, out.decode(errors="replace"), time.perf_counter() - started


# --- the day over HTTP ----------------------------------------------------------------------


class Unavailable(Exception):
    """A 503 met where the whole step starts again (the cashier's OAuth code is good once)."""


class Replay:
    def __init__(self, day: Day, base: str, outside: Outside, http: aiohttp.ClientSession, concurrency: int,
                 outage: Outage | None = None) -> None:
        self.day, self.base, self.outside, self.http, self.concurrency = day, base, outside, http, concurrency
        self.outage = outage
        self.visits_done = 0
        self.tally = Tally()
        self.rng = random.Random(day.seed)
        # (endpoint, the gateway's signing of the notice): signed when sent, as a gateway signs each try
        self.notices: list[tuple[str, Callable]] = []
        self.late: list[tuple[str, Callable]] = []
        self.visiting = True
        self.msg_id = 0
        self.openids = {member.id_number: member.openid for member in day.members}

    async def call(self, endpoint: str, method: str, url: str, expected: tuple[int, ...], *, again: bool = True,
                   make: Callable[[], dict] | None = None, **kwargs) -> tuple[int, str, dict]:
        """One request; during an outage a 503 is sent `again` after its Retry-After (or raised as
        Unavailable), `make` giving each try's fresh arguments (a new signature, a new nonce)."""
        while True:
            started = time.perf_counter()
            async with self.http.request(method, url, allow_redirects=False, **kwargs, **(make() if make else {})) as response:
                text = await response.text()
            if response.status == 503 and self.outage is not None:
                self.tally.calls[endpoint].append((started, time.perf_counter(), 503))
                self.tally.unavailable[endpoint] += 1
                if not again:
                    raise Unavailable(endpoint)
                await asyncio.sleep(float(response.headers.get("Retry-After", 1)))
                continue
            self.tally.note(endpoint, started, response.status, expected)
            return response.status, text, dict(response.headers)

    async def hospital(self, endpoint: str, hospital: str, path: str, body: dict, expected: int) -> dict:
        data = json.dumps(body).encode()

        def signed() -> dict:
            return {"headers": signed_headers(hospital, secret_of(hospital), "POST", path, data, int(time.time()), secrets.token_hex(8))}

        status, text, _ = await self.call(endpoint, "POST", self.base + path, (expected,), data=data, make=signed)
        return json.loads(text) if status == expected else {}

    async def run(self) -> dict[str, str]:
        """Plays the day; visit_no -> bill_no."""
        bills: dict[str, str] = {}
        queue = iter(self.day.visits)

        async def visitor() -> None:
            for visit in queue:
                bill_no = await self.visit(visit)
                if bill_no:
                    bills[visit.visit_no] = bill_no
                self.visits_done += 1

        senders = [asyncio.create_task(self.send_notices()) for _ in range(NOTICE_SENDERS)]
        outage = asyncio.create_task(self.break_postgresql()) if self.outage else None
        await asyncio.gather(*(visitor() for _ in range(self.concurrency)))
        if outage is not None:
            await outage
        self.visiting = False
        await asyncio.gather(*senders)
        self.rng.shuffle(self.late)
        self.notices = self.late
        await asyncio.gather(*(self.send_notices() for _ in range(NOTICE_SENDERS)))
        return bills

    async def break_postgresql(self) -> None:
        while self.visits_done < len(self.day.visits) * self.outage.after:
            await asyncio.sleep(0.05)
        self.outage.began = time.perf_counter()
        await asyncio.to_thread(self.outage.stop)
        await asyncio.sleep(self.outage.seconds)
        await asyncio.to_thread(self.outage.start)
        self.outage.ended = time.perf_counter()

    async def visit(self, visit) -> str | None:
        opened = await self.hospital("POST /api/v1/visits", visit.hospital, "/api/v1/visits", {
            "visit_no": visit.visit_no, "id_number": visit.patient, "department": "内科", "kind": "outpatient", "exclusion": None}, 201)
        if not opened:
            return None
        path = f"/api/v1/visits/{visit.visit_no}"
        for charge in visit.charges:
            await self.hospital("POST /api/v1/visits/{visit_no}/charges", visit.hospital, f"{path}/charges", {
                "charge_no": charge.charge_no, "category": charge.category, "name": charge.name,
                "amount_fen": charge.amount_fen, "prepaid": False, "self_pay_estimate_fen": charge.self_pay_fen}, 201)
        bill = await self.hospital("POST /api/v1/visits/{visit_no}/checkout", visit.hospital, f"{path}/checkout", {"items": [
            {"charge_no": c.charge_no, "insurance_fen": c.insurance_fen, "personal_account_fen": c.personal_account_fen,
             "self_pay_fen": c.self_pay_fen} for c in visit.charges]}, 200)
        if not bill:
            return None
        if visit.channel is not None:
            notice = await self.pay(visit.channel, bill["pay_url"].rsplit("/", 1)[1])
            if notice is not None:
                (self.late if visit.late else self.notices).extend([notice] * visit.copies)
        if visit.ask is not None:
            await self.ask(self.openids[visit.payer], visit.ask)
        return bill["bill_no"]

    async def pay(self, channel: str, token: str):
        """The payer at the cashier; one whose page failed (PostgreSQL down) opens the link again."""
        while True:
            try:
                return await (self.wechatpay(token) if channel == "wechatpay" else self.alipay(token))
            except Unavailable:
                await asyncio.sleep(1)

    async def wechatpay(self, token: str):
        """The payer opens the WeChat Pay cashier: OAuth for the openid, the prepay; then pays."""
        endpoint = "GET /pay/{token}/wechat"
        status, _, headers = await self.call(endpoint, "GET", f"{self.base}/pay/{token}/wechat", (302,), again=False)
        if status != 302:
            return None
        async with self.http.get(headers["Location"], allow_redirects=False) as response:  # the fake WeChat's OAuth page
            back = response.headers["Location"]
        status, page, _ = await self.call(endpoint, "GET", back, (200,), again=False)
        found = PREPAY.search(page)
        if found is None:
            return None
        order = self.outside.wechatpay.pay(found.group(1), notify=False)
        return "POST /notify/wechatpay", partial(self.outside.wechatpay.notice, order)

    async def alipay(self, token: str):
        """The payer opens the Alipay cashier: the WAP redirect, the gateway's page, its pay button."""
        status, _, headers = await self.call("GET /pay/{token}/alipay", "GET", f"{self.base}/pay/{token}/alipay", (302,), again=False)
        if status != 302:
            return None
        gateway = headers["Location"]
        out_trade_no = json.loads(parse_qs(urlsplit(gateway).query)["biz_content"][0])["out_trade_no"]
        async with self.http.get(gateway) as response:
            await response.read()
        trade = self.outside.alipay.trades[out_trade_no]
        async with self.http.post(f"{self.outside.alipay_base}/cashier/{trade.trade_no}/pay", allow_redirects=False) as response:
            await response.read()
        return "POST /notify/alipay", partial(self.outside.alipay.notice, out_trade_no)

    async def send_notices(self) -> None:
        """Notices in random order while the day goes on; then whatever is left."""
        while self.notices or self.visiting:
            if not self.notices:
                await asyncio.sleep(0.01)
                continue
            endpoint, sign = self.notices.pop(self.rng.randrange(len(self.notices)))
            path = endpoint.split(" ")[1]
            if endpoint.endswith("wechatpay"):

                def signed() -> dict:
                    headers, body = sign()
                    return {"headers": headers, "data": body}

                await self.call(endpoint, "POST", self.base + path, (200, 204), make=signed)
            else:
                _, text, _ = await self.call(endpoint, "POST", self.base + path, (200,), make=lambda: {"data": sign()})
                if text != "success":
                    self.tally.unexpected[endpoint, f"answered {text!r}"] += 1

    async def ask(self, openid: str, content: str) -> None:
        self.msg_id += 1
        message = text_message(openid, content, 7_000_000 + self.msg_id, int(time.time()))

        def pushed() -> dict:  # WeChat sends the same message again, signed anew
            query, body = push(ACCOUNT, message, int(time.time()))
            return {"params": query, "data": body}

        await self.call("POST /wechat", "POST", f"{self.base}/wechat", (200,), make=pushed)


# --- after the day --------------------------------------------------------------------------


async def drained(url: str) -> tuple[float, int]:
    """Waits until the server's outbox has nothing pending (its bill notices and payment messages
    sent to the fake WeChat; programme events stay pending, there being no XINYI_EVENTS_URL): the
    seconds that took, and how many messages are dead."""
    db, started = Database(url), time.perf_counter()
    try:
        while True:
            async with db.transaction() as session:
                counts = dict((await session.execute(select(Outbox.status, func.count()).where(Outbox.kind != "event").group_by(Outbox.status))).all())
            if not counts.get("pending") or time.perf_counter() - started > DRAIN_S:
                return time.perf_counter() - started, counts.get("dead", 0)
            await asyncio.sleep(0.2)
    finally:
        await db.close()


async def differences(url: str, day: Day, registry: Path) -> list[str]:
    """Where the database disagrees with the generator's ledger: each bill's self-pay, paid, status
    and interest, each member's used credit and status, after the sweep past every bill's due date."""
    core = new_core(url, registry)
    async with core.db.transaction() as session:
        bills = {no: rest for no, *rest in (await session.execute(
            select(Visit.visit_no, Bill.self_pay_fen, Bill.paid_fen, Bill.status, Bill.interest_fen)
            .join(Bill, Bill.visit_id == Visit.id))).all()}
        members = {hmac: (used, status) for hmac, used, status in (await session.execute(
            select(Member.id_number_hmac, func.sum(CreditLine.used_fen), Member.status)
            .join(CreditLine, CreditLine.member_id == Member.id).group_by(Member.id))).all()}
    await core.db.close()
    found = []
    interest = day.interest_fen(DAYS_PAST_DUE)
    for visit_no, (self_pay, paid) in day.bills().items():
        want = [self_pay, paid, "paid" if paid == self_pay else "overdue", interest[visit_no]]
        if bills.get(visit_no) != want:
            found.append(f"bill of {visit_no}: {bills.get(visit_no)} in the database, {want} in the ledger")
    for number, used in day.used_fen().items():
        want = (used, "suspended" if used else "active")
        got = members.get(core.pii.lookup(number))
        if got != want:
            found.append(f"member {number[:6]}…: {got} in the database, {want} in the ledger")
    return found


@dataclass
class Run:
    workers: int
    tally: Tally
    replay_s: float
    cpu_s: dict[int, float]  # each worker's CPU over the replay and the outbox's drain after it
    requests: dict[int, int]  # each worker's requests over the replay (its access log)
    client_cpu_s: float  # this process's CPU over the replay: the load, the fake WeChat and both gateways
    drain_s: float  # from the replay's last answer until the outbox had nothing pending
    dead_messages: int
    idle_sweep_s: float  # `xinyi sweep --now` before the day: the process, its connections, nothing to do
    sweep_s: float
    sweep_said: str
    audit_code: int
    audit_said: str
    differences: list[str]


async def run_day(url: str, day: Day, workers: int, folder: Path, concurrency: int, outage: Outage | None = None) -> Run:
    """`day` against a fresh database at `url` served by `workers` workers, with PostgreSQL
    stopped for a while in the middle when there is an `outage`."""
    registry = folder / "registry.csv"
    registry.write_text(day.registry_csv(), encoding="utf-8")
    await prepare(url, day, registry)
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    async with Outside(folder, base) as outside:
        env = {**os.environ, **outside.env, "XINYI_SANDBOX": "0", "XINYI_DATABASE_URL": url, "XINYI_SECRET_KEY": SECRET_KEY,
               "XINYI_HOST": "127.0.0.1", "XINYI_PORT": str(port), "XINYI_PUBLIC_URL": base, "XINYI_DATA_DIR": str(folder),
               "XINYI_POLICY": POLICY, "XINYI_REGISTRY": str(registry), "XINYI_SWEEP_EVERY_S": "86400"}
        await cli(env, "sweep")  # sends the enrolment messages: the timed sweep before the day has nothing to do
        _, _, idle_sweep_s = await cli(env, "sweep")
        with Server(env, workers, folder / f"serve-{workers}.log") as server:
            await server.ready()
            pids = server.worker_pids()
            before_cpu, before_requests = {pid: cpu_seconds(pid) for pid in pids}, server.requests_by_pid()
            # A connection per request, as the city's many clients make them: the kernel hands each to whichever
            # worker accepts first (kept-alive connections would stay with the worker that took them first).
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http:
                started, client_started = time.perf_counter(), time.process_time()
                replay = Replay(day, base, outside, http, concurrency, outage)
                await replay.run()
                replay_s, client_cpu_s = time.perf_counter() - started, time.process_time() - client_started
            drain_s, dead_messages = await drained(url)
            cpu = {pid: cpu_seconds(pid) - before_cpu[pid] for pid in pids}
            requests = {pid: server.requests_by_pid()[pid] - before_requests[pid] for pid in pids}
        due = datetime.now(UTC) + timedelta(days=LATEST_DUE_DAYS + DAYS_PAST_DUE)
        _, sweep_said, sweep_s = await cli(env, "sweep", "--now", due.isoformat())
        audit_code, audit_said, _ = await cli(env, "audit")
    return Run(workers, replay.tally, replay_s, cpu, requests, client_cpu_s, drain_s, dead_messages, idle_sweep_s, sweep_s, sweep_said.strip().splitlines()[-1],
               audit_code, audit_said.strip(), await differences(url, day, registry))
