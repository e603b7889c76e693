"""A simulated city day (issue 14): a seeded Xiamen day played against `xinyi serve --workers N` on
PostgreSQL through the real HTTP contracts, swept, audited and checked against the generator's
ledger; `--workers 1` and `--workers 2` side by side, the first the same-run baseline.

    python bench/cityday.py [--seed 14] [--visits 100000] [--charges-per-visit 3] [--workers 1,2] [--concurrency 16]
                            [--outage-s 10]

Each run gets a database of its own on the server of XINYI_BENCH_PG_URL (default
postgresql+asyncpg://postgres@127.0.0.1:55432/xinyi_test), dropped afterwards. bench/city_day.py
makes the day, bench/city_replay.py plays it (see there what goes over which contract). Printed:
requests, throughput, p50 and p99 latency per endpoint; each worker's CPU per request over the
replay (/proc/PID/stat, its requests counted in its access log); the end-of-day `xinyi sweep
--now` beside a sweep of the same programme before the day (the process, its connections,
nothing to do); `xinyi audit`; and every difference from the generator's ledger. With
`--outage-s`, each run is served by a PostgreSQL cluster of its own (bench/pg_cluster.py), which
is stopped for that long once 40% of the visits are done: the 503s answered are printed too. The load
generator and the outside world (fake WeChat, both payment sandboxes) share the machine's cores
with the server. Exits 1 on any unexpected answer, audit breach or difference.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/cityday.py: keep its folder off sys.path so the packages are found.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import asyncio
import os
import tempfile
import time
import uuid

from sqlalchemy import make_url

from bench.city_day import DAY_END_S, DAY_START_S, Day, make_day
from bench.city_replay import Outage, Run, run_day
from bench.pg_cluster import PgCluster
from bench.workers import PG_URL, admin


async def one_run(day: Day, workers: int, concurrency: int, outage_s: float | None) -> Run:
    if outage_s is not None:
        cluster = PgCluster()
        cluster.start()
        try:
            cluster.createdb("xinyi")
            with tempfile.TemporaryDirectory() as folder:
                return await run_day(cluster.url("xinyi"), day, workers, Path(folder), concurrency,
                                     Outage(stop=cluster.stop, start=cluster.start, seconds=outage_s))
        finally:
            cluster.remove()
    url = make_url(PG_URL).set(database=f"xinyi_cityday_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    await admin(url, f"CREATE DATABASE {make_url(url).database}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            return await run_day(url, day, workers, Path(folder), concurrency)
    finally:
        await admin(url, f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


def report(day: Day, runs: list[Run], made_s: float, concurrency: int) -> None:
    paid = sum(1 for visit in day.visits if visit.channel)
    print(f"city day, seed {day.seed}: {len(day.visits):,} visits, {day.charges:,} charges, {len(day.members):,} members, "
          f"{len(day.dependants):,} dependants; {paid:,} bills paid by notice "
          f"({sum(visit.copies for visit in day.visits if visit.channel):,} notices, "
          f"{sum(visit.late for visit in day.visits):,} late), {len(day.visits) - paid:,} left to the sweep; "
          f"made in {made_s:.1f} s; {concurrency} visits at once")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (the client and the outside world share them)\n")
    figures = [run.tally.figures() for run in runs]
    print(f"{'endpoint':<42}" + "".join(f"{f'{run.workers} worker(s): n, /s, p50, p99 ms':>44}" for run in runs))
    for endpoint in sorted(set().union(*figures)):
        cells = []
        for figure in figures:
            n, per_s, p50, p99 = figure.get(endpoint, (0, 0.0, 0.0, 0.0))
            cells.append(f"{n:>10,} {per_s:>9.0f} {p50:>9.1f} {p99:>10.1f}   ")
        print(f"{endpoint:<42}" + "".join(f"{cell:>44}" for cell in cells))
    print()
    for run in runs:
        requests, cpu = sum(run.requests.values()), sum(run.cpu_s.values())
        each = ", ".join(f"pid {pid}: {run.cpu_s[pid]:.1f} s for {run.requests[pid]:,} requests" for pid in sorted(run.cpu_s))
        print(f"{run.workers} worker(s): the day in {run.replay_s:.1f} s ({(DAY_END_S - DAY_START_S) / run.replay_s:.0f}x real time), "
              f"{requests / run.replay_s:.0f} requests/s; worker CPU {cpu * 1000 / max(requests, 1):.2f} ms a request ({each})")
        print(f"    the bench's own process (the load, the fake WeChat, both gateways): "
              f"{run.client_cpu_s * 1000 / max(requests, 1):.2f} ms CPU a request")
        print(f"    outbox drained {run.drain_s:.1f} s after the last answer, {run.dead_messages} messages dead")
        print(f"    sweep --now past the due date: {run.sweep_s:.2f} s (before the day: {run.idle_sweep_s:.2f} s): {run.sweep_said}")
        print(f"    xinyi audit (exit {run.audit_code}): {run.audit_said.splitlines()[-1]}")
        unexpected = dict(run.tally.unexpected)
        print(f"    unexpected answers: {unexpected or 'none'}; 5xx: {run.tally.server_errors}; "
              f"differences from the ledger: {len(run.differences)}")
        if run.tally.unavailable:
            print(f"    503 while PostgreSQL was down, each tried again: {dict(run.tally.unavailable)}")
        for difference in run.differences[:10]:
            print(f"      {difference}")


async def main(args) -> int:
    started = time.perf_counter()
    day = make_day(args.seed, args.visits, args.charges_per_visit)
    made_s = time.perf_counter() - started
    runs = [await one_run(day, int(workers), args.concurrency, args.outage_s) for workers in args.workers.split(",")]
    report(day, runs, made_s, args.concurrency)
    return int(any(run.tally.unexpected or run.audit_code or run.differences or run.dead_messages for run in runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--charges-per-visit", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="the runs, the first the baseline")
    parser.add_argument("--concurrency", type=int, default=16, help="visits played at once")
    parser.add_argument("--outage-s", type=float, help="stop PostgreSQL (a cluster of the run's own) this long mid-day")
    sys.exit(asyncio.run(main(parser.parse_args())))
