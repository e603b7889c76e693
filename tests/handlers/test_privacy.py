"""Full ID and phone numbers never appear in a reply (every Chat checks each one) nor in a
log line, whatever the flow, and the conversation table keeps them only encrypted."""
from __future__ import annotations

import logging

from sqlalchemy import select

from chatkit import (  # noqa: F401 (core, chat: fixtures)
    PHONE, ZHANG_WEI, ZHANG_XIUYING, assert_no_pii, chat, core, hospital_visit, load_schedule,
)
from storage.models import Conversation


async def test_a_whole_day_of_chat_leaks_no_number(chat, core, caplog):
    await load_schedule(core)
    with caplog.at_level(logging.DEBUG):
        await chat.say("开通")
        await chat.say("同意")
        await chat.say(ZHANG_WEI[0])
        await chat.say("110105198503120013")  # a bad checksum, echoed nowhere
        await chat.say(ZHANG_WEI[1])
        await chat.say("138001380001")  # one digit too many
        await chat.say(PHONE)
        await chat.say("同意")
        await chat.say("家人")
        await chat.say("1")
        await chat.say("妈妈")
        await chat.say(ZHANG_XIUYING[0])
        reply = await chat.say(ZHANG_XIUYING[1])
        assert "110105********0027" in reply
        async with core.db.transaction() as session:
            stored = str((await session.scalar(select(Conversation.data))))
        assert ZHANG_XIUYING[1] not in stored
        await chat.say("1")
        await chat.say("给妈妈挂明天的号")
        await chat.say("消化内科")
        await chat.say("1")
        await hospital_visit(core, ZHANG_WEI[1], (5000, 1000))
        await chat.say("账单")
        await chat.say("家人")
        await chat.say("2")
        await chat.say("1")
        await chat.say(ZHANG_WEI[1])  # typed out of place
        await chat.say(PHONE)
    assert caplog.records  # the test saw the logs it checks
    for record in caplog.records:
        assert_no_pii(record.getMessage())
    assert_no_pii(caplog.text)
