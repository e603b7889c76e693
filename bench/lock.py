"""While another process holds SQLite's write lock: what `/healthz` and `/wechat` answer and how
long they take, and how often the server's event loop stalls past 50 ms, beside the same
figures from the seconds before the lock is taken (the same run, the same server).

    python bench/lock.py [--hold 20] [--before 5]

The server is bench/webhook.py's xinyi (the app with `/wechat` in safe mode, on a SQLite file of
its own). This process sends, every 0.5 s, one `GET /healthz` and one encrypted text message of
a new user; after `--before` seconds it takes the write lock with `BEGIN IMMEDIATE` on its own
connection and keeps it `--hold` seconds, then lets go. Every message must afterwards be
recorded and answered exactly once (its reply deferred as a customer-service message when the
lock kept it from the deadline), or the run fails. The loop's stalls are read from the server's
own `/metrics` (xinyi_event_loop_lag_seconds, a probe every 0.25 s).
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/lock.py: keep its folder off sys.path so `bot` and `billing` are the packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bench.webhook import Load, create_schema, first_reply, spawn
from storage.db import Database
from storage.models import WeChatMessage

EVERY_S = 0.5
STALL_S = 0.05
SETTLE_TIMEOUT_S = 60
TARGETS = {"healthz": 1.0, "wechat": 5.0}


@dataclass
class Probe:
    at: float  # seconds since the lock was taken (negative: before)
    what: str
    answer: str  # the status and what it said: ok / busy / not_writable; reply / success
    took: float


async def stalls_over(http: aiohttp.ClientSession, base: str, seconds: float) -> tuple[int, int]:
    """(samples of the loop's lag over `seconds`, all samples) from the server's /metrics."""
    async with http.get(base + "/metrics") as response:
        text = await response.text()
    buckets = {sample.labels["le"]: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "xinyi_event_loop_lag_seconds_bucket"}
    below = max(value for le, value in buckets.items() if le != "+Inf" and float(le) <= seconds)
    return int(buckets["+Inf"] - below), int(buckets["+Inf"])


async def main(args) -> None:
    load = Load(users=10_000)
    with tempfile.TemporaryDirectory(prefix="xinyi-bench-") as folder:
        path = f"{folder}/bench.db"
        database = f"sqlite+inline:///{path}"
        await create_schema(database)
        server = spawn("xinyi", database)
        base = f"http://127.0.0.1:{server.port}"
        probes: list[Probe] = []
        sent = 0
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
                await first_reply(http, server, load, time.perf_counter())
                sent += 1
                holder = sqlite3.connect(path, isolation_level=None)
                locked = False
                lag_before = lag_during = (0, 0)

                async def probe(what: str, started: float) -> None:
                    nonlocal sent
                    if what == "healthz":
                        request = http.get(base + "/healthz")
                    else:
                        message = load.build(server.account, 1)[0]
                        sent += 1
                        request = http.post(server.url, params=message.query, data=message.body)
                    async with request as response:
                        body = await response.read()
                        if what == "healthz":
                            answer = f"{response.status} {(await response.json()).get('database', 'ok')}"
                        else:
                            answer = f"{response.status} {'reply' if body.startswith(b'<xml>') else body.decode()}"
                    probes.append(Probe(started - start_lock, what, answer, time.monotonic() - started))

                start_lock = time.monotonic() + args.before
                tasks = []
                end = start_lock + args.hold
                while time.monotonic() < end + 2:
                    now = time.monotonic()
                    if not locked and now >= start_lock:
                        lag_before = await stalls_over(http, base, STALL_S)
                        holder.execute("BEGIN IMMEDIATE")
                        locked = True
                    if holder.in_transaction and now >= end:
                        holder.rollback()
                        lag_during = await stalls_over(http, base, STALL_S)
                    for what in ("healthz", "wechat"):
                        tasks.append(asyncio.create_task(probe(what, time.monotonic())))
                    await asyncio.sleep(EVERY_S)
                await asyncio.gather(*tasks)
                holder.close()
                db = Database(database)
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while time.monotonic() < deadline:
                    async with db.transaction() as session:
                        statuses = dict((await session.execute(
                            select(WeChatMessage.status, func.count()).group_by(WeChatMessage.status))).all())
                    if sum(statuses.values()) == sent and "processing" not in statuses:
                        break
                    await asyncio.sleep(0.5)
                await db.close()
        finally:
            server.process.terminate()
            server.process.wait()
    if sum(statuses.values()) != sent or "processing" in statuses:
        raise SystemExit(f"{sent} messages sent, the ledger holds {statuses}")

    def row(label: str, what: str, first_s: float, last_s: float) -> tuple[str, ...]:
        chosen = [p for p in probes if p.what == what and first_s <= p.at < last_s]
        answers = sorted({p.answer for p in chosen})
        return label, f"{len(chosen)}", f"{max(p.took for p in chosen):.3f}", ", ".join(answers)

    table = [("figure", "requests", "longest s", "answers")]
    for what in ("healthz", "wechat"):
        table += [row(f"{what} before the lock (baseline)", what, -args.before, 0),
                  row(f"{what} in the first 5 s of the hold", what, 0, 5),
                  row(f"{what} after 5 s of the hold (target: within {TARGETS[what]:g} s)", what, 5, args.hold)]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print(f"{sent} messages, each recorded and answered once (ledger: {statuses}); lock held {args.hold:g} s")
    for r in table:
        print("  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    over_during = lag_during[0] - lag_before[0]
    print(f"event loop lag probes over {STALL_S * 1000:.0f} ms: {lag_before[0]} of {lag_before[1]} before the lock (baseline), "
          f"{over_during} of {lag_during[1] - lag_before[1]} while it was held (target: 0)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the write lock is held")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of baseline before it")
    asyncio.run(main(parser.parse_args()))
