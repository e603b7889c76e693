"""The sandbox's stand-in of the SMS provider, on `xinyi serve`'s own sandbox app served on loopback:
the Beijing bill's SMS ends there (with a provider configured too: nothing leaves the machine),
masked, and the console page lists it."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import unused_port
from test_sandbox_insurer import ZHANG_WEI, a_beijing_bill

from bot.config import Settings
from bot.hospital_api import CORE
from bot.server import make_app

KEY = "sms-sandbox-secret-key-0123456789abcdef"
WAIT_S = 10


@pytest.fixture
async def sandbox(tmp_path, aiohttp_server, aiohttp_client):
    port = unused_port()
    settings = Settings(secret_key=KEY, sandbox=True, public_url=f"http://127.0.0.1:{port}", port=port,
                        database_url=f"sqlite+inline:///{tmp_path / 'xinyi.db'}", data_dir=tmp_path,
                        # A provider set up: the sandbox still keeps every SMS to itself.
                        sms_provider="tencent", sms_secret_id="AKIDsample", sms_secret_key="sample-secret-key",
                        sms_sdk_app_id="1400000001", sms_sign_name="信医", sms_templates={"bill_issued": "1001"},
                        sms_endpoint="http://127.0.0.1:9")
    app = await make_app(settings)
    return app, await aiohttp_client(await aiohttp_server(app, port=port))


async def until_texted(client) -> list[dict]:
    for _ in range(WAIT_S * 10):
        response = await client.get("/sandbox/sms/received")
        assert response.status == 200
        messages = (await response.json())["messages"]
        if messages:
            return messages
        await asyncio.sleep(0.1)
    raise AssertionError("the sandbox SMS provider got nothing")


async def test_the_bill_sms_stays_in_the_sandbox_and_shows_in_the_console(sandbox):
    app, client = sandbox
    bill = await a_beijing_bill(app[CORE], openid="o-demo-patient")  # the enrolment is told in the chat, not texted
    [sms] = await until_texted(client)
    assert (sms["to"], sms["template"]) == ("138****8001", "bill_issued")
    assert sms["params"]["bill_no"] == bill["bill_no"] and sms["params"]["amount"] == "¥100.00"
    assert bill["bill_no"] in sms["text"] and "13800138001" not in str(sms) and ZHANG_WEI not in str(sms)

    page = await (await client.get("/sandbox/")).text()
    assert 'id="sms-messages"' in page and "/sandbox/static/sms.js" in page and "发出的短信" in page
    assert (await client.get("/sandbox/static/sms.js")).status == 200
