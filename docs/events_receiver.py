"""A receiver of xinyi's programme events (README, "Programme events"), small enough to read
whole and to adapt. It needs Python 3.11 and aiohttp, nothing of xinyi.

    XINYI_EVENTS_SECRET=the-shared-secret python docs/events_receiver.py --port 9000 --db events.db

and on the xinyi side: XINYI_EVENTS_URL=http://127.0.0.1:9000/xinyi/events with the same secret.

For each POST it checks, in this order, and answers 401 when one fails: the three X-Xinyi-*
headers are there; X-Xinyi-Timestamp is within 300 s of this machine's clock; X-Xinyi-Signature
is the hex HMAC-SHA256, with the secret, of
`POST\\nPATH_WITH_QUERY\\nX-Xinyi-Timestamp\\nX-Xinyi-Nonce\\nSHA256_HEX(BODY)`, compared in
constant time; the nonce was not used before. A body that is not an event gets 400, which
xinyi parks as refused. Then the event is stored once by its event_id (a repeat is answered
200 and stored no second time) and only then answered 200: xinyi retries anything but a 2xx,
so an event is never lost between the two.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import time
from typing import Any, Callable

from aiohttp import web

PATH = "/xinyi/events"
MAX_SKEW_S = 300
FIELDS = ("event", "event_id", "occurred_at", "data")


def signature(secret: str, path_qs: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join(("POST", path_qs, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class EventStore:
    """Events by event_id, and the nonces of the last MAX_SKEW_S seconds, in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, event TEXT NOT NULL, "
                        "occurred_at TEXT NOT NULL, data TEXT NOT NULL, received_at REAL NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, at INTEGER NOT NULL)")

    def first_use_of(self, nonce: str, timestamp: int) -> bool:
        self.db.execute("DELETE FROM nonces WHERE at < ?", (timestamp - 2 * MAX_SKEW_S,))
        return self.db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?)", (nonce, timestamp)).rowcount == 1

    def add(self, event: dict[str, Any], now: float) -> bool:
        """Store the event unless its event_id is stored already; True when it was new."""
        return self.db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)", (
            event["event_id"], event["event"], event["occurred_at"], json.dumps(event["data"], ensure_ascii=False), now,
        )).rowcount == 1

    def events(self) -> list[dict[str, Any]]:
        """What was received, in the order it first arrived."""
        rows = self.db.execute("SELECT event, event_id, occurred_at, data FROM events ORDER BY received_at, rowid")
        return [{"event": e, "event_id": i, "occurred_at": o, "data": json.loads(d)} for e, i, o, d in rows]


def make_app(secret: str, store: EventStore, now: Callable[[], float] = time.time) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        timestamp, nonce, given = (request.headers.get(f"X-Xinyi-{name}", "") for name in ("Timestamp", "Nonce", "Signature"))
        if not (timestamp.isdigit() and nonce and given):
            return web.json_response({"error": "unsigned"}, status=401)
        if abs(now() - int(timestamp)) > MAX_SKEW_S:
            return web.json_response({"error": "stale_timestamp"}, status=401)
        # raw_path is the path and query exactly as on the request line, as xinyi signed them.
        if not hmac.compare_digest(signature(secret, request.raw_path, timestamp, nonce, body), given.lower()):
            return web.json_response({"error": "bad_signature"}, status=401)
        if not store.first_use_of(nonce, int(timestamp)):
            return web.json_response({"error": "replayed_nonce"}, status=401)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict) or any(field not in event for field in FIELDS):
            return web.json_response({"error": "not_an_event"}, status=400)
        new = store.add(event, now())
        return web.json_response({"stored": new, "duplicate": not new})

    app = web.Application()
    app.router.add_post(PATH, receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="receive xinyi's programme events")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--db", default="events.db", help="the SQLite file the events are stored in")
    args = parser.parse_args()
    secret = os.environ.get("XINYI_EVENTS_SECRET")
    if not secret:
        parser.exit(1, "error: set XINYI_EVENTS_SECRET to the secret xinyi signs with\n")
    web.run_app(make_app(secret, EventStore(args.db)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
