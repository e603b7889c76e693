"""Charges through the hospital API, or `/wechat` messages, with `xinyi serve --workers 1` and
`--workers 2` on PostgreSQL, the one-worker run the baseline of the same run.

    python bench/workers.py [--route charges|wechat] [--seconds 10] [--connections 32] [--workers 1,2] [--rate 500]

Each run gets a database of its own on the server of XINYI_BENCH_PG_URL (default
postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test), with hospital H1 and the demo
registry's eligible residents enrolled with room for every charge. `xinyi serve --workers N`
runs as a process of its own; this process is the load: `--connections` loops, each posting
signed charges to a visit of its own (the residents taken in turn) for `--seconds`, after 2 s
not counted (the statements prepared on each pooled connection); or, with `--route wechat`,
safe-mode text messages (bench/webhook.py's load: encrypted beforehand with the fake WeChat's
AES, distinct MsgIds, USERS users in turn, 额度 and 帮助 by turns). Printed: requests per
second, p50 and p99 latency, the CPU per request of the workers, of PostgreSQL (when it runs on
this machine) and of this process, how many cores the three kept busy, and any answer other
than the expected (201; 200 with an XML reply). With `--rate`, an open loop follows at that
rate for `--seconds`, each latency counted from when its request was due. The load generator
shares the machine's cores with the server: on 2 cores the figures are the machine's, not the
server's alone.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/workers.py: keep its folder off sys.path so the packages are found.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp.test_utils import unused_port
from sqlalchemy import make_url, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from billing.clock import SystemClock
from billing.core import Core
from billing.errors import BillingError
from billing.hospitals import add_hospital
from billing.members import enrol
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from billing.visits import open_visit
from bot.hospital_api import signed_headers
from bot.sandbox.fake_wechat_api import push, text_message
from bot.wechat_api import WeChatAccount
from storage import migrate
from storage.db import Database
from storage.models import CreditLine

PG_URL = os.environ.get("XINYI_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test")
SECRET_KEY = "bench-secret-key-0123456789abcdefgh"
HOSPITAL, HOSPITAL_SECRET = "H1", "bench-hospital-secret-0123456789"
CLI = "import sys; from bot.cli import main; sys.exit(main())"
ACCOUNT = WeChatAccount(appid="wxbench", token="bench-token", secret="s", aes_key="eGlueWkgc2FuZGJveCBFbmNvZGluZ0FFU0tleSAzMkI",
                        api_base="http://127.0.0.1:9")
USERS = 4096
WARMUP_S = 2.0


async def admin(url: str, statement: str) -> None:
    engine = create_async_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


async def programme(url: str, connections: int) -> None:
    """H1, every eligible demo resident enrolled with an unbounded line, a visit per connection."""
    await migrate.upgrade(url)
    core = Core(db=Database(url), policy=load_policy("beijing-shijingshan"), pii=PiiCipher(SECRET_KEY),
                registry=CsvRegistry(), clock=SystemClock())
    await add_hospital(core, HOSPITAL, "压测医院", secret=HOSPITAL_SECRET)
    patients = []
    for resident in core.registry:
        try:
            await enrol(core, openid=f"o-bench-{len(patients)}", name=resident.name, id_number=resident.id_number,
                        phone="13800000000", consent_version=core.policy.consent_version,
                        commitment_version=core.policy.commitment_version)
        except BillingError:  # not eligible: dishonest, not insured here, ...
            continue
        patients.append(resident.id_number)
    async with core.db.transaction() as session:
        await session.execute(update(CreditLine).values(limit_fen=10**11))
    for n in range(connections):
        await open_visit(core, HOSPITAL, {"visit_no": f"V{n}", "id_number": patients[n % len(patients)],
                                          "department": "内科", "kind": "outpatient", "exclusion": None})
    await core.db.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """The CPU time of this machine's PostgreSQL processes (none when the server is elsewhere)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(proc.name))
        except OSError:  # gone meanwhile
            pass
    return total


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_ready(base: str, process: subprocess.Popen, workers: int) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise SystemExit(f"xinyi serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200 and len(children(process.pid)) == workers:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("xinyi serve did not get ready in 60 s")


@dataclass
class Latencies:
    per_s: float
    p50_ms: float
    p99_ms: float


@dataclass
class Figures:
    workers: int
    done: int
    closed: Latencies
    cpu_ms: float
    postgres_cpu_ms: float  # PostgreSQL's CPU a request
    bench_cpu_ms: float  # this process's (the load generator's)
    cores_busy: float  # the three together over the run's seconds
    others: Counter
    opened: Latencies | None


class Charges:
    """Signed charges, each connection on a visit of its own."""
    expected = 201

    def request(self, n: int, i: int) -> tuple[str, dict, bytes, dict]:
        path = f"/api/v1/visits/V{n}/charges"
        body = json.dumps({"charge_no": f"C{n}-{i}", "category": "drug", "name": "阿莫西林", "amount_fen": 1250}).encode()
        return path, {}, body, signed_headers(HOSPITAL, HOSPITAL_SECRET, "POST", path, body, int(time.time()), secrets.token_hex(8))

    def ok(self, status: int, body: bytes) -> bool:
        return status == 201


class Messages:
    """Safe-mode text messages encrypted beforehand, each with a MsgId of its own, USERS users in turn
    (so no two in flight are one user's), each saying 额度 and 帮助 by turns."""
    expected = 200

    def __init__(self, count: int) -> None:
        now = int(time.time())
        self.built = iter([push(ACCOUNT, text_message(f"o-bench-{k % USERS:04d}", ("额度", "帮助")[k // USERS % 2],
                                                      7_000_000_000_000_000_000 + k, now), now) for k in range(count)])

    def request(self, n: int, i: int) -> tuple[str, dict, bytes, dict]:
        query, body = next(self.built)
        return "/wechat", query, body, {}

    def ok(self, status: int, body: bytes) -> bool:
        return status == 200 and body.startswith(b"<xml>")


def latencies_of(durations: list[float], seconds: float, done: int) -> Latencies:
    durations.sort()
    return Latencies(done / seconds, statistics.median(durations) * 1000, durations[int(len(durations) * 0.99)] * 1000)


async def load(base: str, route, connections: int, seconds: float) -> tuple[list[float], Counter]:
    """`connections` loops, each sending its next request when the last is answered."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds

    async def loop(n: int, http: aiohttp.ClientSession) -> None:
        i = 0
        while time.monotonic() < stop:
            path, query, body, headers = route.request(n, i)
            started = time.perf_counter()
            async with http.post(base + path, params=query, data=body, headers=headers) as response:
                statuses[response.status if route.ok(response.status, await response.read()) else -response.status] += 1
            latencies.append(time.perf_counter() - started)
            i += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(loop(n, http) for n in range(connections)))
    return latencies, statuses


async def open_load(base: str, route, connections: int, rate: float, seconds: float) -> tuple[Latencies, Counter]:
    """Requests due at `rate` a second, each latency counted from when it was due, so falling behind shows."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    start = time.perf_counter() + 0.1
    total = int(rate * seconds)

    async def one(k: int, http: aiohttp.ClientSession) -> None:
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        path, query, body, headers = route.request(connections + k % connections, 1_000_000 + k // connections)
        async with http.post(base + path, params=query, data=body, headers=headers) as response:
            statuses[response.status if route.ok(response.status, await response.read()) else -response.status] += 1
        latencies.append(time.perf_counter() - due)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(one(k, http) for k in range(total)))
    return latencies_of(latencies, seconds, statuses[route.expected]), statuses


async def one_run(workers: int, args) -> Figures:
    url = make_url(PG_URL).set(database=f"xinyi_bench_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    await admin(url, f"CREATE DATABASE {make_url(url).database}")
    try:
        await programme(url, 2 * args.connections)
        route = Charges() if args.route == "charges" else Messages(int(max(args.rate, 2_000) * (args.seconds * 2 + WARMUP_S)))
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "XINYI_SANDBOX": "0", "XINYI_DATABASE_URL": url, "XINYI_SECRET_KEY": SECRET_KEY,
               "XINYI_PORT": str(port), "XINYI_WECHAT_APPID": "wxbench", "XINYI_WECHAT_SECRET": "s",
               "XINYI_WECHAT_TOKEN": ACCOUNT.token, "XINYI_WECHAT_AES_KEY": ACCOUNT.aes_key,
               "XINYI_WECHAT_API_BASE": ACCOUNT.api_base,
               "XINYI_WECHAT_TEMPLATES": "bill_issued=T1,bill_reminder=T2,bill_overdue=T3"}
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--workers", str(workers)], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_ready(base, process, workers)
                pids = children(process.pid)
                await load(base, route, args.connections, WARMUP_S)  # each connection's statements prepared, not counted
                cpu_before, pg_before, bench_before = sum(cpu_seconds(pid) for pid in pids), postgres_cpu_seconds(), time.process_time()
                latencies, statuses = await load(base, route, args.connections, args.seconds)
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
                pg_cpu, bench_cpu = postgres_cpu_seconds() - pg_before, time.process_time() - bench_before
                opened = None
                if args.rate:
                    opened, more = await open_load(base, route, args.connections, args.rate, args.seconds)
                    statuses.update({status: n for status, n in more.items() if status != route.expected})
            finally:
                process.terminate()
                process.wait(30)
    finally:
        await admin(url, f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")
    done = statuses[route.expected]
    per = 1000 / max(done, 1)
    return Figures(workers, done, latencies_of(latencies, args.seconds, done), cpu * per, pg_cpu * per, bench_cpu * per,
                   (cpu + pg_cpu + bench_cpu) / args.seconds,
                   Counter({status: n for status, n in statuses.items() if status != route.expected}), opened)


async def main(args) -> None:
    runs = [await one_run(int(n), args) for n in args.workers.split(",")]
    what = "charges through the hospital API" if args.route == "charges" else "safe-mode text messages to /wechat"
    print(f"{what}, PostgreSQL, {args.connections} connections, {args.seconds:g} s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; other answers negative if the body was wrong")
    print(f"{'workers':>8} {'requests/s':>10} {'x baseline':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/request':>15}"
          f" {'PostgreSQL':>10} {'bench':>6} {'cores busy':>10}"
          f"{f'  at {args.rate:g}/s: p50, p99 ms' if args.rate else ''}  other answers")
    for figures in runs:
        closed = figures.closed
        opened = f"  {figures.opened.p50_ms:>8.1f} {figures.opened.p99_ms:>8.1f}" if figures.opened else ""
        print(f"{figures.workers:>8} {closed.per_s:>10.0f} {closed.per_s / runs[0].closed.per_s:>10.2f} {closed.p50_ms:>8.1f} "
              f"{closed.p99_ms:>8.1f} {figures.cpu_ms:>15.2f} {figures.postgres_cpu_ms:>10.2f} {figures.bench_cpu_ms:>6.2f}"
              f" {figures.cores_busy:>10.2f}{opened}  {dict(figures.others) or '-'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=("charges", "wechat"), default="charges")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="the runs, the first the baseline")
    parser.add_argument("--rate", type=float, default=0.0, help="then an open loop at this many requests/s (0: none)")
    asyncio.run(main(parser.parse_args()))
