"""The programme's figures (billing.reports.programme_figures) over a million bills, beside a
same-run baseline on the same database: a full scan `SELECT count(*), sum(self_pay_fen) FROM bills`.

For each of three scopes (the whole history, the last 30 days, one hospital's whole history):
the median seconds of `--runs` calls, the server loop's longest stall while they run (the
figures are read on a thread of their own) and the longest one-statement write on that loop
meanwhile (on SQLite the read takes its turn in the writers' queue).

    python bench/stats.py [--backend sqlite|postgres|both] [--bills N] [--runs N]

The bills are bench/billing.py's (ten a member, issued over the last seven months, 85% of the
members paid up); each paid bill gets its payment, and each member a day of enrolment.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/stats.py: keep its folder off sys.path so `billing` is the package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import os
import statistics
import time
from datetime import date, timedelta

from sqlalchemy import String, cast, func, insert, literal, select, text, update

from bench.billing import NOW, generate, longest_stall, longest_write_wait, new_core, scratch_database
from billing.clock import CHINA_TIME
from billing.reports import Scope, programme_figures
from storage.db import Database
from storage.models import Bill, Member, Payment

TODAY = NOW.astimezone(CHINA_TIME).date()
ENROLMENT_DAYS = 200
SCOPES = {
    "whole history": Scope(date(2025, 1, 1), TODAY + timedelta(days=1)),
    "last 30 days": Scope(TODAY - timedelta(days=29), TODAY + timedelta(days=1)),
    "one hospital, whole history": Scope(date(2025, 1, 1), TODAY + timedelta(days=1), hospital="H1"),
}


async def add_payments_and_enrolments(db: Database) -> None:
    async with db.engine.begin() as conn:
        for spread in range(ENROLMENT_DAYS):  # members enrolled over the last ENROLMENT_DAYS days, evenly
            await conn.execute(update(Member).where(Member.id % ENROLMENT_DAYS == spread)
                               .values(commitment_signed_at=NOW - timedelta(days=spread)))
        await conn.execute(insert(Payment).from_select(
            ["source", "payment_no", "bill_id", "channel", "amount_fen", "applied_fen", "created_at"],
            select(literal("H1"), literal("P") + cast(Bill.id, String), Bill.id, literal("window"),
                   Bill.paid_fen, Bill.paid_fen, func.coalesce(Bill.paid_at, Bill.issued_at)).where(Bill.paid_fen > 0),
        ))
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))


async def full_scan(db: Database) -> float:
    started = time.perf_counter()
    async with db.transaction() as session:
        await session.execute(select(func.count(), func.sum(Bill.self_pay_fen)))
    return time.perf_counter() - started


async def measure(backend: str, bills: int, runs: int) -> list[tuple[str, str, str]]:
    rows = []
    async with scratch_database(backend) as url:
        db = Database(url)
        started = time.perf_counter()
        await generate(db, bills)
        await add_payments_and_enrolments(db)
        print(f"{backend}: {bills:,} bills and their payments generated in {time.perf_counter() - started:.1f} s", flush=True)
        core = new_core(db)
        baseline = statistics.median([await full_scan(db) for _ in range(runs)])
        for name, scope in SCOPES.items():
            seconds, stalls, writes = [], [], []
            for _ in range(runs):
                async with longest_stall() as stall, longest_write_wait(db) as write:
                    started = time.perf_counter()
                    figures = await programme_figures(core, scope)
                    seconds.append(time.perf_counter() - started)
                stalls.append(stall[0])
                writes.append(write[0])
            print(f"  {name}: {statistics.median(seconds):.2f} s; {figures.bills_issued:,} bills, "
                  f"{figures.credit_fen:,} fen, overdue rate {figures.overdue_rate}", flush=True)
            rows += [
                (f"{backend}: figures, {name}, s (full scan, s)", f"{statistics.median(seconds):.2f}", f"{baseline:.2f}"),
                (f"{backend}: loop's longest stall meanwhile, ms", f"{statistics.median(stalls) * 1000:.0f}", "-"),
                (f"{backend}: longest one-statement write meanwhile, ms", f"{statistics.median(writes) * 1000:.0f}", "-"),
            ]
        await db.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--bills", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    table = []
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        table += await measure(backend, args.bills, args.runs)
    header = ("figure", "median", "baseline")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(3)]
    print(f"\n{os.cpu_count()} cores; load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for row in [header, *table]:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    asyncio.run(main())
