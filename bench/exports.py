"""Export benchmark: the insurer's overdue list of `--bills` overdue bills written as CSV and as
XLSX (bot.export_files over billing.exports.overdue_bills, as `xinyi export` and the console
run them), beside the same query read without writing anything (the baseline): rows per
second, the RSS high-water rise, and the event loop's longest stall while it runs.

    python bench/exports.py [--backend sqlite|postgres|both] [--bills N] [--runs N] [--formats csv xlsx]

Each run is a fresh process (its RSS high-water mark is its own) on one generated database:
`--bills` overdue bills, five to a member, each member with a real encrypted ID number and
phone, so that decrypting and masking cost what they cost in production. PostgreSQL is the
server of XINYI_BENCH_PG_URL, as for bench/billing.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/exports.py: keep its folder off sys.path so `billing` is the package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from multiprocessing import get_context
from typing import AsyncIterator

from sqlalchemy import insert, text

from bench.billing import NOW, STALL_PROBE_S, new_core, scratch_database
from billing.exports import Scope
from bot.export_files import OVERDUE, counted, write_export
from storage.db import Database
from storage.models import Bill, CreditLine, Hospital, Member, Visit

BILLS_PER_MEMBER = 5
INSERT_ROWS = 20_000
TARGET_STALL_S = 0.05
BASELINE = "query only"


async def generate(url: str, bills: int) -> None:
    db = Database(url)
    await db.create_all()
    core = new_core(db)
    members = -(-bills // BILLS_PER_MEMBER)
    async with db.engine.begin() as conn:
        await conn.execute(insert(Hospital).values(id=1, code="H1", name="基准医院", secret_enc="-", created_at=NOW))
        for start in range(1, members + 1, INSERT_ROWS):
            ids = range(start, min(start + INSERT_ROWS, members + 1))
            await conn.execute(insert(Member), [
                {"id": m, "name": "会员", "id_number_enc": core.pii.encrypt(f"110105198001{m % 100:02d}{m % 10000:04d}"),
                 "id_number_hmac": f"h{m}", "phone_enc": core.pii.encrypt(f"138{m:08d}"), "birth_date": date(1980, 1, 1),
                 "status": "suspended", "locale": "zh_Hans", "value_added": False, "malicious_debt": False,
                 "created_at": NOW} for m in ids])
            await conn.execute(insert(CreditLine), [
                {"id": m, "member_id": m, "kind": "outpatient", "limit_fen": 200_000, "used_fen": 0, "created_at": NOW}
                for m in ids])
        for start in range(1, bills + 1, INSERT_ROWS):
            ids = range(start, min(start + INSERT_ROWS, bills + 1))
            await conn.execute(insert(Visit), [
                {"id": b, "hospital_id": 1, "visit_no": f"V{b}", "patient_id": (b - 1) // BILLS_PER_MEMBER + 1,
                 "line_id": (b - 1) // BILLS_PER_MEMBER + 1, "department": "内科", "kind": "outpatient", "on_credit": True,
                 "reason": "ok", "status": "checked_out", "created_at": NOW - timedelta(days=40)} for b in ids])
            await conn.execute(insert(Bill), [
                {"id": b, "bill_no": f"B{b:010d}", "visit_id": b, "payer_id": (b - 1) // BILLS_PER_MEMBER + 1,
                 "line_id": (b - 1) // BILLS_PER_MEMBER + 1, "self_pay_fen": 2_000 + 137 * b % 30_000,
                 "paid_fen": (2_000 + 137 * b % 30_000) // 3 if b % 2 else 0, "status": "advanced",
                 "issued_at": NOW - timedelta(days=40, hours=b % 200), "due_at": NOW - timedelta(days=38, hours=b % 200),
                 "overdue_at": NOW - timedelta(days=38), "advanced_at": NOW - timedelta(days=38),
                 "pay_token": f"T{b}"} for b in ids])
        if db.engine.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE"))
    await db.close()


@asynccontextmanager
async def longest_stalls() -> AsyncIterator[list[float]]:
    """[wall, cpu]: the longest time the loop kept a task that sleeps STALL_PROBE_S at a time
    waiting, by the clock (what a request would feel) and in the loop thread's CPU time (what
    the export's own work held it for; on a loaded machine the clock also counts the time the
    system gave the cores to other processes)."""
    longest = [0.0, 0.0]

    async def probe() -> None:
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(STALL_PROBE_S)
            longest[0] = max(longest[0], time.perf_counter() - wall - STALL_PROBE_S)
            longest[1] = max(longest[1], time.thread_time() - cpu)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    try:
        yield longest
    finally:
        await asyncio.sleep(STALL_PROBE_S * 2)
        task.cancel()


@dataclass
class Figures:
    seconds: float
    rows: int
    rss_before_mb: float
    rss_delta_mb: float
    stall_s: float
    stall_cpu_s: float
    output_mb: float


def export_in_fresh_process(url: str, mode: str) -> Figures:
    return asyncio.run(_export(url, mode))


async def _export(url: str, mode: str) -> Figures:
    db = Database(url)
    core = new_core(db)
    rows = [0]

    def tick(n: int) -> None:
        rows[0] += n

    stream = counted(OVERDUE.rows(core, NOW, Scope()), tick)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="xinyi-bench-export-") as folder:
        path = Path(folder) / f"overdue.{mode}"
        async with longest_stalls() as stall:
            started = time.perf_counter()
            if mode == BASELINE:
                async for _ in stream:
                    pass
            else:
                with path.open("wb") as target:
                    await write_export(OVERDUE, mode, stream, "zh_Hans", target)
            seconds = time.perf_counter() - started
        size = path.stat().st_size if path.exists() else 0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await db.close()
    return Figures(seconds, rows[0], rss_before / 1024, (rss_after - rss_before) / 1024, stall[0], stall[1],
                   size / 2**20)


async def run_backend(backend: str, bills: int, runs: int, formats: list[str]) -> list[tuple[str, ...]]:
    modes = [BASELINE, *formats]
    table = []
    async with scratch_database(backend) as url:
        started = time.perf_counter()
        await generate(url, bills)
        print(f"{backend}: {bills:,} overdue bills generated in {time.perf_counter() - started:.1f} s", flush=True)
        figures: dict[str, list[Figures]] = {mode: [] for mode in modes}
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            for run in range(runs):
                for mode in modes:  # interleaved, so that a change in the machine's load touches each alike
                    f = await asyncio.get_running_loop().run_in_executor(pool, export_in_fresh_process, url, mode)
                    assert f.rows == bills, (mode, f.rows)
                    figures[mode].append(f)
                    print(f"  {mode}: {f.seconds:.2f} s, {f.rows / f.seconds:,.0f} rows/s, RSS {f.rss_before_mb:.0f} MB "
                          f"+{f.rss_delta_mb:.0f} MB, loop stalled {f.stall_s * 1000:.0f} ms ({f.stall_cpu_s * 1000:.0f} ms CPU), "
                          f"{f.output_mb:.1f} MB written",
                          flush=True)
    for mode in modes:
        runs_of = figures[mode]
        table.append((f"{backend}: {mode}, {bills:,} bills",
                      f"{statistics.median(f.rows / f.seconds for f in runs_of):,.0f}",
                      f"{statistics.median(f.rss_delta_mb for f in runs_of):.0f}",
                      f"{statistics.median(f.stall_s for f in runs_of) * 1000:.0f}",
                      f"{statistics.median(f.stall_cpu_s for f in runs_of) * 1000:.0f}",
                      f"{statistics.median(f.output_mb for f in runs_of):.1f}"))
    return table


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--bills", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", nargs="+", choices=["csv", "xlsx"], default=["csv", "xlsx"])
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    table = []
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        table += await run_backend(backend, args.bills, args.runs, args.formats)
    header = ("median of runs (the query only is the baseline)", "rows/s", "RSS rise MB", "longest stall ms",
              "its CPU ms", "file MB")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    print(f"\n{os.cpu_count()} cores; load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
          f"target: the longest stall < {TARGET_STALL_S * 1000:.0f} ms")
    for row in [header, *table]:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    asyncio.run(main())
