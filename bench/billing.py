"""Billing benchmarks, each beside a same-run baseline on the same Database:

(a) charges per second through the service layer (billing.visits.post_charge), against
    bare one-row INSERT transactions of an equivalent charge row;
(b) one overdue sweep over a million bills, run as `xinyi serve` runs it (billing.sweep.sweep_apart
    on a thread of its own, the heap made at start frozen): its time, peak memory, the server
    loop's longest stall and the longest one-statement write on that loop meanwhile, against a full scan
    `SELECT count(*), sum(self_pay_fen) FROM bills` (its time and the loop's stall during it).

    python bench/billing.py [--backend sqlite|postgres|both] [--bills N] [--charges N] [--runs N] [--sweep-runs N]

PostgreSQL is the server of XINYI_BENCH_PG_URL (default
postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test); each run creates a database of
its own there and drops it. Each sweep runs in a fresh process, so that its RSS high-water
mark (getrusage) is its own; tracemalloc runs in one extra sweep, since tracing slows
Python down. The load average is printed with the table: figures taken beside other
work on a 2-core machine are slower than the machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/billing.py: keep its folder off sys.path so `billing` is the package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from multiprocessing import get_context
from typing import AsyncIterator

from sqlalchemy import Column, Integer, MetaData, String, Table, case, cast, func, insert, literal, make_url, select, text, true
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from billing.clock import FixedClock
from billing.core import Core
from billing.hospitals import add_hospital
from billing.members import enrol
from billing.pii import PiiCipher
from billing.policy import load_policy
from billing.registry import CsvRegistry
from billing.sweep import sweep_apart
from billing.visits import open_visit, post_charge
from storage.db import Database
from storage.models import Bill, Charge, CreditLine, Hospital, Member, Reminder, UtcDateTime, Visit

PG_URL = os.environ.get("XINYI_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
POLICY = "beijing-shijingshan"  # due in 48 h, reminders at 0/24/48 h, insurer advance, three ladder stages
SECRET = "bench-secret-key-0123456789abcdef"
BENCH_ID_NUMBER = "110105198001010011"
PATIENT = "110105198503120012"  # 张伟 in the demo registry
TARGET_CHARGES_PER_S = 2_000
TARGET_SWEEP_S = 15.0
TARGET_SWEEP_MB = 300
TARGET_STALL_S = 0.05
STALL_PROBE_S = 0.005
WRITE_PROBE_S = 0.02
BILLS_PER_MEMBER = 10
MEMBER_KINDS = 100  # member j is of kind (j - 1) % 100; its bills follow that kind's profile
LIMIT_FEN = 200_000


# --- databases ------------------------------------------------------------------------------
#
# Every run gets a database of its own: a SQLite file, or a PostgreSQL database on the
# server of XINYI_BENCH_PG_URL. A generated million-bill database is copied for each sweep
# (a file copy, or CREATE DATABASE ... TEMPLATE), since a sweep changes what it sweeps.


@asynccontextmanager
async def scratch_database(backend: str, template: str | None = None) -> AsyncIterator[str]:
    """The URL of an empty database, or of a copy of `template`; dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="xinyi-bench-") as folder:
            path = Path(folder) / "bench.db"
            if template is not None:
                shutil.copyfile(make_url(template).database, path)
            yield f"sqlite+inline:///{path}"
        return
    name = f"xinyi_bench_{uuid.uuid4().hex[:10]}"
    server = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    copy = f" TEMPLATE {make_url(template).database}" if template is not None else ""
    async with server.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}{copy}"))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f"DROP DATABASE {name}"))
        await server.dispose()


def new_core(db: Database) -> Core:
    return Core(db=db, policy=load_policy(POLICY), pii=PiiCipher(SECRET), registry=CsvRegistry(), clock=FixedClock(NOW))


# --- (a) charges per second -----------------------------------------------------------------


async def charges_per_second(backend: str, charges: int) -> tuple[float, float]:
    """(service, baseline) charges per second, each on a fresh database."""
    async with scratch_database(backend) as url:
        db = Database(url)
        await db.create_all()
        core = new_core(db)
        await add_hospital(core, "H1", "基准医院", secret="hospital-secret-0123456789")
        resident = await core.registry.lookup(PATIENT)
        await enrol(core, openid="o-bench", name=resident.name, id_number=PATIENT, phone="13800000000",
                    consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
        async with db.transaction() as session:  # room for every charge of the run
            line = await session.scalar(select(CreditLine))
            line.limit_fen = 10**11
        await open_visit(core, "H1", {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                      "kind": "outpatient", "exclusion": None})
        async with db.transaction() as session:
            visit_id, hospital_id = (await session.execute(select(Visit.id, Visit.hospital_id))).one()

        started = time.perf_counter()
        for i in range(charges):
            await post_charge(core, "H1", "V1", {"charge_no": f"C{i}", "category": "drug", "name": "阿莫西林",
                                                 "amount_fen": 1_250})
        service = charges / (time.perf_counter() - started)

        started = time.perf_counter()
        for i in range(charges):
            async with db.transaction() as session:
                await session.execute(insert(Charge).values(
                    hospital_id=hospital_id, visit_id=visit_id, charge_no=f"B{i}", category="drug", name="阿莫西林",
                    amount_fen=1_250, status="held", created_at=NOW,
                ))
        baseline = charges / (time.perf_counter() - started)
        await db.close()
    return service, baseline


# --- (b) the sweep over a million bills -----------------------------------------------------
#
# The data is written by INSERT ... SELECT from small profile tables, so a million rows take
# seconds and no Python memory. Bill i (from 1) belongs to member j = (i - 1) // 10 + 1, of
# kind t = (j - 1) % 100; its place k = (i - 1) % 1000 = 10 t + r picks its profile row.

helpers = MetaData()
seq_table = Table("bench_seq", helpers, Column("n", Integer, primary_key=True))
bill_profile = Table(
    "bench_bill_profile", helpers,
    Column("k", Integer, primary_key=True), Column("status", String(16)), Column("self_pay_fen", Integer),
    Column("paid_fen", Integer), Column("issued_at", UtcDateTime), Column("due_at", UtcDateTime),
    Column("overdue_at", UtcDateTime), Column("advanced_at", UtcDateTime), Column("paid_at", UtcDateTime),
)
member_profile = Table(
    "bench_member_profile", helpers,
    Column("t", Integer, primary_key=True), Column("status", String(16)), Column("status_changed_at", UtcDateTime),
    Column("used_fen", Integer),
)
reminder_profile = Table(
    "bench_reminder_profile", helpers,
    Column("k", Integer), Column("offset_hours", Integer), Column("at", UtcDateTime),
)


LAST_SWEEP = NOW - timedelta(days=1)  # the nightly sweep: this one finds a day's worth of changes


def member_kind(t: int) -> str:
    """85% always paid; 10% with a bill not yet due; 3% with a bill past due since the last
    sweep (to be suspended); 1% advanced 95 days ago (to be blacklisted); 1% late five
    times before and past due again (to be revoked: the sixth overdue)."""
    if t < 85:
        return "paid"
    if t < 95:
        return "not_due"
    if t < 98:
        return "past_due"
    return "advanced_long_ago" if t == 98 else "sixth_overdue"


def bill_row(k: int, due_hours: int) -> dict:
    t, r = divmod(k, BILLS_PER_MEMBER)
    kind = member_kind(t)
    amount = 2_000 + 137 * k % 30_000
    issued = NOW - timedelta(days=30 + 20 * r + t % 7)  # an old, paid bill by default
    row = {"k": k, "status": "paid", "self_pay_fen": amount, "paid_fen": amount, "issued_at": issued,
           "due_at": issued + timedelta(hours=due_hours), "overdue_at": None, "advanced_at": None,
           "paid_at": issued + timedelta(hours=5)}
    if kind == "sixth_overdue" and r < 5:  # paid, but late
        row["overdue_at"] = row["advanced_at"] = row["due_at"] + timedelta(hours=1)
        row["paid_at"] = row["due_at"] + timedelta(days=3)
    if r == BILLS_PER_MEMBER - 1 and kind != "paid":
        issued = {"not_due": NOW - timedelta(hours=2 + 4 * (t - 85)),  # 2 h to 38 h ago
                  "past_due": NOW - timedelta(hours=50 + 7 * (t - 95)),  # due 2, 9 and 16 h ago
                  "advanced_long_ago": NOW - timedelta(days=95),
                  "sixth_overdue": NOW - timedelta(hours=60)}[kind]
        due = issued + timedelta(hours=due_hours)
        row.update(issued_at=issued, due_at=due, paid_fen=amount // 3 if t % 2 else 0, paid_at=None,
                   status="advanced" if kind == "advanced_long_ago" else "open")
        if kind == "advanced_long_ago":
            row["overdue_at"] = row["advanced_at"] = due + timedelta(hours=1)
    return row


def reminders_sent(row: dict, offsets: tuple[int, ...]) -> list[dict]:
    """The reminders sent already: at issue, and by the last sweep."""
    if row["status"] == "paid":
        return []
    due = [o for o in offsets if row["issued_at"] + timedelta(hours=o) <= LAST_SWEEP] or [0]
    return [{"k": row["k"], "offset_hours": o, "at": row["issued_at"] + timedelta(hours=o)} for o in due]


async def generate(db: Database, bills: int) -> None:
    policy = load_policy(POLICY)
    members = bills // BILLS_PER_MEMBER
    blocks = -(-bills // 1000)
    await db.create_all()
    async with db.engine.begin() as conn:
        await conn.run_sync(helpers.create_all)
        rows = [bill_row(k, policy.due_hours) for k in range(1000)]
        await conn.execute(insert(seq_table), [{"n": n} for n in range(max(1000, blocks))])
        await conn.execute(insert(bill_profile), rows)
        await conn.execute(insert(reminder_profile), [r for row in rows for r in reminders_sent(row, policy.reminder_offsets_hours)])
        await conn.execute(insert(member_profile), [
            {"t": t, "status": "suspended" if member_kind(t) == "advanced_long_ago" else "active",
             "status_changed_at": NOW - timedelta(days=92),
             "used_fen": sum(r["self_pay_fen"] - r["paid_fen"] for r in rows[10 * t:10 * t + 10] if r["status"] != "paid")}
            for t in range(MEMBER_KINDS)
        ])
        await conn.execute(insert(Hospital).values(id=1, code="H1", name="基准医院", secret_enc="-", created_at=NOW))

        a, b = seq_table.alias("a"), seq_table.alias("b")
        member_id = a.c.n * 1000 + b.c.n + 1
        mp = member_profile
        await conn.execute(insert(Member).from_select(
            ["id", "name", "id_number_enc", "id_number_hmac", "birth_date", "status", "locale", "value_added",
             "malicious_debt", "status_changed_at", "created_at"],
            # One real ciphertext for every member: the sweep's programme events decrypt it to mask it.
            select(member_id, literal("会员"), literal(PiiCipher(SECRET).encrypt(BENCH_ID_NUMBER)),
                   literal("h") + cast(member_id, String), literal(date(1980, 1, 1)),
                   mp.c.status, literal("zh_Hans"), literal(False), literal(False),
                   case((mp.c.status == "suspended", mp.c.status_changed_at), else_=None), literal(NOW))
            .select_from(a.join(b, true()).join(mp, mp.c.t == b.c.n % MEMBER_KINDS))
            .where(member_id <= members),
        ))
        await conn.execute(insert(CreditLine).from_select(
            ["id", "member_id", "kind", "limit_fen", "used_fen", "created_at"],
            select(Member.id, Member.id, literal("outpatient"), literal(LIMIT_FEN), mp.c.used_fen, literal(NOW))
            .join(mp, mp.c.t == (Member.id - 1) % MEMBER_KINDS),
        ))
        bill_id = a.c.n * 1000 + b.c.n + 1
        payer_id = a.c.n * (1000 // BILLS_PER_MEMBER) + b.c.n // BILLS_PER_MEMBER + 1
        bp = bill_profile
        joined = a.join(b, true()).join(bp, bp.c.k == b.c.n)
        await conn.execute(insert(Visit).from_select(
            ["id", "hospital_id", "visit_no", "patient_id", "line_id", "department", "kind", "on_credit", "reason",
             "status", "created_at"],
            select(bill_id, literal(1), literal("V") + cast(bill_id, String), payer_id, payer_id, literal("内科"),
                   literal("outpatient"), literal(True), literal("ok"), literal("checked_out"), bp.c.issued_at)
            .select_from(joined).where(bill_id <= bills),
        ))
        await conn.execute(insert(Bill).from_select(
            ["id", "bill_no", "visit_id", "payer_id", "line_id", "self_pay_fen", "paid_fen", "status", "issued_at",
             "due_at", "overdue_at", "advanced_at", "paid_at", "pay_token"],
            select(bill_id, literal("B") + cast(bill_id, String), bill_id, payer_id, payer_id, bp.c.self_pay_fen,
                   bp.c.paid_fen, bp.c.status, bp.c.issued_at, bp.c.due_at, bp.c.overdue_at, bp.c.advanced_at,
                   bp.c.paid_at, literal("T") + cast(bill_id, String))
            .select_from(joined).where(bill_id <= bills),
        ))
        rp = reminder_profile
        await conn.execute(insert(Reminder).from_select(
            ["bill_id", "offset_hours", "at"],
            select(bill_id, rp.c.offset_hours, rp.c.at)
            .select_from(a.join(b, true()).join(rp, rp.c.k == b.c.n)).where(bill_id <= bills),
        ))
        await conn.run_sync(helpers.drop_all)
        if db.engine.dialect.name == "postgresql":  # the ids were given: move the sequences past them
            for table in ("members", "credit_lines", "visits", "bills"):
                await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))


@dataclass
class SweepFigures:
    seconds: float
    rss_before_mb: float  # the process's high-water mark before the sweep: Python and the libraries
    rss_delta_mb: float
    traced_peak_mb: float | None
    baseline_s: float
    stall_s: float  # the event loop's longest stall during the sweep
    baseline_stall_s: float  # ... during the full scan
    write_wait_s: float  # the longest one-statement write on the server's loop during the sweep
    report: str


def sweep_in_fresh_process(url: str, trace: bool) -> SweepFigures:
    return asyncio.run(_sweep(url, trace))


async def _sweep(url: str, trace: bool) -> SweepFigures:
    db = Database(url)
    core = new_core(db)
    gc.freeze()  # as `xinyi serve` does once started (bot/server.py's served_app)
    started = time.perf_counter()
    async with longest_stall() as baseline_stall:
        async with db.transaction() as session:
            await session.execute(select(func.count(), func.sum(Bill.self_pay_fen)))
    baseline_s = time.perf_counter() - started
    if trace:
        tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    async with longest_stall() as stall, longest_write_wait(db) as write_wait:
        report = await sweep_apart(core)  # as `xinyi serve` runs it
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    await db.close()
    return SweepFigures(seconds, rss_before / 1024, (rss_after - rss_before) / 1024, traced_peak_mb, baseline_s,
                        stall[0], baseline_stall[0], write_wait[0], str(report))


@asynccontextmanager
async def longest_write_wait(db: Database) -> AsyncIterator[list[float]]:
    """The longest a one-statement write transaction on the server's loop (a request's) took,
    sent every WRITE_PROBE_S while the body runs: how long the sweep's batches hold the database."""
    longest = [0.0]

    async def probe() -> None:
        while True:
            started = time.perf_counter()
            await db.run(lambda session: session.execute(text("SELECT 1")))
            longest[0] = max(longest[0], time.perf_counter() - started)
            await asyncio.sleep(WRITE_PROBE_S)

    task = asyncio.create_task(probe())
    try:
        yield longest
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def longest_stall() -> AsyncIterator[list[float]]:
    """The longest time the event loop was kept from a task that sleeps STALL_PROBE_S at a time,
    while the body runs (as the web server's requests would be kept waiting)."""
    loop, longest = asyncio.get_running_loop(), [0.0]

    async def probe() -> None:
        while True:
            asleep = loop.time()
            await asyncio.sleep(STALL_PROBE_S)
            longest[0] = max(longest[0], loop.time() - asleep - STALL_PROBE_S)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)  # the probe is asleep before the body starts
    try:
        yield longest
    finally:
        await asyncio.sleep(STALL_PROBE_S * 2)  # a stall at the very end is measured too
        task.cancel()


async def sweeps(backend: str, bills: int, timed_runs: int) -> tuple[list[SweepFigures], SweepFigures]:
    """`timed_runs` sweeps, then one under tracemalloc, each on a copy of one generated database."""
    async with scratch_database(backend) as source:
        db = Database(source)
        started = time.perf_counter()
        await generate(db, bills)
        await db.close()
        print(f"  {bills:,} bills generated in {time.perf_counter() - started:.1f} s", flush=True)
        figures = []
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            for run in range(timed_runs + 1):
                trace = run == timed_runs
                async with scratch_database(backend, template=source) as url:
                    f = await asyncio.get_running_loop().run_in_executor(pool, sweep_in_fresh_process, url, trace)
                print(f"  sweep {f.seconds:.2f} s, RSS {f.rss_before_mb:.0f} MB +{f.rss_delta_mb:.0f} MB"
                      + (f", {f.traced_peak_mb:.0f} MB traced" if trace else "") + f", loop stalled {f.stall_s * 1000:.0f} ms, a write waited {f.write_wait_s * 1000:.0f} ms"
                      + f", full scan {f.baseline_s:.2f} s (stalled {f.baseline_stall_s * 1000:.0f} ms): {f.report}",
                      flush=True)
                figures.append(f)
    return figures[:-1], figures[-1]


# --- the table ------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--bills", type=int, default=1_000_000)
    parser.add_argument("--charges", type=int, default=2_000, help="charges per run")
    parser.add_argument("--runs", type=int, default=5, help="runs of the charge benchmark")
    parser.add_argument("--sweep-runs", type=int, default=3, help="timed sweeps (plus one traced)")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    load_at_start = os.getloadavg()[0]

    table: list[tuple[str, str, str, str]] = []
    for backend in backends:
        print(f"{backend}: {args.runs} runs of {args.charges:,} charges", flush=True)
        runs = [await charges_per_second(backend, args.charges) for _ in range(args.runs)]
        service, baseline = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        target = f">= {TARGET_CHARGES_PER_S:,}" if backend == "sqlite" else "-"
        table.append((f"{backend}: charges/s via post_charge (bare INSERT/s)", f"{service:,.0f}", f"{baseline:,.0f}", target))

    for backend in backends:
        print(f"{backend}: {args.sweep_runs} timed sweeps and 1 traced sweep over {args.bills:,} bills", flush=True)
        timed, traced = await sweeps(backend, args.bills, args.sweep_runs)
        scan = statistics.median(f.baseline_s for f in timed)
        table += [
            (f"{backend}: sweep of {args.bills:,} bills, s (full scan, s)", f"{statistics.median(f.seconds for f in timed):.2f}",
             f"{scan:.2f}", f"< {TARGET_SWEEP_S:.0f}"),
            (f"{backend}: sweep RSS high-water rise, MB (RSS before, MB)", f"{statistics.median(f.rss_delta_mb for f in timed):.0f}",
             f"{statistics.median(f.rss_before_mb for f in timed):.0f}", f"< {TARGET_SWEEP_MB}"),
            (f"{backend}: sweep tracemalloc peak, MB", f"{traced.traced_peak_mb:.0f}", "-", f"< {TARGET_SWEEP_MB}"),
            (f"{backend}: event loop's longest stall in the sweep, ms (in the full scan, ms)",
             f"{statistics.median(f.stall_s for f in timed) * 1000:.0f}",
             f"{statistics.median(f.baseline_stall_s for f in timed) * 1000:.0f}", f"< {TARGET_STALL_S * 1000:.0f}"),
            (f"{backend}: longest one-statement write beside the sweep, ms", f"{statistics.median(f.write_wait_s for f in timed) * 1000:.0f}",
             "-", "-"),
        ]

    widths = [max(len(row[i]) for row in table + [("figure", "median", "baseline", "target")]) for i in range(4)]
    print(f"\n{os.cpu_count()} cores; load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for row in [("figure", "median", "baseline", "target"), *table]:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    asyncio.run(main())
