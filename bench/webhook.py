"""`/wechat` under load, beside two same-run baselines on the same machine and the same load:

    xinyi  the real app (bot.app.build_app): verify, decrypt, dedupe, the user's turn, the
           conversations on SQLite, the reply, encrypt; the sandbox account, in safe mode;
    echo   a stateless wechatpy server: check the signature, decrypt, echo the text, encrypt;
    bare   aiohttp answering one fixed reply.

    python bench/webhook.py [--messages N] [--users U] [--rate R] [--runs K] [--concurrency C] [--seconds S]

Each server runs in a process of its own; the load generator (an aiohttp client here) sends
requests encrypted beforehand, with distinct MsgIds, across U users in turn, each user saying
"额度" and "帮助" by turns. Figures per run: messages/s with C requests in flight (closed
loop), p50/p99 latency at a fixed rate (open loop, measured from when each request was due,
so a server falling behind is not hidden), and xinyi's cold start (from spawning its process
to the first valid reply, schema already in place). Every reply must be XML; a sample is
decrypted and checked (with the fake WeChat's own AES, not wechatpy's), so that a broken path
cannot look fast. The load average is printed with the table: the load generator shares the
machine's two cores with the server.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/webhook.py: keep its folder off sys.path so `bot` and `billing` are the packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port

from bench.serving import profiled, run_server
from bot.sandbox.fake_wechat_api import push, read_reply, text_message
from bot.wechat_api import WeChatAccount

SERVERS = ("xinyi", "echo", "bare")
SECRET = "bench-secret-key-0123456789abcdef"
POLICY = "beijing-shijingshan"
WORDS = ("额度", "帮助")
CHECK_EVERY = 25  # one reply in 25 is decrypted and checked; every reply must be XML
WARMUP = 200
TARGET_RATIO = 0.75
TARGET_P99_MS = 50
TARGET_RATE = 1_000
TARGET_COLD_S = 2.0
READY_POLL_S = 0.02
READY_TIMEOUT_S = 60


def account(port: int) -> WeChatAccount:
    return WeChatAccount.sandbox(f"http://127.0.0.1:{port}")


# --- the servers, each run as `webhook.py --serve NAME --port P [--database URL]` ------------


def serve(name: str, port: int, database: str) -> None:
    if name == "xinyi":
        app = xinyi_app(port, database)
    elif name == "echo":
        app = echo_app(account(port))
    else:
        app = bare_app()
    run_server(app, port)


def xinyi_app(port: int, database: str) -> web.Application:
    from billing.core import Core
    from billing.pii import PiiCipher
    from billing.policy import load_policy
    from billing.registry import CsvRegistry
    from bot.app import build_app
    from bot.wechat_api import WeChatApi
    from storage.db import Database

    db = Database(database)
    core = Core(db=db, policy=load_policy(POLICY), pii=PiiCipher(SECRET), registry=CsvRegistry(),
                public_url=f"http://127.0.0.1:{port}")
    return build_app(core, background=False, wechat=WeChatApi(db, account(port), clock=core.clock))


def echo_app(sandbox: WeChatAccount) -> web.Application:
    from wechatpy import parse_message
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.replies import TextReply

    crypto = WeChatCrypto(sandbox.token, sandbox.aes_key, sandbox.appid)

    async def echo(request: web.Request) -> web.Response:
        q = request.query
        xml = crypto.decrypt_message(await request.read(), q["msg_signature"], q["timestamp"], q["nonce"])
        message = parse_message(xml)
        reply = TextReply(source=message.target, target=message.source, content=message.content).render()
        return web.Response(body=crypto.encrypt_message(reply, q["nonce"], q["timestamp"]).encode(),
                            content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", echo)
    return app


def bare_app() -> web.Application:
    reply = (b"<xml><ToUserName><![CDATA[o-bench]]></ToUserName><FromUserName><![CDATA[gh_xinyi]]></FromUserName>"
             b"<CreateTime>0</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ok]]></Content></xml>")

    async def fixed(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", fixed)
    return app


# --- the load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    query: dict[str, str]
    body: bytes
    openid: str
    text: str


class Load:
    """Encrypted requests with distinct MsgIds, U users in turn, each user's words alternating."""

    def __init__(self, users: int) -> None:
        self.users = users
        self.msg_ids = itertools.count(6_000_000_000_000_000_000)

    def build(self, sandbox: WeChatAccount, count: int) -> list[Request]:
        now = int(time.time())
        requests = []
        for _ in range(count):
            msg_id = next(self.msg_ids)
            openid = f"o-bench-user-{msg_id % self.users:05d}"
            said = WORDS[msg_id // self.users % len(WORDS)]
            query, body = push(sandbox, text_message(openid, said, msg_id, now), now)
            requests.append(Request(query, body, openid, said))
        return requests


class BrokenReply(Exception):
    pass


async def send(http: aiohttp.ClientSession, url: str, sandbox: WeChatAccount, name: str, request: Request,
               check: bool) -> None:
    async with http.post(url, params=request.query, data=request.body) as response:
        body = await response.read()
    if response.status != 200 or not body.startswith(b"<xml>"):
        raise BrokenReply(f"{name}: HTTP {response.status}: {body[:200]!r}")
    if check and name != "bare":
        reply = read_reply(sandbox, body)
        expected = request.text if name == "echo" else None
        if reply["ToUserName"] != request.openid or not reply["Content"] or expected not in (None, reply["Content"]):
            raise BrokenReply(f"{name}: unexpected reply {reply}")


async def closed_loop(http, url, sandbox, name, requests: list[Request], concurrency: int) -> float:
    """Messages per second with `concurrency` requests always in flight."""
    queue = iter(enumerate(requests))

    async def worker() -> None:
        for i, request in queue:
            await send(http, url, sandbox, name, request, i % CHECK_EVERY == 0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - started)


async def open_loop(http, url, sandbox, name, requests: list[Request], rate: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, achieved messages/s), each latency counted from when its request was due."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def timed(i: int, request: Request, due: float) -> None:
        await send(http, url, sandbox, name, request, i % CHECK_EVERY == 0)
        latencies.append(loop.time() - due)

    tasks = []
    started = loop.time()
    for i, request in enumerate(requests):
        due = started + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(timed(i, request, due)))
    await asyncio.gather(*tasks)
    achieved = len(requests) / (loop.time() - started)
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000, achieved


# --- the runs -------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wechat"

    @property
    def account(self) -> WeChatAccount:
        return account(self.port)


def spawn(name: str, database: str, env: dict[str, str] | None = None) -> Server:
    port = unused_port()
    command = [sys.executable, __file__, "--serve", name, "--port", str(port), "--database", database]
    return Server(name, port, subprocess.Popen(command, env=env))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux: /proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def first_reply(http: aiohttp.ClientSession, server: Server, load: Load, started: float) -> float:
    """Seconds from `started` until the server gives its first valid reply."""
    request = load.build(server.account, 1)[0]
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        try:
            await send(http, server.url, server.account, server.name, request, check=True)
            return time.perf_counter() - started
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"{server.name} gave no reply in {READY_TIMEOUT_S} s")


async def create_schema(database: str) -> None:
    from storage.db import Database

    db = Database(database)
    await db.create_all()
    await db.close()


@dataclass
class RunFigures:
    per_s: dict[str, float]
    cpu_us: dict[str, float]  # the server's CPU time per message in the closed loop
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    achieved: dict[str, float]
    rate: float
    cold_s: float


async def one_run(args, run: int, load: Load, http: aiohttp.ClientSession) -> RunFigures:
    with tempfile.TemporaryDirectory(prefix="xinyi-bench-") as folder:
        database = f"sqlite+inline:///{folder}/bench.db"
        await create_schema(database)
        started = time.perf_counter()
        servers = {"xinyi": spawn("xinyi", database, profiled(args.profile, run))}
        try:
            cold_s = await first_reply(http, servers["xinyi"], load, started)
            for name in SERVERS[1:]:
                servers[name] = spawn(name, database)
                await first_reply(http, servers[name], load, time.perf_counter())
            per_s, cpu_us = {}, {}
            for name, server in servers.items():
                await closed_loop(http, server.url, server.account, name, load.build(server.account, WARMUP), args.concurrency)
                cpu_before = cpu_seconds(server.process.pid)
                per_s[name] = await closed_loop(http, server.url, server.account, name,
                                                load.build(server.account, args.messages), args.concurrency)
                cpu_us[name] = (cpu_seconds(server.process.pid) - cpu_before) / args.messages * 1e6
            # Open loop at the asked rate, or at 90% of what xinyi just sustained if that is less: the same for all three.
            rate = min(args.rate, 0.9 * per_s["xinyi"])
            p50, p99, achieved = {}, {}, {}
            for name, server in servers.items():
                p50[name], p99[name], achieved[name] = await open_loop(
                    http, server.url, server.account, name, load.build(server.account, round(rate * args.seconds)), rate)
        finally:
            for server in servers.values():
                server.process.terminate()
            for server in servers.values():
                server.process.wait()
    figures = RunFigures(per_s, cpu_us, p50, p99, achieved, rate, cold_s)
    print("  " + ", ".join(f"{n} {per_s[n]:,.0f}/s ({cpu_us[n]:,.0f} µs CPU each), p50 {p50[n]:.1f} ms, p99 {p99[n]:.1f} ms" for n in SERVERS)
          + f" at {rate:,.0f}/s; xinyi cold start {cold_s:.2f} s", flush=True)
    return figures


async def main(args) -> None:
    load_at_start = os.getloadavg()[0]
    load = Load(args.users)
    print(f"{args.runs} runs: {args.messages:,} messages, {args.concurrency} in flight, then "
          f"{args.seconds:g} s at up to {args.rate:,}/s; {args.users} users", flush=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        runs = [await one_run(args, run, load, http) for run in range(1, args.runs + 1)]

    def median(figure: str, name: str) -> float:
        return statistics.median(getattr(run, figure)[name] for run in runs)

    rate = statistics.median(run.rate for run in runs)
    at = f"at {rate:,.0f}/s" + ("" if rate >= args.rate else f" (xinyi's most; asked {args.rate:,})")
    ratios = [run.per_s["xinyi"] / run.per_s["echo"] for run in runs]
    p99_target = f"< {TARGET_P99_MS} at {TARGET_RATE:,}/s"
    table = [
        ("xinyi messages/s, closed loop (echo; bare)", f"{median('per_s', 'xinyi'):,.0f}",
         f"{median('per_s', 'echo'):,.0f}; {median('per_s', 'bare'):,.0f}", "-"),
        ("xinyi / echo throughput", f"{statistics.median(ratios):.2f}", "1", f">= {TARGET_RATIO}"),
        ("server CPU µs per message, closed loop (echo; bare)", f"{median('cpu_us', 'xinyi'):,.0f}",
         f"{median('cpu_us', 'echo'):,.0f}; {median('cpu_us', 'bare'):,.0f}", "-"),
        (f"xinyi p50 ms {at} (echo; bare)", f"{median('p50_ms', 'xinyi'):.1f}",
         f"{median('p50_ms', 'echo'):.1f}; {median('p50_ms', 'bare'):.1f}", "-"),
        (f"xinyi p99 ms {at} (echo; bare)", f"{median('p99_ms', 'xinyi'):.1f}",
         f"{median('p99_ms', 'echo'):.1f}; {median('p99_ms', 'bare'):.1f}", p99_target),
        ("xinyi messages/s achieved in the open loop (echo; bare)", f"{median('achieved', 'xinyi'):,.0f}",
         f"{median('achieved', 'echo'):,.0f}; {median('achieved', 'bare'):,.0f}", f"{rate:,.0f}"),
        ("xinyi cold start to the first reply, s", f"{statistics.median(run.cold_s for run in runs):.2f}", "-",
         f"< {TARGET_COLD_S:g}"),
    ]
    widths = [max(len(row[i]) for row in table + [("figure", "median", "baseline", "target")]) for i in range(4)]
    print(f"\n{os.cpu_count()} cores; load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for row in [("figure", "median", "baseline", "target"), *table]:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000, help="closed-loop messages per server per run")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--rate", type=int, default=TARGET_RATE, help="open-loop messages/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="open-loop duration")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop requests in flight")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of each run's xinyi server to PROFILE.<run>")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.database)
    else:
        asyncio.run(main(args))
