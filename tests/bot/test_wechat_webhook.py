"""`/wechat` end to end over loopback HTTP: WeChat's sample credentials in safe mode, the
fake WeChat API recording what the server sends, real AES, real SQLite and PostgreSQL.
The responders are small functions defined here (an echo that records, a slow one)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from prometheus_client import REGISTRY
from sqlalchemy import func, make_url, select

from billing.core import Core
from bot.app import build_app
from bot.sandbox.fake_wechat_api import FakeWeChat, encrypt, event_message, push, read_reply, signature, text_message
from bot.wechat_api import WeChatAccount, WeChatApi
from bot import wechat_dedupe as ledger, wechat_webhook
from bot.wechat_dedupe import UserLocks
from bot.wechat_webhook import FAKE_WECHAT, MAX_BODY_BYTES, WEBHOOK
from handlers.messages import Replies, Incoming
from storage.models import WeChatMessage, WeChatUserLease
from wechat_support import CUSTOM, OPENID, SAMPLE, Chat, Recorder, another_worker_db, start_chat, wait_until

ID_NUMBER = "11010519491231002X"
PHONE = "13912345678"
BOMB = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">' for n in range(8))
        + "]><xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>"
          "<MsgType>text</MsgType><Content>&i;</Content><MsgId>1</MsgId></xml>")
XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>"
       "<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>")


@pytest.fixture
async def fake_wechat(aiohttp_server):
    fake = FakeWeChat(SAMPLE.appid, SAMPLE.secret)
    return fake, await aiohttp_server(fake.app())


@pytest.fixture
def chat(make_core, fake_wechat, aiohttp_client):
    async def start(responder, **options) -> Chat:
        core = await make_core(hospital=None)
        return await start_chat(core, responder, *fake_wechat, aiohttp_client, **options)

    return start


async def ledger_rows(core: Core) -> int:
    async with core.db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(WeChatMessage))


# -- verify, decrypt, parse, reply, encrypt ----------------------------------------------------


async def test_the_url_check_echoes_and_refuses_forgeries(chat):
    c = await chat(Recorder())
    now, nonce = str(c.now()), "1372623149"
    good = {"signature": signature(SAMPLE.token, now, nonce), "timestamp": now, "nonce": nonce, "echostr": "5927"}
    response = await c.client.get("/wechat", params=good)
    assert (response.status, await response.text()) == (200, "5927")

    stale = str(c.now() - 301)
    for params, status in [
        ({**good, "signature": signature("another-token", now, nonce)}, 403),
        ({**good, "timestamp": stale, "signature": signature(SAMPLE.token, stale, nonce)}, 403),
        ({k: v for k, v in good.items() if k != "echostr"}, 400),
        ({k: v for k, v in good.items() if k != "nonce"}, 400),
    ]:
        assert (await c.client.get("/wechat", params=params)).status == status


async def test_safe_mode_end_to_end_with_the_sample_credentials(chat):
    recorder = Recorder()
    c = await chat(recorder)
    response = await c.post(text_message(OPENID, "你好", 6054768590064713728, c.now()))
    body = await response.read()
    assert response.status == 200 and "你好".encode() not in body and b"<Encrypt>" in body
    reply = read_reply(c.account, body)  # the fake's own AES and SHA-1, not wechatpy's
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == "gh_xinyi"
    assert (reply["MsgType"], reply["Content"]) == ("text", "收到：你好")
    assert recorder.seen == [Incoming(openid=OPENID, kind="text", text="你好", msg_id="6054768590064713728")]


async def test_the_official_sample_message_decrypts(chat, clock):
    """The vector of WeChat's encryption samples: token QDG6eK, the same key and appid."""
    clock.set(datetime.fromtimestamp(1409659813, timezone.utc))
    recorder = Recorder()
    c = await chat(recorder, account=dataclasses.replace(SAMPLE, token="QDG6eK"))
    envelope = ("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA["
                "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3T"
                "UUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gs"
                "ijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQ"
                "Uax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPI"
                "GHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt></xml>")
    query = {"msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6", "timestamp": "1409659813",
             "nonce": "1372623149", "encrypt_type": "aes"}
    response = await c.client.post("/wechat", params=query, data=envelope)
    assert response.status == 200
    assert recorder.seen == [Incoming(openid="mycreate", kind="text", text="hello", msg_id="4561255354251345929")]
    assert read_reply(c.account, await response.read())["Content"] == "收到：hello"


async def test_compatible_and_plaintext_modes(chat):
    recorder = Recorder()
    safe = await chat(recorder)
    reply = await safe.say(text_message(OPENID, "兼容模式", 11, safe.now()), mode="compatible")
    assert reply["Content"] == "收到：兼容模式"
    refused = await safe.post(text_message(OPENID, "明文", 12, safe.now()), mode="plain")
    assert refused.status == 403  # a safe-mode account takes no plaintext: its signature would not cover the body

    plain = await chat(recorder, account=dataclasses.replace(SAMPLE, aes_key=None))
    response = await plain.post(text_message(OPENID, "明文模式", 13, plain.now()), mode="plain")
    body = await response.read()
    assert b"<Encrypt>" not in body and read_reply(plain.account, body)["Content"] == "收到：明文模式"
    assert [m.text for m in recorder.seen] == ["兼容模式", "明文模式"]


async def test_voice_events_and_qr_scenes(chat):
    recorder = Recorder()
    c = await chat(recorder)
    voice = (f"<xml><ToUserName>gh_xinyi</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>{c.now()}</CreateTime>"
             "<MsgType>voice</MsgType><MediaId>m1</MediaId><Format>amr</Format><Recognition>查账单</Recognition>"
             "<MsgId>21</MsgId></xml>")
    await c.say(voice)
    await c.say(event_message(OPENID, "subscribe", c.now(), key="qrscene_staff:7"))
    assert await c.say(event_message(OPENID, "TEMPLATESENDJOBFINISH", c.now() + 1)) is None
    assert recorder.seen == [
        Incoming(openid=OPENID, kind="voice", text="查账单", msg_id="21"),
        Incoming(openid=OPENID, kind="event", event="subscribe", event_key="staff:7"),
    ]
    retried = await c.say(event_message(OPENID, "subscribe", c.now(), key="qrscene_staff:7"))
    assert retried["Content"] == "收到：subscribe" and len(recorder.seen) == 2  # same sender and CreateTime: once


async def test_text_is_passed_whole_and_normalised(chat):
    recorder = Recorder()
    c = await chat(recorder)
    emoji = "谢谢医生👍🏻👨‍⚕️ 🀄"
    assert (await c.say(text_message(OPENID, emoji, 31, c.now())))["Content"] == f"收到：{emoji}"
    long_text = "长" * 10_000  # 30 kB of UTF-8, 40 kB once encrypted
    assert (await c.say(text_message(OPENID, long_text, 32, c.now())))["Content"] == f"收到：{long_text}"
    await c.say(text_message(OPENID, "　１２３４５６ ＡＢＣ　", 33, c.now()))
    assert [m.text for m in recorder.seen] == [emoji, long_text, "123456 ABC"]


async def test_a_reply_that_looks_like_xml_stays_text(chat):
    tricky = "a]]></Content><MsgType>news</MsgType><Content><![CDATA[b & <c>\x01"
    c = await chat(Recorder(reply=lambda incoming: [tricky]))
    assert (await c.say(text_message(OPENID, "x", 41, c.now())))["Content"] == tricky.replace("\x01", "")


@pytest.mark.parametrize("case", ["msg_signature", "other_token", "stale", "future", "no_encrypt_type", "bomb_inside",
                                  "xxe_inside", "garbage_ciphertext", "other_appid", "malformed", "not_xml_root",
                                  "no_msg_id", "huge"])
async def test_bad_input_is_refused_and_changes_nothing(chat, case):
    recorder = Recorder()
    c = await chat(recorder)
    now, nonce = c.now(), "424242"
    good = text_message(OPENID, "hi", 51, now)

    def safe(xml: str, at: int = now, account: WeChatAccount = SAMPLE) -> tuple[dict, bytes]:
        return push(dataclasses.replace(c.account, token=account.token, appid=account.appid), xml, at, nonce=nonce)

    def signed(ciphertext: str) -> tuple[dict, bytes]:
        query = {"timestamp": str(now), "nonce": nonce, "encrypt_type": "aes",
                 "msg_signature": signature(SAMPLE.token, str(now), nonce, ciphertext)}
        return query, f"<xml><Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>".encode()

    query, body = {
        "msg_signature": lambda: ({**safe(good)[0], "msg_signature": "0" * 40}, safe(good)[1]),
        "other_token": lambda: safe(good, account=dataclasses.replace(SAMPLE, token="not-spamtest")),
        "stale": lambda: safe(good, at=now - 301),
        "future": lambda: safe(good, at=now + 301),
        "no_encrypt_type": lambda: ({k: v for k, v in safe(good)[0].items() if k != "encrypt_type"}, safe(good)[1]),
        "bomb_inside": lambda: signed(encrypt(SAMPLE, BOMB)),
        "xxe_inside": lambda: signed(encrypt(SAMPLE, XXE)),
        "garbage_ciphertext": lambda: signed("bm90IGEgY2lwaGVydGV4dA=="),
        "other_appid": lambda: signed(encrypt(dataclasses.replace(SAMPLE, appid="wx0000000000000000"), good)),
        "malformed": lambda: signed(encrypt(SAMPLE, "<xml><ToUserName>gh</ToUserName>")),
        "not_xml_root": lambda: signed(encrypt(SAMPLE, good.replace("<xml>", "<x>").replace("</xml>", "</x>"))),
        "no_msg_id": lambda: signed(encrypt(SAMPLE, good.replace("<MsgId>51</MsgId>", ""))),
        "huge": lambda: (safe(good)[0], b"<xml>" + b"a" * (3 * 1024 * 1024) + b"</xml>"),
    }[case]()
    response = await c.client.post("/wechat", params=query, data=body)
    expected = {"msg_signature": 403, "other_token": 403, "stale": 403, "future": 403, "no_encrypt_type": 403,
                "huge": 413}.get(case, 400)
    assert response.status == expected, await response.text()
    assert recorder.seen == [] and await ledger_rows(c.core) == 0
    assert MAX_BODY_BYTES < 3 * 1024 * 1024


@pytest.mark.parametrize("payload", [BOMB, XXE, "<xml><a>"])
async def test_plaintext_bombs_and_entities_are_refused(chat, payload):
    recorder = Recorder()
    c = await chat(recorder, account=dataclasses.replace(SAMPLE, aes_key=None))
    response = await c.post(payload, mode="plain")
    assert response.status == 400 and recorder.seen == [] and await ledger_rows(c.core) == 0


@pytest.mark.parametrize("create_time", ["9" * 100, "²", "１７７２４４２０００"])
async def test_a_create_time_that_is_no_unix_time_is_refused(chat, create_time):
    """The dedupe key holds it: 100 digits overflowed its column on PostgreSQL (a 500)."""
    recorder = Recorder()
    c = await chat(recorder)
    response = await c.post(event_message(OPENID, "subscribe", 0).replace("<CreateTime>0<", f"<CreateTime>{create_time}<"))
    assert response.status == 400 and recorder.seen == [] and await ledger_rows(c.core) == 0


# -- exactly once, one at a time, the deadline ---------------------------------------------------


async def test_one_msgid_three_times_at_once_and_late_one_effect_one_answer(chat):
    recorder = Recorder(delay_s=0.2)
    c = await chat(recorder)
    message = text_message(OPENID, "账单", 1001, c.now())
    replies = await asyncio.gather(*(c.say(message) for _ in range(3)))
    assert [r["Content"] for r in replies] == ["收到：账单"] * 3
    assert (await c.say(message))["Content"] == "收到：账单"  # a retry after the answer: from the ledger
    assert len(recorder.seen) == 1 and c.custom_texts() == []


async def test_one_msgid_three_times_past_the_deadline_one_late_message(chat):
    recorder = Recorder(delay_s=0.5)
    c = await chat(recorder, reply_deadline_s=0.15)
    message = text_message(OPENID, "慢慢来", 1002, c.now())
    past_deadline = REGISTRY.get_sample_value("xinyi_wechat_past_deadline_total")
    assert await asyncio.gather(*(c.say(message) for _ in range(3))) == [None, None, None]
    assert REGISTRY.get_sample_value("xinyi_wechat_past_deadline_total") == past_deadline + 3  # on /metrics
    await wait_until(lambda: c.custom_texts() == ["收到：慢慢来"])
    assert await c.say(message) is None  # the answer went as a customer-service message: not twice
    await asyncio.sleep(0.2)
    assert len(recorder.seen) == 1 and c.custom_texts() == ["收到：慢慢来"]


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "aiosqlite"], indirect=True)
async def test_while_another_process_holds_the_write_lock_the_answer_keeps_the_deadline(chat, db):
    """The message cannot even be recorded: "success" at the deadline, and once the lock is let go
    the message is recorded, handled once, and its reply goes as a customer-service message.
    A second message whose handling meets the lock is deferred within the deadline too."""
    recorder = Recorder()
    c = await chat(recorder, reply_deadline_s=0.3)
    holder = sqlite3.connect(make_url(db.url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert await c.say(text_message(OPENID, "锁着呢", 1101, c.now())) is None
        assert time.monotonic() - started < 1.5  # not the lock's whole hold
        await asyncio.sleep(1)
        assert recorder.seen == [] and c.custom_texts() == []
    finally:
        holder.rollback()
    await wait_until(lambda: c.custom_texts() == ["收到：锁着呢"])
    assert [m.text for m in recorder.seen] == ["锁着呢"] and await ledger_rows(c.core) == 1

    recorder.delay_s = 0.5  # the lock is taken while the message is handled: the deferral meets it
    asking = asyncio.create_task(c.say(text_message(OPENID, "又锁了", 1102, c.now())))
    await wait_until(lambda: len(recorder.seen) == 2)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert await asking is None and time.monotonic() - started < 1.5
    finally:
        holder.rollback()
        holder.close()
    await wait_until(lambda: c.custom_texts() == ["收到：锁着呢", "收到：又锁了"])
    await asyncio.sleep(0.3)
    assert c.custom_texts() == ["收到：锁着呢", "收到：又锁了"]  # once each


async def test_ten_messages_of_one_user_run_in_order_one_at_a_time(chat):
    recorder = Recorder(delay_s=0.05)
    c = await chat(recorder)
    sent = []
    for n in range(10):
        sent.append(asyncio.create_task(c.say(text_message(OPENID, f"第{n}条", 3000 + n, c.now()))))
        await asyncio.sleep(0.02)
    replies = await asyncio.gather(*sent)
    assert [m.text for m in recorder.seen] == [f"第{n}条" for n in range(10)]
    assert recorder.most_at_once == 1
    assert [r["Content"] for r in replies] == [f"收到：第{n}条" for n in range(10)]


async def test_different_users_do_not_wait_for_each_other(chat):
    recorder = Recorder(reply=lambda incoming: ["ok"], delay_s=0.3)
    c = await chat(recorder)
    await asyncio.gather(*(c.say(text_message(f"user-{n}", "hi", 4000 + n, c.now())) for n in range(4)))
    assert recorder.most_at_once == 4


async def test_two_workers_on_one_database_never_run_a_user_twice_at_once(chat, db, make_core, fake_wechat, aiohttp_client):
    recorder = Recorder(delay_s=0.05)
    first = await chat(recorder)
    other_db = await another_worker_db(db)
    core = first.core
    second = await start_chat(Core(db=other_db, policy=core.policy, pii=core.pii, registry=core.registry, clock=core.clock),
                              recorder, *fake_wechat, aiohttp_client)
    try:
        workers = [first, second]
        sent = []
        for n in range(8):
            sent.append(asyncio.create_task(workers[n % 2].say(text_message(OPENID, f"m{n}", 5000 + n, first.now()))))
            await asyncio.sleep(0.01)
        duplicate = text_message(OPENID, "once", 5999, first.now())
        sent += [asyncio.create_task(worker.say(duplicate)) for worker in workers]
        await asyncio.gather(*sent)
        assert recorder.most_at_once == 1
        assert sorted(m.text for m in recorder.seen) == sorted([f"m{n}" for n in range(8)] + ["once"])
        await first.client.close()  # shutdown awaits each worker's tasks: their leases are released
        await second.client.close()
        async with db.transaction() as session:
            assert (await session.get(WeChatUserLease, OPENID)).holder is None
    finally:
        await second.client.close()
        await other_db.close()


async def test_a_lease_left_by_a_crashed_worker_is_taken_when_it_runs_out(chat, clock):
    recorder = Recorder()
    c = await chat(recorder, reply_deadline_s=0.3)
    async with c.core.db.transaction() as session:
        session.add(WeChatUserLease(openid=OPENID, holder="crashed-worker", until=clock.now() + timedelta(seconds=30)))
    assert await c.say(text_message(OPENID, "还在吗", 5501, c.now())) is None  # waits for the dead worker's lease
    assert recorder.seen == []
    clock.advance(seconds=31)
    await wait_until(lambda: c.custom_texts() == ["收到：还在吗"])


async def test_a_slow_reply_is_answered_empty_at_once_and_sent_later(chat):
    recorder = Recorder(delay_s=0.6)
    c = await chat(recorder, reply_deadline_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await c.post(text_message(OPENID, "挂号", 6001, c.now()))
    assert (await response.read(), response.status) == (b"success", 200)
    assert loop.time() - started < 0.5
    await wait_until(lambda: c.custom_texts() == ["收到：挂号"])
    async with c.core.db.transaction() as session:
        assert await session.scalar(select(WeChatMessage.status)) == "delivered"


@pytest.mark.slow
async def test_the_real_deadline_four_seconds_against_a_six_second_handler(chat):
    recorder = Recorder(delay_s=6.0)
    c = await chat(recorder)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await c.say(text_message(OPENID, "很慢", 6002, c.now())) is None
    assert 3.9 < loop.time() - started < 4.8  # inside WeChat's 5 s
    await wait_until(lambda: c.custom_texts() == ["收到：很慢"], timeout_s=4)


async def test_further_replies_follow_the_first_in_order(chat):
    c = await chat(Recorder(reply=lambda incoming: ["一", "二", "三"]))
    assert (await c.say(text_message(OPENID, "菜单", 7001, c.now())))["Content"] == "一"
    await wait_until(lambda: c.custom_texts() == ["二", "三"])


async def test_shutdown_waits_for_late_replies(chat):
    recorder = Recorder(delay_s=0.4)
    c = await chat(recorder, reply_deadline_s=0.1)
    assert await c.say(text_message(OPENID, "关机前", 7101, c.now())) is None
    await c.client.close()  # cleanup: the background task is awaited, its message sent
    assert c.custom_texts() == ["收到：关机前"]


async def test_late_replies_a_dead_worker_left_unsent_are_sent_by_another(chat):
    c = await chat(Recorder())
    webhook, db, clock = c.client.server.app[WEBHOOK], c.core.db, c.core.clock
    # A worker stored the replies of two messages, then died before sending them as customer-service messages:
    # one whose request gave up at the deadline, and one whose first reply went passively.
    locks = UserLocks(db, clock)
    for key, openid, replies, deferred in (("msg:8001", OPENID, ["晚到的答复"], True), ("msg:8002", "o-second", ["一", "二", "三"], False)):
        turn = locks.reserve(openid)
        await ledger.claim(db, key, openid, clock.now(), turn)
        if deferred:
            await ledger.defer(db, key)
        await ledger.settle(db, key, Replies(replies), turn, clock.now())
    assert await webhook.send_unsent() == 0 and c.fake.calls_to(CUSTOM) == []  # their worker still has time
    clock.advance(minutes=6)
    assert await webhook.send_unsent() == 2
    assert c.custom_texts() == ["晚到的答复"] and c.custom_texts("o-second") == ["二", "三"]
    clock.advance(minutes=6)
    assert await webhook.send_unsent() == 0 and len(c.fake.calls_to(CUSTOM)) == 3  # sent once
    async with db.transaction() as session:
        rows = (await session.execute(select(WeChatMessage.dedupe_key, WeChatMessage.status, WeChatMessage.send_after)
                                      .order_by(WeChatMessage.dedupe_key))).all()
    assert [tuple(row) for row in rows] == [("msg:8001", "delivered", None), ("msg:8002", "done", None)]


async def test_a_live_worker_leaves_no_late_reply_for_the_others(chat):
    c = await chat(Recorder(reply=lambda incoming: ["一", "二", "三"]), reply_deadline_s=0.1)
    assert (await c.say(text_message(OPENID, "菜单", 8101, c.now())))["Content"] == "一"
    await c.client.close()  # shutdown waits for the late replies, sent and marked sent
    assert c.custom_texts() == ["二", "三"]
    async with c.core.db.transaction() as session:
        assert (await session.execute(select(WeChatMessage.send_after))).scalars().all() == [None]


async def test_a_busy_wechat_gets_the_late_reply_again_and_the_rest_follow(chat, monkeypatch):
    monkeypatch.setattr(wechat_webhook, "SEND_RETRY_S", 0.01)
    c = await chat(Recorder(reply=lambda incoming: ["一", "二", "三"]))
    c.fake.fail_next(CUSTOM, -1)  # "system busy": tried again
    assert (await c.say(text_message(OPENID, "菜单", 8201, c.now())))["Content"] == "一"
    await wait_until(lambda: c.custom_texts() == ["二", "二", "三"])


async def test_a_late_reply_wechat_refuses_ends_the_sending_and_is_not_sent_again(chat):
    c = await chat(Recorder(reply=lambda incoming: ["一", "二", "三"]))
    c.fake.fail_next(CUSTOM, 45015)  # past the 48 h window: no use trying again, nor the next one
    assert (await c.say(text_message(OPENID, "菜单", 8202, c.now())))["Content"] == "一"
    await c.client.close()  # shutdown waits for the late replies
    assert c.custom_texts() == ["二"]
    async with c.core.db.transaction() as session:  # given up on: no other worker takes it over
        assert (await session.execute(select(WeChatMessage.send_after))).scalars().all() == [None]


# -- personal numbers --------------------------------------------------------------------------


async def test_id_and_phone_numbers_never_reach_a_reply_or_a_log_line(chat, caplog):
    caplog.set_level(logging.DEBUG)
    typed = f"身份证 {ID_NUMBER} 电话 {PHONE}"
    echo = await chat(Recorder(reply=lambda incoming: [f"您输入的是：{incoming.text}"]))
    reply = (await echo.say(text_message(OPENID, typed, 8001, echo.now())))["Content"]
    assert "110105********002X" in reply and "139****5678" in reply

    def fail(incoming: Incoming) -> list[str]:
        raise ValueError(f"cannot enrol {incoming.text}")

    failing = await chat(Recorder(reply=fail))
    apology = (await failing.say(text_message(OPENID, typed, 8002, failing.now())))["Content"]
    assert "帮助" in apology
    assert "ValueError" in caplog.text  # the failure is logged...
    for shown in (reply, apology, caplog.text):  # ...without the numbers
        assert ID_NUMBER not in shown and PHONE not in shown


# -- the application ---------------------------------------------------------------------------


async def test_build_app_serves_the_sandbox_account_with_the_conversations(make_core, aiohttp_server):
    port = unused_port()
    core = await make_core(hospital=None)
    core.public_url = f"http://127.0.0.1:{port}"
    api = WeChatApi(core.db, WeChatAccount.sandbox(core.public_url), clock=core.clock)
    app = build_app(core, background=False, wechat=api)
    server = await aiohttp_server(app, port=port)
    now = int(core.clock.now().timestamp())
    query, body = push(api.account, text_message(OPENID, "帮助", 1, now), now)  # safe mode, as the sandbox runs
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/wechat"), params=query, data=body) as response:
            reply = read_reply(api.account, await response.read())
    assert reply["ToUserName"] == OPENID and "开通" in reply["Content"]  # the real router's help
    await api.send_text(OPENID, "你好")  # the API of the sandbox account is the fake mounted in the same app
    assert [call.body["text"]["content"] for call in app[FAKE_WECHAT].calls_to("/cgi-bin/message/custom/send")] == ["你好"]
