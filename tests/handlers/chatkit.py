"""Shared by the conversation tests: transport-free chats (WeRoBot's testing.py shape: feed
an Incoming, read the replies), the demo residents, and a doctors' schedule.

Every reply a `Chat` receives is checked on the way: no full ID or mobile number in it, and
its last line says what to type next.
"""
from __future__ import annotations

import itertools
import re
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from stdnum.cn import ric

from billing import visits
from billing.core import Core
from billing.schedule import SlotRow, import_schedule
from handlers.messages import Incoming
from handlers.router import handle
from storage.models import Conversation

# Demo registry residents (billing/data/demo_registry.csv)
ZHANG_WEI = ("张伟", "110105198503120012")
ZHANG_XIUYING = ("张秀英", "110105194908150027")  # born 1949: a parent
ZHANG_XIAOMING = ("张小明", "110107201506010035")  # born 2015: a minor
LI_QIANG = ("李强", "110107197001010049")  # on the dishonest list
WANG_FANG = ("王芳", "110108198002200056")  # insurance suspended
LIU_YANG = ("刘洋", "11010819920709006X")
LIU_GUILAN = ("刘桂兰", "110108195203040075")
ZHAO_LEI = ("赵磊", "130102198808080087")  # insured in Hebei
PHONE = "13800138000"
WHAT_NEXT = ("回复", "回覆", "Reply", "reply")
# Not inside a longer run of letters and digits (a hex digest, a token) but anywhere else, Chinese text included.
_FULL_ID = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_FULL_PHONE = re.compile(r"(?<![0-9A-Za-z])1[3-9][0-9]{9}(?![0-9A-Za-z])")
_msg_ids = itertools.count(1)


def assert_no_pii(text: str) -> None:
    assert not _FULL_ID.search(text), f"a full ID number in: {text}"
    assert not _FULL_PHONE.search(text), f"a full phone number in: {text}"


class Chat:
    def __init__(self, core: Core, openid: str = "o-user-1") -> None:
        self.core = core
        self.openid = openid
        self.transcript: list[str] = []

    async def send(self, incoming: Incoming) -> list[str]:
        answer = await handle(self.core, incoming)
        if answer.record is not None:
            await self.core.db.run(answer.record)
        replies = answer.replies
        for reply in replies:
            assert_no_pii(reply)
        if replies:
            last_line = replies[-1].splitlines()[-1]
            assert any(word in last_line for word in WHAT_NEXT), f"no next step in: {replies[-1]}"
        self.transcript.extend(replies)
        return replies

    async def say(self, text: str) -> str:
        """Send a text; all replies joined, for `in` checks."""
        return "\n".join(await self.messages(text))

    async def messages(self, text: str) -> list[str]:
        """Send a text; the replies as they go out (the first passive, the rest as customer-service messages)."""
        return await self.send(Incoming(self.openid, "text", text=text, msg_id=str(next(_msg_ids))))

    async def voice(self, recognition: str) -> str:
        return "\n".join(await self.send(Incoming(self.openid, "voice", text=recognition, msg_id=str(next(_msg_ids)))))

    async def event(self, event: str, key: str = "") -> list[str]:
        return await self.send(Incoming(self.openid, "event", event=event, event_key=key))

    async def conversation(self) -> Conversation | None:
        async with self.core.db.transaction() as session:
            return await session.scalar(select(Conversation).where(Conversation.openid == self.openid))

    async def state(self) -> str | None:
        found = await self.conversation()
        return found.state if found else None

    async def data(self) -> dict[str, Any]:
        found = await self.conversation()
        return found.data if found else {}

    async def enrol(self, person: tuple[str, str] = ZHANG_WEI, phone: str = PHONE, institution: int = 1) -> str:
        """The whole 开通 conversation, with the `institution`-th financial institution where the policy
        lists them; returns the last reply."""
        await self.say("开通")
        await self.say("同意")
        await self.say(person[0])
        await self.say(person[1])
        await self.say(phone)
        if self.core.policy.institutions:
            await self.say(str(institution))
        return await self.say("同意")

    async def add_mother(self, person: tuple[str, str] = ZHANG_XIUYING) -> str:
        """家人 › 添加, 妈妈, her name and ID number, confirmed; returns the last reply."""
        for answer in ("家人", "1", "妈妈", *person):
            await self.say(answer)
        return await self.say("1")


SCHEDULE = [
    # department, doctor, day, start, end, capacity, fee_fen (the clock starts Monday 2026-03-02 17:00 in China)
    ("消化内科", "王医生", date(2026, 3, 3), "08:00", "12:00", 2, 5000),
    ("消化内科", "赵医生", date(2026, 3, 4), "08:00", "12:00", 5, 5000),
    ("消化内科", "赵医生", date(2026, 3, 4), "13:00", "17:00", 5, 5000),
    ("内科", "李医生", date(2026, 3, 3), "13:00", "17:00", 5, 3000),
    ("骨科", "陈医生", date(2026, 3, 5), "08:00", "12:00", 1, 0),
]


async def load_schedule(core: Core, rows=SCHEDULE, hospital: str = "H1") -> None:
    await import_schedule(core, hospital, [SlotRow(n, *row) for n, row in enumerate(rows, start=2)], "test")


async def hospital_visit(core: Core, id_number: str, *charges_fen: tuple[int, int], checkout: bool = True,
                         hospital: str = "H1") -> dict[str, Any]:
    """A visit as the hospital API makes it: charges of (amount, insurance part), checked out
    with the rest self-pay. Returns the checkout answer (bill_no, pay_url, ...) or the visit."""
    visit_no = f"V{next(_msg_ids):06d}"
    visit = await visits.open_visit(core, hospital, {"visit_no": visit_no, "id_number": id_number, "department": "内科",
                                                     "kind": "outpatient", "exclusion": None})
    items = []
    for n, (amount_fen, insurance_fen) in enumerate(charges_fen, start=1):
        charge_no = f"{visit_no}-C{n}"
        await visits.post_charge(core, hospital, visit_no, {"charge_no": charge_no, "category": "exam",
                                                            "name": f"检查{n}", "amount_fen": amount_fen})
        items.append({"charge_no": charge_no, "insurance_fen": insurance_fen, "personal_account_fen": 0,
                      "self_pay_fen": amount_fen - insurance_fen})
    if not checkout:
        return visit
    return await visits.checkout(core, hospital, visit_no, {"items": items})


def valid_id_number(first_17: str) -> str:
    """An ID number with its check digit: a valid person the registry may not know."""
    return next(first_17 + c for c in "0123456789X" if ric.is_valid(first_17 + c))


# Fixtures, imported by the test modules that use them (a conftest.py here would shadow the
# root one for modules that import it by name).
@pytest.fixture
async def core(make_core) -> Core:
    """A Beijing Shijingshan core with hospital H1 (测试医院)."""
    return await make_core("beijing-shijingshan")


@pytest.fixture
def chat(core) -> Chat:
    return Chat(core)
