"""`xinyi serve`'s background jobs: a notice leaves when the commit that queued it lands, not
at the next sweep."""
from __future__ import annotations

import asyncio
import gc

from sqlalchemy import select

from billing import visits
from billing.members import enrol
from bot.app import build_app
from bot.config import Settings
from bot.server import make_app, served_app
from storage.models import Bill, Outbox

PATIENT = "110105198503120012"


class Recording:
    """A sender that records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[Outbox] = []
        self.arrived = asyncio.Event()

    async def send(self, message: Outbox) -> None:
        self.sent.append(message)
        if message.kind == "bill_issued":
            self.arrived.set()


async def check_out(core) -> str:
    await visits.open_visit(core, "H1", {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, "H1", "V1", {"charge_no": "C1", "category": "exam", "name": "血常规", "amount_fen": 5000})
    answer = await visits.checkout(core, "H1", "V1", {"items": [
        {"charge_no": "C1", "insurance_fen": 3000, "personal_account_fen": 0, "self_pay_fen": 2000}]})
    return answer["bill_no"]


async def test_a_checkout_wakes_the_sender_at_once(make_core, aiohttp_client):
    core = await make_core("beijing-shijingshan")
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    sender = Recording()
    await aiohttp_client(build_app(core, sender=sender, sweep_every_s=3600))  # no second sweep in this test
    await asyncio.sleep(0.2)  # the first sweep and drain at start are done
    bill_no = await check_out(core)
    await asyncio.wait_for(sender.arrived.wait(), 2)
    assert [m.payload["bill_no"] for m in sender.sent if m.kind == "bill_issued"] == [bill_no]


async def test_the_scheduled_sweep_runs_apart_and_its_notices_leave_when_it_ends(make_core, aiohttp_client, clock):
    """The sweep runs on a thread of its own (its own loop and connections), on the same database:
    a bill past due is moved, and its overdue notice reaches the sender of the server's loop."""
    core = await make_core("beijing-shijingshan")
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    bill_no = await check_out(core)
    clock.advance(hours=49)
    sender = Recording()
    await aiohttp_client(build_app(core, sender=sender, sweep_every_s=3600))

    async def overdue_notice() -> None:
        while not any(m.kind == "bill_overdue" and m.payload["bill_no"] == bill_no for m in sender.sent):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(overdue_notice(), 5)  # the sender's own poll is 10 s: this is the announcement
    async with core.db.transaction() as session:
        assert await session.scalar(select(Bill.status).where(Bill.bill_no == bill_no)) == "advanced"


async def test_xinyi_serve_freezes_the_heap_made_at_start_and_an_app_made_elsewhere_does_not(tmp_path, aiohttp_client):
    """A full garbage collection holds the event loop while it walks every tracked object: what
    `xinyi serve` made to start (modules, app, clients) is frozen out of it once started."""
    settings = Settings(secret_key="sandbox-secret-key-0123456789abcdef", sandbox=True, data_dir=tmp_path,
                        database_url=f"sqlite+inline:///{tmp_path / 'xinyi.db'}")
    gc.unfreeze()
    try:
        await aiohttp_client(await make_app(settings))  # as tests make apps, many to a process: nothing kept
        assert gc.get_freeze_count() == 0
        await aiohttp_client(await served_app(settings))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
