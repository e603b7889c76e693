"""Charges through the hospital API with `xinyi serve --workers 1` and `--workers 2` on PostgreSQL,
the one-worker run the baseline of the same run.

    python bench/workers.py [--seconds 10] [--connections 32] [--workers 1,2]

Each run gets a database of its own on the server of XINYI_BENCH_PG_URL (default
postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test), with hospital H1 and the demo
registry's eligible residents enrolled with room for every charge. `xinyi serve --workers N`
runs as a process of its own; this process is the load: `--connections` loops, each posting
signed charges to a visit of its own (the residents taken in turn) for `--seconds`. Printed:
charges per second, p50 and p99 latency, the workers' CPU per charge, and any answer other
than 201. The load generator shares the machine's cores with the server: on 2 cores the
figures are the machine's, not the server's alone.
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
from storage import migrate
from storage.db import Database
from storage.models import CreditLine

PG_URL = os.environ.get("XINYI_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test")
SECRET_KEY = "bench-secret-key-0123456789abcdefgh"
HOSPITAL, HOSPITAL_SECRET = "H1", "bench-hospital-secret-0123456789"
CLI = "import sys; from bot.cli import main; sys.exit(main())"


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
class Figures:
    workers: int
    charges: int
    per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    others: Counter


async def load(base: str, connections: int, seconds: float) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds

    async def loop(n: int, http: aiohttp.ClientSession) -> None:
        path, i = f"/api/v1/visits/V{n}/charges", 0
        while time.monotonic() < stop:
            body = json.dumps({"charge_no": f"C{n}-{i}", "category": "drug", "name": "阿莫西林", "amount_fen": 1250}).encode()
            headers = signed_headers(HOSPITAL, HOSPITAL_SECRET, "POST", path, body, int(time.time()), secrets.token_hex(8))
            started = time.perf_counter()
            async with http.post(base + path, data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] += 1
            latencies.append(time.perf_counter() - started)
            i += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(loop(n, http) for n in range(connections)))
    return latencies, statuses


async def one_run(workers: int, args) -> Figures:
    url = make_url(PG_URL).set(database=f"xinyi_bench_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    await admin(url, f"CREATE DATABASE {make_url(url).database}")
    try:
        await programme(url, args.connections)
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "XINYI_SANDBOX": "0", "XINYI_DATABASE_URL": url, "XINYI_SECRET_KEY": SECRET_KEY,
               "XINYI_PORT": str(port), "XINYI_WECHAT_APPID": "wxbench", "XINYI_WECHAT_SECRET": "s",
               "XINYI_WECHAT_TOKEN": "t", "XINYI_WECHAT_API_BASE": "http://127.0.0.1:9",
               "XINYI_WECHAT_TEMPLATES": "bill_issued=T1,bill_reminder=T2,bill_overdue=T3"}
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--workers", str(workers)], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_ready(base, process, workers)
                pids = children(process.pid)
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
                latencies, statuses = await load(base, args.connections, args.seconds)
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            finally:
                process.terminate()
                process.wait(30)
    finally:
        await admin(url, f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")
    done = statuses[201]
    latencies.sort()
    return Figures(workers, done, done / args.seconds, statistics.median(latencies) * 1000,
                   latencies[int(len(latencies) * 0.99)] * 1000, cpu / max(done, 1) * 1000,
                   Counter({status: n for status, n in statuses.items() if status != 201}))


async def main(args) -> None:
    runs = [await one_run(int(n), args) for n in args.workers.split(",")]
    print(f"charges through the hospital API, PostgreSQL, {args.connections} connections, {args.seconds:g} s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'workers':>8} {'charges/s':>10} {'x baseline':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/charge':>14}  other answers")
    for figures in runs:
        print(f"{figures.workers:>8} {figures.per_s:>10.0f} {figures.per_s / runs[0].per_s:>10.2f} {figures.p50_ms:>8.1f} "
              f"{figures.p99_ms:>8.1f} {figures.cpu_ms:>14.2f}  {dict(figures.others) or '-'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="the runs, the first the baseline")
    asyncio.run(main(parser.parse_args()))
