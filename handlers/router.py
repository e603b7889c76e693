"""The Responder the webhook calls: one incoming message in, the replies out; no HTTP here.

Routes are tried in order. Events first; then what works anywhere (取消, 帮助, 菜单, the
language, a greeting); then a command word, which starts its flow even in the middle of another;
then the answer to the step the user is at; then free text that asks for a flow
(jieba); and a short help for anything else.
"""
from __future__ import annotations

from billing.core import Core
from billing.staff import staff_for_scene
from handlers.engine import (
    Filter, Registry, Route, Router, Turn, always, answer_step, asked, converse, has_text, in_flow, is_event, said,
)
from handlers.flows import (
    bills, booking, cancel_agreement, credit, enrol, family, help, institution, language, marketing, repair, staff,
)
from handlers.messages import Incoming, Replies

REGISTRY = Registry(help.FLOW, enrol.FLOW, credit.FLOW, bills.BILLS, bills.PAY, booking.BOOK, booking.CANCEL,
                    family.FLOW, cancel_agreement.FLOW, repair.FLOW, staff.QR, staff.RESIDENTS, institution.SHOW,
                    institution.CHANGE, marketing.SUBSCRIBE, marketing.UNSUBSCRIBE)
COMMANDS = tuple(REGISTRY.by_intent)
heard_nothing = Filter(lambda turn: turn.incoming.kind == "voice" and not turn.intent.answer)


async def start_flow(turn: Turn) -> None:
    flow = turn.registry.by_intent[turn.intent.name]
    turn.end()
    await flow.start(turn)


async def on_scan(turn: Turn) -> None:
    """Following the account or scanning a code; a staff member's code starts 开通 credited to them."""
    scene = turn.incoming.event_key
    onboarder = await staff_for_scene(turn.core, scene) if scene else None
    turn.end()
    if onboarder is None:
        await (help.welcome if turn.incoming.event == "subscribe" else help.start)(turn)
        return
    if await enrol.already_enrolled(turn):  # nothing for the staff member to do: their status instead
        return
    turn.data["staff_id"] = onboarder.id
    turn.say("欢迎！工作人员 {name} 帮您开通信用就医。", name=onboarder.name)
    await enrol.FLOW.start(turn)


async def on_click(turn: Turn) -> None:
    """A custom-menu button whose key names a command's intent in any case (`BOOK`, `bills`, ...)."""
    flow = turn.registry.by_intent.get(turn.incoming.event_key.lower(), help.FLOW)
    turn.end()
    await flow.start(turn)


async def forget(turn: Turn) -> None:
    """Unfollowed: drop the step they were at, and a yes to offers; nothing can be sent back."""
    turn.end()
    await marketing.unfollowed(turn)


async def ignore(turn: Turn) -> None:
    pass


async def menu(turn: Turn) -> None:
    turn.end()
    await help.start(turn)


ROUTER = Router(
    Route(is_event("subscribe") | is_event("SCAN"), on_scan),
    Route(is_event("unsubscribe"), forget),
    Route(is_event("CLICK"), on_click),
    Route(is_event(), ignore),
    Route(heard_nothing, help.not_heard),
    Route(~has_text & ~in_flow, help.not_understood),
    Route(said("cancel") | (~in_flow & asked("cancel")), help.leave),
    Route(said("language") | (~in_flow & asked("language")), language.switch),
    Route(said("greet") & in_flow, help.greet_in_step),
    Route(said("greet") | (~in_flow & asked("greet")), help.greet),
    Route(said("help") & in_flow, help.explain_step),
    Route(said("help", "menu") | (~in_flow & asked("help", "menu")), menu),
    Route(said(*COMMANDS), start_flow),
    Route(in_flow, answer_step),
    Route(asked(*COMMANDS), start_flow),
    Route(always, help.not_understood),
)


async def handle(core: Core, incoming: Incoming) -> Replies:
    return await converse(core, incoming, ROUTER, REGISTRY, on_error=help.failed, on_expired=help.expired)
