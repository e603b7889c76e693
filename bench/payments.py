"""Payments over HTTP, each figure beside a same-run baseline against the same server:

(a) gateway notices verified and applied per second: signed, AES-GCM encrypted WeChat Pay
    TRANSACTION.SUCCESS notices to POST /notify/wechatpay, and RSA2-signed Alipay notices to
    POST /notify/alipay, each settling one open trade; against GET /healthz (one SELECT 1),
    and against the verification alone in this process (no HTTP, no database);
(b) hospital charges per second: HMAC-signed POST /api/v1/visits/{visit_no}/charges;
    against the same requests with a bad signature (401 after the hospital's secret is read).

    python bench/payments.py [--notices N] [--charges N] [--runs K] [--concurrency C]

Every run has a SQLite file of its own in a temporary folder. Its bills and open trades are
written in bulk beforehand (a member, a line, a visit and a bill for each trade); then the app
(bot.app.build_app with a sandbox WeChat Pay merchant and a sandbox Alipay app whose keys are
made here and handed to it) is served in a process of its own on a free loopback port, and
loaded from an aiohttp client here with C requests in flight. Every answer is checked (204,
`success`, 201, 401), and afterwards the database must hold exactly N paid trades of each
gateway, 2N paid bills and N charges, so a fast wrong path cannot count. The load average is
printed with the table: the client shares the machine's two cores with the server.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/payments.py: keep its folder off sys.path so `bot` and `billing` are the packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import aiohttp
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, insert, select

from billing.clock import SystemClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.members import enrol
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from billing.visits import open_visit
from bench.serving import profiled, run_server
from bot.alipay import AlipayConfig, verify_notice
from bot.hospital_api import signed_headers
from bot.sandbox import alipay_gateway, wechatpay_gateway
from bot.sandbox.alipay_gateway import SandboxTrade, private_pem, public_pem
from bot.sandbox.wechatpay_gateway import Order
from bot.wechatpay import WechatPayConfig, open_notice
from storage.db import Database
from storage.models import Bill, Charge, CreditLine, Member, Trade, Visit

SECRET = "bench-secret-key-0123456789abcdef"
POLICY = "beijing-shijingshan"
PATIENT = "110105198503120012"  # 张伟 in the demo registry: the charges' patient
HOSPITAL, HOSPITAL_SECRET = "H1", "hospital-secret-0123456789"
APPID = "wx0123456789abcdef"
BILL_FEN = 5_550
FIRST_ID = 1_000  # ids of the bulk rows, past those enrol and open_visit made
TARGET_NOTICES_PER_S = 1_000
TARGET_CHARGES_PER_S = 1_500
READY_POLL_S = 0.05
READY_TIMEOUT_S = 60


def new_core(database: str) -> Core:
    return Core(db=Database(database), policy=load_policy(POLICY), pii=PiiCipher(SECRET), registry=CsvRegistry(),
                clock=SystemClock())


# --- the server, run as `payments.py --serve --port P --database URL --keys FILE` ------------


def serve(port: int, database: str, keys_file: str) -> None:
    from bot.alipay import ALIPAY_CONFIG
    from bot.app import build_app
    from bot.wechatpay import WECHATPAY_CONFIG

    logging.basicConfig(level=logging.ERROR)  # the refusals of the bad-signature baseline are expected
    keys = json.loads(Path(keys_file).read_text())
    wechatpay = keys["wechatpay"]
    app = build_app(new_core(database), background=False)
    app[WECHATPAY_CONFIG] = WechatPayConfig(
        mchid=wechatpay["mchid"], appid=wechatpay["appid"], serial_no=wechatpay["serial_no"],
        private_key=serialization.load_pem_private_key(wechatpay["private_key"].encode(), None),
        apiv3_key=wechatpay["apiv3_key"].encode(),
        platform_public_key=serialization.load_pem_public_key(wechatpay["platform_public_key"].encode()),
        platform_public_key_id=wechatpay["platform_public_key_id"], notify_url=wechatpay["notify_url"],
        api_base=wechatpay["api_base"])
    app[ALIPAY_CONFIG] = AlipayConfig(**keys["alipay"])
    run_server(app, port)


def sandbox_keys(port: int) -> tuple[WechatPayConfig, wechatpay_gateway.SandboxWechatPay, AlipayConfig,
                                     alipay_gateway.AlipaySandbox, dict]:
    """Both gateways' sandboxes with keys made here, and what the server needs to know of them."""
    base = f"http://127.0.0.1:{port}"
    wechatpay, wechatpay_sandbox = wechatpay_gateway.sandbox_merchant(
        clock=SystemClock(), appid=APPID, notify_url=f"{base}/notify/wechatpay", api_base=f"{base}/unused")
    alipay, alipay_sandbox = alipay_gateway.sandbox_merchant(
        clock=SystemClock(), notify_url=f"{base}/notify/alipay", gateway=f"{base}/unused/gateway.do")
    handed = {
        "wechatpay": {"mchid": wechatpay.mchid, "appid": wechatpay.appid, "serial_no": wechatpay.serial_no,
                      "private_key": private_pem(wechatpay.private_key), "apiv3_key": wechatpay.apiv3_key.decode(),
                      "platform_public_key": public_pem(wechatpay_sandbox.platform_key),
                      "platform_public_key_id": wechatpay.platform_public_key_id,
                      "notify_url": wechatpay.notify_url, "api_base": wechatpay.api_base},
        "alipay": dataclasses.asdict(alipay),
    }
    return wechatpay, wechatpay_sandbox, alipay, alipay_sandbox, handed


# --- the database: bills with open trades, and a visit for the charges -------------------------


def trade_no(channel: str, i: int) -> str:
    return f"XYB{channel[:2].upper()}{i:08d}"


async def prepare(database: str, notices: int) -> None:
    """A hospital, Zhang Wei enrolled with room for every charge and visit V1 open; and for each
    gateway, `notices` bills (a member, line and visit each) with an open trade."""
    core = new_core(database)
    db = core.db
    await db.create_all()
    await add_hospital(core, HOSPITAL, "基准医院", secret=HOSPITAL_SECRET)
    resident = await core.registry.lookup(PATIENT)
    await enrol(core, openid="o-bench", name=resident.name, id_number=PATIENT, phone="13800000000",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    async with db.transaction() as session:
        line = await session.scalar(select(CreditLine))
        line.limit_fen = 10**11
    await open_visit(core, HOSPITAL, {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                      "kind": "outpatient", "exclusion": None})
    now = core.clock.now()
    ids = range(FIRST_ID, FIRST_ID + 2 * notices)
    channel = {i: "wechatpay" if i - FIRST_ID < notices else "alipay" for i in ids}
    async with db.transaction() as session:
        hospital_id = await session.scalar(select(Visit.hospital_id))
        await session.execute(insert(Member), [
            {"id": i, "name": "会员", "id_number_enc": "-", "id_number_hmac": f"bench{i}", "birth_date": date(1980, 1, 1),
             "status": "active", "locale": "zh_Hans", "value_added": False, "malicious_debt": False, "created_at": now}
            for i in ids])
        await session.execute(insert(CreditLine), [
            {"id": i, "member_id": i, "kind": "outpatient", "limit_fen": 200_000, "used_fen": BILL_FEN, "created_at": now}
            for i in ids])
        await session.execute(insert(Visit), [
            {"id": i, "hospital_id": hospital_id, "visit_no": f"VB{i}", "patient_id": i, "line_id": i, "department": "内科",
             "kind": "outpatient", "on_credit": True, "reason": "ok", "status": "checked_out", "created_at": now}
            for i in ids])
        await session.execute(insert(Bill), [
            {"id": i, "bill_no": f"BB{i}", "visit_id": i, "payer_id": i, "line_id": i, "self_pay_fen": BILL_FEN,
             "paid_fen": 0, "status": "open", "issued_at": now, "due_at": now + timedelta(hours=48), "pay_token": f"T{i}"}
            for i in ids])
        await session.execute(insert(Trade), [
            {"out_trade_no": trade_no(channel[i], (i - FIRST_ID) % notices), "bill_id": i, "channel": channel[i], "amount_fen": BILL_FEN,
             "status": "created", "payer_openid": f"o-payer-{i}", "created_at": now}
            for i in ids])
    await db.close()


async def tally(database: str) -> dict[str, int]:
    db = Database(database)
    async with db.transaction() as session:
        paid = dict((await session.execute(
            select(Trade.channel, func.count()).where(Trade.status == "paid").group_by(Trade.channel))).all())
        bills = await session.scalar(select(func.count()).select_from(Bill).where(Bill.status == "paid", Bill.paid_fen == BILL_FEN))
        charges = await session.scalar(select(func.count()).select_from(Charge))
    await db.close()
    return {"wechatpay": paid.get("wechatpay", 0), "alipay": paid.get("alipay", 0), "bills": bills, "charges": charges}


# --- the requests, built before the clock starts ---------------------------------------------

Request = tuple[str, str, dict[str, str], bytes | dict[str, str] | None]  # method, path, headers, body


def wechatpay_notices(sandbox: wechatpay_gateway.SandboxWechatPay, config: WechatPayConfig, count: int) -> list[Request]:
    now = sandbox.clock.now()
    requests = []
    for i in range(count):
        order = Order(appid=config.appid, mchid=config.mchid, description="信医账单", out_trade_no=trade_no("wechatpay", i),
                      notify_url=config.notify_url, total_fen=BILL_FEN, openid=f"o-payer-{i}", time_expire=now + timedelta(minutes=30),
                      prepay_id=f"wx{i}", notice_id=f"EV-{i}", trade_state="SUCCESS",
                      transaction_id=f"4200{i:020d}", success_time=now)
        headers, body = sandbox.notice(order)
        requests.append(("POST", "/notify/wechatpay", headers, body))
    return requests


def alipay_notices(sandbox: alipay_gateway.AlipaySandbox, config: AlipayConfig, count: int) -> list[Request]:
    now = sandbox.clock.now()
    requests = []
    for i in range(count):
        out_trade_no = trade_no("alipay", i)
        sandbox.trades[out_trade_no] = SandboxTrade(
            out_trade_no=out_trade_no, trade_no=f"2026{i:024d}", total_fen=BILL_FEN, subject="信医账单",
            notify_url=config.notify_url, return_url="", created_at=now, expires_at=None, status="TRADE_SUCCESS",
            buyer_id=f"2088{i:012d}", paid_at=now)
        requests.append(("POST", "/notify/alipay", {}, sandbox.notice(out_trade_no)))
    return requests


def charges(count: int, prefix: str, secret: str) -> list[Request]:
    path, now = "/api/v1/visits/V1/charges", int(time.time())
    requests = []
    for i in range(count):
        body = json.dumps({"charge_no": f"{prefix}{i}", "category": "drug", "name": "阿莫西林", "amount_fen": 1_250}).encode()
        headers = signed_headers(HOSPITAL, secret, "POST", path, body, now, secrets.token_hex(12))
        requests.append(("POST", path, headers, body))
    return requests


def health_checks(count: int) -> list[Request]:
    return [("GET", "/healthz", {}, None)] * count


# --- the load ----------------------------------------------------------------------------------


async def per_second(http: aiohttp.ClientSession, base: str, requests: list[Request], concurrency: int,
                     expect: Callable[[int, bytes], bool]) -> float:
    """Requests answered per second with `concurrency` in flight; every answer must be `expect`ed."""
    queue = iter(requests)
    wrong: list[tuple[int, bytes]] = []

    async def worker() -> None:
        for method, path, headers, body in queue:
            async with http.request(method, base + path, headers=headers, data=body) as response:
                answer = await response.read()
                if not expect(response.status, answer):
                    wrong.append((response.status, answer[:200]))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if wrong:
        raise SystemExit(f"{len(wrong)} of {len(requests)} answers to {requests[0][1]} were wrong, e.g. {wrong[0]}")
    return len(requests) / elapsed


def pure_rate(count: int, verify: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(count):
        verify(i)
    return count / (time.perf_counter() - started)


async def until_ready(http: aiohttp.ClientSession, base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            async with http.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(READY_POLL_S)
    raise SystemExit("the server did not answer within a minute")


async def one_run(args, run: int) -> dict[str, float]:
    port = unused_port()
    wechatpay, wechatpay_sandbox, alipay, alipay_sandbox, handed = sandbox_keys(port)
    with tempfile.TemporaryDirectory(prefix="xinyi-bench-") as folder:
        database = f"sqlite+inline:///{folder}/bench.db"
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(handed))
        await prepare(database, args.notices)
        wechatpay_requests = wechatpay_notices(wechatpay_sandbox, wechatpay, args.notices)
        alipay_requests = alipay_notices(alipay_sandbox, alipay, args.notices)
        figures = {
            "wechatpay_pure": pure_rate(args.notices, lambda i: open_notice(
                wechatpay, wechatpay_requests[i][2], wechatpay_requests[i][3], datetime.now(timezone.utc))),
            "alipay_pure": pure_rate(args.notices, lambda i: verify_notice(
                alipay_requests[i][3], app_id=alipay.app_id, alipay_public_key=alipay.alipay_public_key)),
        }
        server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port), "--database", database,
                                   "--keys", str(keys_file)], env=profiled(args.profile, run))
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:
                await until_ready(http, base, server)
                # The charges are signed just before they go, well within the API's 300 s of skew.
                load: dict[str, tuple[Callable[[], list[Request]], Callable[[int, bytes], bool]]] = {
                    "healthz": (lambda: health_checks(args.notices), lambda status, _: status == 200),
                    "wechatpay": (lambda: wechatpay_requests, lambda status, _: status == 204),
                    "alipay": (lambda: alipay_requests, lambda status, answer: status == 200 and answer == b"success"),
                    "charges": (lambda: charges(args.charges, "C", HOSPITAL_SECRET), lambda status, _: status == 201),
                    "bad_signature": (lambda: charges(args.charges, "X", "not-the-secret"), lambda status, _: status == 401),
                }
                for name, (requests, expect) in load.items():
                    figures[name] = await per_second(http, base, requests(), args.concurrency, expect)
        finally:
            server.terminate()
            server.wait(timeout=30)
        counts = await tally(database)
    expected = {"wechatpay": args.notices, "alipay": args.notices, "bills": 2 * args.notices, "charges": args.charges}
    if counts != expected:
        raise SystemExit(f"run {run}: the database holds {counts}, not {expected}")
    print(f"  run {run}: " + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in figures.items()), flush=True)
    return figures


async def main(args) -> None:
    load_at_start = os.getloadavg()[0]
    print(f"{args.runs} runs: {args.notices:,} notices of each gateway, {args.charges:,} charges, "
          f"{args.concurrency} requests in flight", flush=True)
    runs = [await one_run(args, run) for run in range(1, args.runs + 1)]

    def median(name: str) -> str:
        return f"{statistics.median(r[name] for r in runs):,.0f}"

    table = [
        ("WeChat Pay notices/s, verified and applied (/healthz/s)", median("wechatpay"), median("healthz"), f">= {TARGET_NOTICES_PER_S:,}"),
        ("WeChat Pay notices/s, verified and decrypted, no HTTP or DB", median("wechatpay_pure"), "-", "-"),
        ("Alipay notices/s, verified and applied (/healthz/s)", median("alipay"), median("healthz"), f">= {TARGET_NOTICES_PER_S:,}"),
        ("Alipay notices/s, verified, no HTTP or DB", median("alipay_pure"), "-", "-"),
        ("charges/s through the signed API (bad signature, 401/s)", median("charges"), median("bad_signature"), f">= {TARGET_CHARGES_PER_S:,}"),
    ]
    header = ("figure (baseline)", "median", "baseline", "target")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(4)]
    print(f"\n{os.cpu_count()} cores, SQLite; load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for row in [header, *table]:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=2_000, help="notices of each gateway per run")
    parser.add_argument("--charges", type=int, default=2_000, help="charges per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--profile", help="write a cProfile of each run's server to PROFILE.<run>")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.database, args.keys)
    else:
        asyncio.run(main(args))
