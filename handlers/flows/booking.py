"""挂号 for oneself or a bound family member, and 退号.

A department is chosen by number, by name, or by what hurts ("肚子疼" finds 消化内科 when
the hospital has it, and the reply says so at once); words given with the command
("明天给妈妈挂消化科") are used as hints, so those questions are skipped. A step with a
single choice skips itself. The list of departments fits the patient's age: no 儿科 for
an adult, and 儿科 never first.

```mermaid
stateDiagram-v2
    [*] --> booking:await_patient: 挂号
    booking:await_patient --> booking:await_hospital: self or a family member
    booking:await_hospital --> booking:await_department
    booking:await_department --> booking:await_day: number, name or symptom
    booking:await_day --> booking:await_slot
    booking:await_slot --> booking:await_confirm
    booking:await_confirm --> [*]: 确认 -> place taken, fee on credit
    booking:await_confirm --> booking:await_slot: the place went meanwhile
    [*] --> cancel_booking:await_choice: 取消挂号 / 退号
    cancel_booking:await_choice --> cancel_booking:await_confirm
    cancel_booking:await_confirm --> [*]: 确认 -> place and fee given back
```
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from billing import accounts, booking
from billing.errors import Conflict, CreditLimitExceeded, NotEligible, NotFound
from billing.identity import age_on, birth_date
from handlers.engine import Flow, Step, Turn
from handlers.flows.common import member_or_explain, pick_person, relation_label
from handlers.i18n import N_
from handlers.intent import lexicon, normalise

HINTS = ("department", "symptom", "day", "month_day", "relation")
PAEDIATRICS = "儿科"  # its canonical name in handlers/data/departments.txt
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- matching what people say against what is offered ---------------------------------------


def _department(canonical: str | None, text: str, offered: list[str]) -> str | None:
    """An offered department named in the text, or one the department (from a name or a symptom) goes by."""
    named = [d for d in offered if normalise(d).replace(" ", "") in text]
    if named:
        return max(named, key=len)
    if canonical is None:
        return None
    names = lexicon().aliases(canonical)
    return next((d for d in offered if normalise(d).replace(" ", "") in names), None)


def _paediatric(department: str) -> bool:
    return normalise(department).replace(" ", "") in lexicon().aliases(PAEDIATRICS)


def _listed(turn: Turn, departments: list[str]) -> list[str]:
    """The departments to list for this patient: 儿科 only for a minor (or someone whose age
    is not known), and then after the first other department, never at the top."""
    born = turn.data["patient"][2] if len(turn.data["patient"]) > 2 else None
    today = booking.local_now(turn.core).date()
    children = [d for d in departments if _paediatric(d)]
    others = [d for d in departments if not _paediatric(d)]
    if born is not None and age_on(date.fromisoformat(born), today) >= turn.core.policy.minor_age:
        return others
    return others[:1] + children + others[1:]


def _day(hints: dict[str, Any], offered: list[date], today: date) -> date | None:
    wanted = hints.get("day")
    if wanted in WEEKDAYS:
        return next((d for d in offered if d.weekday() == WEEKDAYS.index(wanted)), None)
    if wanted is not None:
        target = today + timedelta(days=int(wanted))
        return target if target in offered else None
    if hints.get("month_day"):
        month, day_of_month = hints["month_day"]
        return next((d for d in offered if d.day == day_of_month and month in (None, d.month)), None)
    return None


# --- booking ---------------------------------------------------------------------------------


async def start(turn: Turn) -> None:
    if await member_or_explain(turn, active=True) is None:
        return
    turn.data["hints"] = {key: value for key, value in turn.intent.slots.items() if key in HINTS}
    turn.goto("booking:await_patient")


async def ask_patient(turn: Turn) -> None:
    member = await turn.member()
    family = await accounts.family(turn.core, member.id)
    wanted = turn.data["hints"].pop("relation", None)
    matches = [d for d in family if d.relation == wanted]
    if wanted and not family:
        turn.say("您还没有添加家人。回复 家人 添加；给自己挂号请回复 挂号。")
        turn.end()
        return
    myself = [member.id, member.name, birth_date(turn.core.pii.decrypt(member.id_number_enc)).isoformat()]
    if not family or len(matches) == 1:
        chosen = matches[0] if matches else None
        turn.data["patient"] = [chosen.id, chosen.name, chosen.birth_date.isoformat()] if chosen else myself
        turn.goto("booking:await_hospital")
        return
    if wanted and not matches:
        turn.say("家人里没有{relation}，请从下面选：", relation=relation_label(turn, wanted))
    else:
        turn.say("给谁挂号？")
    turn.offer([(myself, turn.t("自己"))]
               + [([d.id, d.name, d.birth_date.isoformat()], f"{d.name}（{relation_label(turn, d.relation)}）")
                  for d in family])
    turn.say("回复数字。")


async def ask_hospital(turn: Turn) -> None:
    hospitals = await booking.open_hospitals(turn.core)
    if not hospitals:
        turn.say("最近 {days} 天没有能预约的号。请过几天再试，或到医院窗口挂号。回复 菜单 看其他功能。", days=booking.BOOKING_DAYS)
        turn.end()
        return
    if len(hospitals) == 1:
        turn.data["hospital"] = list(hospitals[0])
        turn.goto("booking:await_department")
        return
    turn.say("去哪家医院？")
    turn.offer([(list(h), h[1]) for h in hospitals])
    turn.say("回复数字。")


async def answer_hospital(turn: Turn) -> None:
    named = [c for c in turn.data["choices"] if normalise(c[1]).replace(" ", "") in turn.intent.compact]
    chosen = turn.picked() or (named[0] if named else None)
    if chosen is None:
        turn.retry("请回复医院前面的数字。")
        return
    turn.data["hospital"] = chosen
    turn.goto("booking:await_department")


async def _chose(turn: Turn, department: str, by_symptom: bool) -> None:
    turn.data["department"] = department
    if by_symptom:  # said now, not first at the confirmation
        if turn.data["patient"][0] == (await turn.member()).id:
            turn.say("按您说的症状，给您挂 {department}。", department=turn.department(department))
        else:
            turn.say("按您说的症状，给{patient}挂 {department}。", patient=turn.data["patient"][1],
                     department=turn.department(department))
    turn.goto("booking:await_day")


async def ask_department(turn: Turn) -> None:
    everything = await booking.open_departments(turn.core, turn.data["hospital"][0])
    if not everything:  # its last places went since the hospital was chosen
        turn.say("这家医院最近的号都约满了。回复 挂号 重新选。")
        turn.end()
        return
    offered = _listed(turn, everything)
    hint = turn.data["hints"].pop("department", None)
    symptom = turn.data["hints"].pop("symptom", None)
    found = _department(hint, "", everything) if hint else (offered[0] if len(offered) == 1 else None)
    if found:
        await _chose(turn, found, by_symptom=bool(hint and symptom))
        return
    if not offered:
        turn.say("这家医院最近只有儿科的号。回复 挂号 重新选。")
        turn.end()
        return
    turn.data["departments"] = everything  # named ones are taken even when not listed
    if hint:
        turn.say("这家医院没有{department}，请从下面选：", department=turn.department(hint))
    else:
        turn.say("挂哪个科？")
    turn.offer([(d, turn.department(d)) for d in offered])
    turn.say("回复数字，也可以说哪里不舒服，比如 肚子疼。")


async def answer_department(turn: Turn) -> None:
    offered = turn.data.get("departments", turn.data["choices"])
    picked = turn.picked()
    chosen = picked or _department(turn.intent.slots.get("department"), turn.intent.compact, offered)
    if chosen is not None:
        await _chose(turn, chosen, by_symptom=picked is None and "symptom" in turn.intent.slots)
    elif "department" in turn.intent.slots:
        turn.retry("这家医院没有{department}，请回复上面的数字。", department=turn.department(turn.intent.slots["department"]))
    else:
        turn.retry("请回复科室前面的数字，或说哪里不舒服。")


async def ask_day(turn: Turn) -> None:
    offered = await booking.open_days(turn.core, turn.data["hospital"][0], turn.data["department"])
    if not offered:
        turn.say("{department}最近的号都约满了。回复 挂号 换个科室。", department=turn.department(turn.data["department"]))
        turn.end()
        return
    today = booking.local_now(turn.core).date()
    hints = {key: turn.data["hints"].pop(key) for key in ("day", "month_day") if key in turn.data["hints"]}
    # A single day is taken as it is, unless the user comes back from a day that filled up.
    only = offered[0] if len(offered) == 1 and not hints and "day" not in turn.data else None
    found = _day(hints, offered, today) or only
    if found:
        turn.data["day"] = found.isoformat()
        turn.goto("booking:await_slot")
        return
    if hints:
        turn.say("那天没有能约的号，请从下面选：")
    else:
        turn.say("哪天去？")
    turn.offer([(d.isoformat(), turn.day(d)) for d in offered])
    turn.say("回复数字，也可以说 明天。")


async def answer_day(turn: Turn) -> None:
    offered = [date.fromisoformat(d) for d in turn.data["choices"]]
    chosen = turn.picked() or _day(turn.intent.slots, offered, booking.local_now(turn.core).date())
    if chosen is None:
        turn.retry("请回复日期前面的数字。")
        return
    turn.data["day"] = chosen if isinstance(chosen, str) else chosen.isoformat()
    turn.goto("booking:await_slot")


async def ask_slot(turn: Turn) -> None:
    hospital, department, day = turn.data["hospital"][0], turn.data["department"], date.fromisoformat(turn.data["day"])
    slots = await booking.open_slots(turn.core, hospital, department, day)
    if not slots:
        turn.say("这天的号都约满了，请换一天。")
        turn.goto("booking:await_day")
        return
    if len(slots) == 1:
        turn.data["slot"] = _slot_choice(slots[0])
        turn.goto("booking:await_confirm")
        return
    turn.say("选医生和时间：")
    turn.offer([
        (_slot_choice(s),
         turn.t("{doctor} {start}-{end}，还剩 {left} 个，挂号费 {fee}", doctor=s.doctor, start=s.start, end=s.end,
                left=s.left, fee=turn.money(s.fee_fen)))
        for s in slots
    ])
    turn.say("回复数字。")


def _slot_choice(slot: booking.SlotView) -> dict[str, Any]:
    return {"id": slot.id, "doctor": slot.doctor, "start": slot.start, "end": slot.end, "fee_fen": slot.fee_fen}


async def answer_slot(turn: Turn) -> None:
    chosen = turn.picked()
    if chosen is None:
        turn.retry("请回复医生前面的数字。")
        return
    turn.data["slot"] = chosen
    turn.goto("booking:await_confirm")


def _describe(turn: Turn) -> dict[str, str]:
    slot, data = turn.data["slot"], turn.data
    return {"patient": data["patient"][1], "day": turn.day(date.fromisoformat(data["day"])), "start": slot["start"],
            "end": slot["end"], "hospital": data["hospital"][1], "department": turn.department(data["department"]),
            "doctor": slot["doctor"], "fee": turn.money(slot["fee_fen"])}


async def ask_confirm(turn: Turn) -> None:
    turn.say("请确认：给 {patient} 挂号，{day} {start}-{end}，{hospital} {department} {doctor}，挂号费 {fee} 记在信用额度上。",
             **_describe(turn))
    turn.say("回复 1 确认，回复 取消 退出。")


async def answer_confirm(turn: Turn) -> None:
    if not turn.agreed(N_("请回复 1 确认，或回复 取消。"), N_("好的，没有挂号。回复 挂号 重新选。")):
        return
    member = await turn.member()
    try:
        made = await booking.book(turn.core, booker_id=member.id, patient_id=turn.data["patient"][0],
                                  slot_id=turn.data["slot"]["id"])
    except Conflict as exc:
        if exc.details.get("reason") == "slot_full":
            turn.say("这个号刚刚约满了。")
            turn.goto("booking:await_slot")
            return
        turn.say("{patient} 已经约过这个号了。要退号请回复 取消挂号。", patient=turn.data["patient"][1])
    except CreditLimitExceeded as exc:
        turn.say("可用额度不够付挂号费（还剩 {available}）。付清账单后再约，回复 缴费 去付款。",
                 available=turn.money(exc.details.get("available_fen", 0)))
    except NotEligible:
        turn.say("{patient} 现在不能记账看病，请到医院窗口挂号。回复 菜单 看其他功能。", patient=turn.data["patient"][1])
    except NotFound:
        turn.say("这位家人已经解除绑定了。回复 挂号 重新选。")
    else:
        turn.say("挂号成功！就诊号 {visit_no}。", visit_no=made.visit_no)
        turn.say("{patient}：{day} {start}-{end}，{hospital} {department} {doctor}。挂号费 {fee} 已记账，到医院报身份证号就能看病。",
                 **_describe(turn))
        turn.say("要退号请回复 取消挂号，回复 额度 看额度。")
    turn.end()


BOOK = Flow("booking", N_("挂号"), ("book",), start, left=N_("好的，没有挂号。回复 挂号 重新选。"), steps=(
    Step("booking:await_patient", ask_patient, pick_person("patient", "booking:await_hospital")),
    Step("booking:await_hospital", ask_hospital, answer_hospital),
    Step("booking:await_department", ask_department, answer_department),
    Step("booking:await_day", ask_day, answer_day),
    Step("booking:await_slot", ask_slot, answer_slot),
    Step("booking:await_confirm", ask_confirm, answer_confirm),
))


# --- 退号 --------------------------------------------------------------------------------------


async def start_cancel(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    if not await booking.upcoming(turn.core, member.id):
        turn.say("没有能退的号。回复 挂号 预约。")
        return
    turn.goto("cancel_booking:await_choice")


def _booking_label(turn: Turn, made: booking.BookingView) -> str:
    return turn.t("{day} {start} {department} {doctor}（{patient}）", day=turn.day(made.slot.day), start=made.slot.start,
                  department=turn.department(made.slot.department), doctor=made.slot.doctor, patient=made.patient_name)


async def ask_cancel_choice(turn: Turn) -> None:
    member = await turn.member()
    bookings = await booking.upcoming(turn.core, member.id)
    options = [({"id": b.id, "label": _booking_label(turn, b), "fee": b.fee_fen}, _booking_label(turn, b)) for b in bookings]
    if len(options) == 1:
        turn.data["booking"] = options[0][0]
        turn.goto("cancel_booking:await_confirm")
        return
    turn.say("退哪个号？")
    turn.offer(options)
    turn.say("回复数字。")


async def answer_cancel_choice(turn: Turn) -> None:
    chosen = turn.picked()
    if chosen is None:
        turn.retry("请回复要退的号前面的数字。")
        return
    turn.data["booking"] = chosen
    turn.goto("cancel_booking:await_confirm")


async def ask_cancel_confirm(turn: Turn) -> None:
    chosen = turn.data["booking"]
    turn.say("退掉这个号吗？{label}，挂号费 {fee} 会退回额度。", label=chosen["label"], fee=turn.money(chosen["fee"]))
    turn.say("回复 1 确认退号，回复 取消 不退。")


async def answer_cancel_confirm(turn: Turn) -> None:
    if not turn.agreed(N_("请回复 1 确认退号，或回复 取消。"), N_("好的，号没有退。回复 菜单 看其他功能。")):
        return
    member = await turn.member()
    try:
        await booking.cancel_booking(turn.core, member.id, turn.data["booking"]["id"])
    except NotFound:
        turn.say("这个号已经不能退了（可能已经开始看诊）。回复 菜单 看其他功能。")
    else:
        turn.say("已退号，挂号费退回额度了。回复 挂号 重新预约。")
    turn.end()


CANCEL = Flow("cancel_booking", N_("退号"), ("cancel_booking",), start_cancel, left=N_("好的，号没有退。回复 菜单 看其他功能。"), steps=(
    Step("cancel_booking:await_choice", ask_cancel_choice, answer_cancel_choice),
    Step("cancel_booking:await_confirm", ask_cancel_confirm, answer_cancel_confirm),
))
