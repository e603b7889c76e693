"""Checkout to the bill notice: how long from a hospital's checkout request until WeChat receives
the bill's template message, beside the checkout request's own answer time in the same run.

    python bench/notices.py [--checkouts N] [--rate R] [--runs K]                     # SQLite, one process
    XINYI_BENCH_PG_URL=postgresql+asyncpg://... python bench/notices.py --backend postgres --workers 2

Each run has a database of its own (a SQLite file, or a PostgreSQL database created and dropped
on XINYI_BENCH_PG_URL's server). N visits are opened and charged beforehand; then W servers
(`xinyi serve`'s app with its background jobs, the real WeChatSender and WeChatApi) run in
processes of their own, and this process sends the N signed checkouts at R a second, in turn to
each server, and plays WeChat's API (bot/sandbox/fake_wechat_api.py) on a port of its own,
noting when each template message arrives. With two workers a notice is sent by whichever
worker's sender wakes first: its own commit, or PostgreSQL's NOTIFY of the other's. Every bill
must get exactly one notice, or the run fails.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/notices.py: keep its folder off sys.path so `bot` and `billing` are the packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import logging
import os
import secrets
import statistics
import subprocess
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port
from sqlalchemy import select

from bench.billing import scratch_database
from bench.payments import HOSPITAL, HOSPITAL_SECRET, PATIENT, new_core, until_ready
from bench.serving import run_server
from billing.hospitals import add_hospital
from billing.members import enrol
from billing.visits import open_visit, post_charge
from bot.hospital_api import signed_headers
from bot.sandbox.fake_wechat_api import FakeWeChat
from bot.wechat_api import SANDBOX_PATH, WeChatAccount
from storage.models import CreditLine

TARGETS_S = {"sqlite": 2.0, "postgres": 3.0}  # p99, checkout to template message
CHARGE_FEN = 1_000
TEMPLATE_PATH = "/cgi-bin/message/template/send"
ARRIVAL_TIMEOUT_S = 60


# --- the server, run as `notices.py --serve --port P --database URL --wechat-port W` ---------


def serve(port: int, database: str, wechat_port: int) -> None:
    from bot.app import build_app
    from bot.wechat_api import WeChatApi
    from bot.wechat_sender import SANDBOX_TEMPLATES, WeChatSender

    logging.basicConfig(level=logging.WARNING)
    core = new_core(database)
    api = WeChatApi(core.db, WeChatAccount.sandbox(f"http://127.0.0.1:{wechat_port}"), clock=core.clock)
    run_server(build_app(core, sender=WeChatSender(core, api, SANDBOX_TEMPLATES)), port)


# --- WeChat, played here: the fake API, each template message's arrival noted by bill number ---


@asynccontextmanager
async def wechat_here(port: int) -> AsyncIterator[dict[str, list[float]]]:
    arrivals: dict[str, list[float]] = {}
    account = WeChatAccount.sandbox(f"http://127.0.0.1:{port}")
    fake = FakeWeChat.for_account(account)

    @web.middleware
    async def note(request: web.Request, handler):
        response = await handler(request)
        if request.path.endswith(TEMPLATE_PATH):
            bill_no = (await request.json())["data"]["keyword1"]["value"]
            arrivals.setdefault(bill_no, []).append(time.monotonic())
        return response

    app = web.Application(middlewares=[note])
    app.add_subapp(SANDBOX_PATH, fake.app())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield arrivals
    finally:
        await runner.cleanup()


# --- the run ---------------------------------------------------------------------------------


async def prepare(database: str, checkouts: int) -> None:
    """A hospital and Zhang Wei enrolled (WeChat openid o-bench), with N visits charged and open."""
    core = new_core(database)
    await core.db.create_all()
    await add_hospital(core, HOSPITAL, "基准医院", secret=HOSPITAL_SECRET)
    resident = await core.registry.lookup(PATIENT)
    await enrol(core, openid="o-bench", name=resident.name, id_number=PATIENT, phone="13800000000",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    async with core.db.transaction() as session:
        (await session.scalar(select(CreditLine))).limit_fen = 10**11
    for n in range(checkouts):
        await open_visit(core, HOSPITAL, {"visit_no": f"V{n}", "id_number": PATIENT, "department": "内科",
                                          "kind": "outpatient", "exclusion": None})
        await post_charge(core, HOSPITAL, f"V{n}", {"charge_no": f"C{n}", "category": "exam", "name": "血常规",
                                                    "amount_fen": CHARGE_FEN})
    await core.db.close()


async def check_out(http: aiohttp.ClientSession, base: str, n: int) -> tuple[str, float, float]:
    path = f"/api/v1/visits/V{n}/checkout"
    body = json.dumps({"items": [{"charge_no": f"C{n}", "insurance_fen": 600, "personal_account_fen": 0,
                                  "self_pay_fen": CHARGE_FEN - 600}]}).encode()
    headers = signed_headers(HOSPITAL, HOSPITAL_SECRET, "POST", path, body, int(time.time()), secrets.token_hex(8))
    sent = time.monotonic()
    async with http.post(base + path, data=body, headers=headers) as response:
        answer = await response.json()
        if response.status != 200:
            raise SystemExit(f"checkout V{n}: {response.status} {answer}")
    return answer["bill_no"], sent, time.monotonic()


async def one_run(args, run: int) -> dict[str, list[float]]:
    wechat_port = unused_port()
    async with scratch_database(args.backend) as database, wechat_here(wechat_port) as arrivals:
        await prepare(database, args.checkouts)
        ports = [unused_port() for _ in range(args.workers)]
        servers = [subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port), "--database", database,
                                     "--wechat-port", str(wechat_port)]) for port in ports]
        try:
            async with aiohttp.ClientSession() as http:
                for port, server in zip(ports, servers):
                    await until_ready(http, f"http://127.0.0.1:{port}", server)
                await asyncio.sleep(1)  # the first sweep at start is done
                tasks = []
                for n in range(args.checkouts):  # an open loop: at the rate, whatever the answers take
                    base = f"http://127.0.0.1:{ports[n % len(ports)]}"
                    tasks.append(asyncio.create_task(check_out(http, base, n)))
                    await asyncio.sleep(1 / args.rate)
                answered = await asyncio.gather(*tasks)
                deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
                while len(arrivals) < len(answered) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1)  # time for a second notice of any bill to show
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)
    twice = {bill_no: len(times) for bill_no, times in arrivals.items() if len(times) != 1}
    missing = [bill_no for bill_no, _, _ in answered if bill_no not in arrivals]
    if twice or missing:
        raise SystemExit(f"run {run}: notices sent more than once {twice}, never {missing[:5]} ({len(missing)})")
    figures = {"notice": [arrivals[bill_no][0] - sent for bill_no, sent, _ in answered],
               "checkout": [done - sent for _, sent, done in answered]}
    print(f"  run {run}: notice p50 {p(figures['notice'], 50):.3f} s, p99 {p(figures['notice'], 99):.3f} s; "
          f"checkout p50 {p(figures['checkout'], 50):.3f} s", flush=True)
    return figures


def p(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1] if len(values) > 1 else values[0]


async def main(args) -> None:
    load_at_start = os.getloadavg()[0]
    print(f"{args.runs} runs on {args.backend} with {args.workers} worker(s): {args.checkouts:,} checkouts at "
          f"{args.rate:g}/s", flush=True)
    runs = [await one_run(args, run) for run in range(1, args.runs + 1)]
    table = [("figure", "p50 s", "p99 s", "max s", "target")]
    for name, label, target in (
        ("notice", "checkout request to its template message at WeChat", f"p99 < {TARGETS_S[args.backend]:g} s"),
        ("checkout", "baseline: checkout request to its answer", "-"),
    ):
        medians = [statistics.median(p(run[name], q) for run in runs) for q in (50, 99)]
        table.append((label, f"{medians[0]:.3f}", f"{medians[1]:.3f}",
                      f"{max(max(run[name]) for run in runs):.3f}", target))
    print(f"\n{os.cpu_count()} cores; medians of {args.runs} runs; load average {load_at_start:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50, help="checkouts sent a second")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--wechat-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.database, args.wechat_port)
    elif args.backend == "sqlite" and args.workers > 1:
        parser.error("SQLite is served by one process: --workers 1")
    else:
        asyncio.run(main(args))
