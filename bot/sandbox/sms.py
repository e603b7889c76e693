"""The sandbox's stand-in of the SMS provider, at /sandbox/sms: in sandbox mode every SMS ends
here and never leaves the machine, whatever XINYI_SMS_PROVIDER says.

It keeps what a provider would have texted, with the number masked (the template, its
parameters and the text it fills in); the console lists it beside the phone simulator under
the persona whose phone it went to. What it got lives in this process only, as the fake
WeChat's record and the sandbox insurer's do.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from aiohttp import web

from billing.clock import Clock
from billing.pii import mask_phone
from bot.sms import Sms

MOUNT = "/sandbox/sms"
KEPT = 200  # messages shown; older ones are forgotten


class SandboxSms:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.received: deque[dict[str, Any]] = deque(maxlen=KEPT)

    async def send(self, phone: str, sms: Sms) -> None:
        self.received.append({"to": mask_phone(phone), "template": sms.template, "params": sms.named(),
                              "text": sms.text, "at": self.clock.now().isoformat()})

    def newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self.received))


SANDBOX_SMS = web.AppKey("sandbox_sms", SandboxSms)


def setup(app: web.Application, sms: SandboxSms) -> None:
    app[SANDBOX_SMS] = sms
    app.router.add_get(MOUNT + "/received", received)


async def received(request: web.Request) -> web.Response:
    return web.json_response({"messages": request.app[SANDBOX_SMS].newest_first()})
