"""The sandbox's stand-in of the insurer's system, at /sandbox/insurer: where a sandbox xinyi
sends its programme events unless XINYI_EVENTS_URL names a receiver of your own.

It checks each event as a receiver should (README, "Programme events"): the signature, a
timestamp within 300 s of its clock, a nonce not seen before; it keeps the first delivery of
each event_id and answers a repeat with 200 too. The console shows what it got beside the
phone simulator. What it got lives in this process only, as the fake WeChat's record does.
"""
from __future__ import annotations

import hashlib
import hmac
from collections import deque
from typing import Any

from aiohttp import web

from billing.clock import Clock
from billing.validate import BadJson, loads_json, printable_ascii, whole_number
from bot.hospital_api import MAX_SKEW_S, signature

MOUNT = "/sandbox/insurer"
EVENTS_PATH = MOUNT + "/events"
KEPT = 500  # events shown; older ones are forgotten, their ids too


def sandbox_secret(secret_key: str) -> str:
    """The sandbox insurer's events secret, derived from the programme's key: `xinyi serve` and a
    `xinyi sweep` run beside it sign alike without another setting."""
    return hmac.new(secret_key.encode(), b"xinyi sandbox insurer events", hashlib.sha256).hexdigest()


class SandboxInsurer:
    def __init__(self, secret: str, clock: Clock) -> None:
        self.secret = secret
        self.clock = clock
        self.received: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.nonces: dict[str, int] = {}  # nonce -> its timestamp, kept while such a timestamp is accepted
        self.refused = 0

    def problem(self, headers, path_qs: str, body: bytes) -> str | None:
        """Why this request is not a genuine, fresh event from xinyi; None when it is."""
        timestamp, nonce, given = (headers.get(f"X-Xinyi-{name}", "") for name in ("Timestamp", "Nonce", "Signature"))
        seconds = whole_number(timestamp, 12)
        if seconds is None or not printable_ascii(nonce, 64) or not printable_ascii(given, 64):
            return "unsigned"
        now = int(self.clock.now().timestamp())
        if abs(now - seconds) > MAX_SKEW_S:
            return "stale_timestamp"
        if not hmac.compare_digest(signature(self.secret, "POST", path_qs, timestamp, nonce, body), given.lower()):
            return "bad_signature"
        self.nonces = {n: at for n, at in self.nonces.items() if abs(now - at) <= MAX_SKEW_S}
        if nonce in self.nonces:
            return "replayed_nonce"
        self.nonces[nonce] = seconds
        return None

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        problem = self.problem(request.headers, request.raw_path, body)
        if problem is not None:
            self.refused += 1
            return web.json_response({"error": problem}, status=401)
        try:
            event = loads_json(body)
        except BadJson:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
            return web.json_response({"error": "not_an_event"}, status=400)
        if any(seen["event_id"] == event["event_id"] for seen in self.received):
            return web.json_response({"duplicate": True})
        self.received.append({**event, "received_at": self.clock.now().isoformat()})
        return web.json_response({"received": True})

    def newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self.received))


INSURER = web.AppKey("sandbox_insurer", SandboxInsurer)


def setup(app: web.Application, insurer: SandboxInsurer) -> None:
    app[INSURER] = insurer
    app.router.add_post(EVENTS_PATH, insurer.receive)
    app.router.add_get(MOUNT + "/received", received)


async def received(request: web.Request) -> web.Response:
    insurer = request.app[INSURER]
    return web.json_response({"events": insurer.newest_first(), "refused": insurer.refused})
