"""For community and hospital staff: their onboarding QR code, and the residents they enrolled.
A resident who scans the code is welcomed into 开通 with the enrolment credited to them.

```mermaid
stateDiagram-v2
    [*] --> [*]: 二维码 / 我的居民 (answered at once)
```
"""
from __future__ import annotations

from billing import staff
from handlers.engine import Flow, Turn
from handlers.flows.common import STATUS
from handlers.i18n import N_, with_lang

LISTED = 20


async def _staff_or_explain(turn: Turn) -> int | None:
    found = await turn.staff_id()
    if found is None:
        turn.say("这个功能只给工作人员用。回复 菜单 看能做什么。")
    return found


async def show_qr(turn: Turn) -> None:
    staff_id = await _staff_or_explain(turn)
    if staff_id is None:
        return
    poster = with_lang(staff.onboarding_qr_url(turn.core, staff_id), turn.locale)
    turn.say("您的开通二维码在下一条消息里。要打印，请打开：{url}", url=poster)
    turn.send_qr(staff.onboarding_scene(staff_id))
    turn.say("请居民用微信扫一扫，关注后按提示开通，开通记录会算在您名下。回复 我的居民 查看您开通的居民。")


async def show_residents(turn: Turn) -> None:
    staff_id = await _staff_or_explain(turn)
    if staff_id is None:
        return
    total, latest = await staff.onboarded_by(turn.core, staff_id, LISTED)
    turn.say("您已帮 {count} 位居民开通。", count=total)
    for resident in latest:
        when = turn.day(resident.enrolled_at) if resident.enrolled_at else ""
        turn.say_text(f"· {resident.name} {when} {turn.t(STATUS[resident.status])}")
    turn.say("回复 二维码 拿开通二维码。")


QR = Flow("staff_qr", N_("开通二维码"), ("staff_qr",), show_qr)
RESIDENTS = Flow("staff_residents", N_("我的居民"), ("staff_residents",), show_residents)
