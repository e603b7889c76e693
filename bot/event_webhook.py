"""Programme events to the insurer's or the health office's system (DESIGN §4.6).

The outbox's events lane (billing/events.py queues them) is drained by an EventWebhook: each
event is POSTed to XINYI_EVENTS_URL as the JSON `{event, event_id, occurred_at, data}`, signed
as the hospital API is signed, with XINYI_EVENTS_SECRET: `X-Xinyi-Signature` is the hex
HMAC-SHA256 of `POST\\nPATH_WITH_QUERY\\nX-Xinyi-Timestamp\\nX-Xinyi-Nonce\\nSHA256_HEX(BODY)`.
Each attempt is signed anew (a fresh timestamp and nonce); the body, and its event_id, stay.

A 2xx delivers it. A 4xx other than 408 and 429 means the receiver will never take this body:
it is parked (`outbox.Refused`) until an operator re-queues it (`xinyi events --retry ID`).
Anything else (a 5xx, 408, 429, a redirect, no connection, a timeout) is retried by the outbox
with growing, jittered waits, for as long as it takes, and not before a `Retry-After` (in
seconds) the receiver sent.
"""
from __future__ import annotations

import json
import secrets
from datetime import timedelta

import aiohttp
from yarl import URL

from billing import outbox
from billing.clock import Clock
from bot.config import Settings
from bot.hospital_api import signature
from bot.sandbox import insurer
from storage.models import Outbox

RETRIED_4XX = (408, 429)  # a timeout or a rate limit at the receiver: try again later
TIMEOUT = aiohttp.ClientTimeout(total=10)
ANSWER_SHOWN_CHARS = 200
USER_AGENT = "xinyi-events/1"


def events_webhook(settings: Settings, clock: Clock) -> EventWebhook | None:
    """Where this deployment's events go: XINYI_EVENTS_URL; in the sandbox, unless that is set, its
    own stand-in of the insurer (bot/sandbox/insurer.py). None: the events are kept, not sent."""
    if settings.events_url:
        return EventWebhook(settings.events_url, settings.events_secret, clock)
    if settings.sandbox:
        return EventWebhook(settings.public_url.rstrip("/") + insurer.EVENTS_PATH,
                            insurer.sandbox_secret(settings.secret_key), clock)
    return None


class DeliveryFailed(outbox.NotNow):
    """The receiver did not take the event this time; the outbox retries it."""


def event_body(message: Outbox) -> bytes:
    return json.dumps(message.payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed_headers(secret: str, path_qs: str, body: bytes, timestamp: int, nonce: str) -> dict[str, str]:
    return {
        "X-Xinyi-Timestamp": str(timestamp),
        "X-Xinyi-Nonce": nonce,
        "X-Xinyi-Signature": signature(secret, "POST", path_qs, str(timestamp), nonce, body),
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
    }


class EventWebhook:
    """The events lane's sender. It opens its HTTP session on first use; `close` ends it."""

    def __init__(self, url: str, secret: str, clock: Clock) -> None:
        self.url = URL(url)
        self.secret = secret
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None

    async def send(self, message: Outbox) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        body = event_body(message)
        headers = signed_headers(self.secret, self.url.raw_path_qs, body, int(self.clock.now().timestamp()),
                                 secrets.token_hex(16))
        async with self._http.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return
            answer = (await response.text(errors="replace"))[:ANSWER_SHOWN_CHARS]
            retry_after = response.headers.get("Retry-After", "")
        problem = f"{message.payload['event']} {message.payload['event_id']}: HTTP {response.status} {answer}"
        if 400 <= response.status < 500 and response.status not in RETRIED_4XX:
            raise outbox.Refused(problem)
        raise DeliveryFailed(problem, timedelta(seconds=int(retry_after)) if retry_after.isdigit() else None)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
