"""`GET /metrics` over HTTP: Prometheus' text format, parsed back with prometheus-client's own
parser; the figures move with what the app does."""
from __future__ import annotations

import asyncio
import json
import secrets

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from billing import outbox
from billing.members import enrol
from bot.app import build_app
from bot.hospital_api import signed_headers

HOSPITAL, SECRET = "H1", "hospital-secret-0123456789"
PATIENT = "110105198503120012"


async def scrape(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(await response.text()) for sample in family.samples}


def applied(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("xinyi_requests_applied_total", {"kind": kind, "outcome": outcome}) or 0.0


async def test_requests_by_route_loop_lag_pool_and_outbox(make_core, aiohttp_client, clock):
    core = await make_core("beijing-shijingshan")
    client = await aiohttp_client(build_app(core, background=False))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/pay/not-a-token")).status in (404, 410)

    def queue(session, kind: str, key: str):
        outbox.enqueue(session, kind=kind, member_id=None, dedupe_key=key, payload={}, now=clock.now())

    await core.db.run(queue, "bill_reminder", "a")
    await core.db.run(queue, "bill_reminder", "b")
    await asyncio.sleep(0.3)  # a probe of the loop's lag
    figures = await scrape(client)
    healthz = ("xinyi_http_request_duration_seconds_count", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert figures[healthz] >= 1
    assert any(name == "xinyi_http_request_duration_seconds_count" and dict(labels)["route"] == "/pay/{token}"
               for name, labels in figures)  # the route's pattern, not the token
    assert figures[("xinyi_event_loop_lag_seconds_count", ())] >= 1
    assert figures[("xinyi_db_pool_connections", (("state", "size"),))] >= 1
    assert figures[("xinyi_outbox_messages", (("kind", "bill_reminder"), ("state", "pending")))] == 2


async def test_failing_and_parked_programme_events_are_counted(make_core, aiohttp_client, clock):
    core = await make_core("beijing-shijingshan")
    client = await aiohttp_client(build_app(core, background=False))
    figures = await scrape(client)
    assert [figures[("xinyi_programme_events", (("state", state),))] for state in ("pending", "failing", "parked")] == [0, 0, 0]

    class Refusing:
        def __init__(self, refusal: type[Exception]) -> None:
            self.refusal = refusal

        async def send(self, message) -> None:
            raise self.refusal("HTTP 503" if self.refusal is not outbox.Refused else "HTTP 400")

    def queue(session, key: str):
        outbox.enqueue(session, kind=outbox.EVENT, member_id=None, dedupe_key=key, payload={}, now=clock.now())

    for key in ("a", "b", "c"):
        await core.db.run(queue, key)
    await outbox.drain(core.db, Refusing(ConnectionError), clock.now, batch=2, lane=outbox.EVENTS)
    await core.db.run(queue, "d")
    await outbox.drain(core.db, Refusing(outbox.Refused), clock.now, lane=outbox.EVENTS)
    figures = await scrape(client)
    assert [figures[("xinyi_programme_events", (("state", state),))] for state in ("pending", "failing", "parked")] == [0, 3, 1]
    assert figures[("xinyi_outbox_messages", (("kind", "event"), ("state", "dead")))] == 1


async def test_applied_and_replayed_hospital_requests_are_counted(make_core, aiohttp_client, clock):
    core = await make_core("beijing-shijingshan")
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    client = await aiohttp_client(build_app(core, background=False))

    async def post(path: str, body: dict) -> int:
        data = json.dumps(body).encode()
        headers = signed_headers(HOSPITAL, SECRET, "POST", path, data, int(clock.now().timestamp()), secrets.token_hex(8))
        return (await client.post(path, data=data, headers=headers)).status

    before = applied("charge", "first"), applied("charge", "replay")
    assert await post("/api/v1/visits", {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                         "kind": "outpatient", "exclusion": None}) == 201
    charge = {"charge_no": "C1", "category": "exam", "name": "血常规", "amount_fen": 5000, "prepaid": False}
    assert await post("/api/v1/visits/V1/charges", charge) == 201
    assert await post("/api/v1/visits/V1/charges", charge) == 201  # the same charge again: its answer replayed
    assert (applied("charge", "first"), applied("charge", "replay")) == (before[0] + 1, before[1] + 1)
