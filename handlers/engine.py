"""The conversation engine: flows declared as data, one saved state per WeChat user.

A flow is a name, the intents that start it, an entry handler and its steps. A step has
a stable string name ("enrol:await_id_number"), which is what the database keeps, a
question (`ask`) and an answer handler (`answer`). Handlers speak through a Turn: they
`say` things and move the conversation with `goto`, `retry` or `end`; after the handler,
the engine asks the question of the step the conversation went to.

State is loaded and saved around each message with optimistic versioning (the webhook
already serialises one user's messages; a save that finds a newer version is logged,
never merged). A flow left waiting longer than SESSION_TTL is dropped on the next message.
"""
from __future__ import annotations

import copy
import logging
import traceback
from dataclasses import dataclass, field
from functools import partial
from datetime import date, datetime, timedelta
from typing import Any, Awaitable, Callable

from sqlalchemy import Row, bindparam, literal_column, select, true, update
from sqlalchemy.orm import Session

from billing.core import Core
from billing.pii import mask_numbers
from billing.members import CHAT_MEMBER, ChatMember, chat_member
from billing.staff import ACTIVE_STAFF_ID, active_staff_id
from handlers import i18n
from handlers.intent import Intent, parse
from handlers.messages import Replies, Incoming
from storage.db import insert_unless_present
from storage.models import Conversation
from storage.prepared import Prepared

log = logging.getLogger(__name__)
SESSION_TTL = timedelta(minutes=30)
MAX_ASKS = 10  # more than any flow has steps: steps that skip themselves never loop
KEPT_ACROSS_FLOWS = ("staff_id",)  # who onboards this person, from the QR code they scanned

Handler = Callable[["Turn"], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str  # "flow:await_what": stored in the database, so never renamed
    ask: Handler
    answer: Handler


@dataclass(frozen=True)
class Flow:
    name: str
    title: str  # how the user knows it, in the source language ("开通"), marked with N_
    intents: tuple[str, ...]  # the commands that start it
    start: Handler
    steps: tuple[Step, ...] = ()
    # What 取消 in the middle of it says: that the step was left and nothing changed (marked with N_).
    left: str = i18n.N_("好的，已取消，什么都没有改。回复 菜单 看其他功能。")

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


class Registry:
    """Every flow by name; a state names its flow before the colon."""

    def __init__(self, *flows: Flow) -> None:
        self.flows = {flow.name: flow for flow in flows}
        self.by_intent = {intent: flow for flow in flows for intent in flow.intents}

    def flow_of(self, state: str | None) -> Flow | None:
        return self.flows.get((state or "").split(":", 1)[0])

    def step(self, state: str | None) -> Step | None:
        flow = self.flow_of(state)
        return flow.step(state) if flow else None


# --- a turn: one incoming message and what is said back ---------------------------------

# A reply that is not text but the QR code image of a scene: this mark, then the scene.
# The mark cannot occur in a text reply (XML 1.0 has no U+001F), so no text is taken for it.
QR_IMAGE = "\x1fqr-image:"


def image_reply(reply: str) -> str | None:
    """The scene of a QR image reply, None for a text reply."""
    return reply.removeprefix(QR_IMAGE) if reply.startswith(QR_IMAGE) else None



@dataclass
class Turn:
    core: Core
    incoming: Incoming
    intent: Intent
    registry: Registry
    state: str | None
    data: dict[str, Any]
    locale: str
    messages: list[list[str]] = field(default_factory=lambda: [[]])
    asking: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    # words
    def t(self, message: str, **params: object) -> str:
        return i18n.t(message, self.locale, **params)

    def say(self, message: str, **params: object) -> None:
        self.messages[-1].append(self.t(message, **params))

    def say_text(self, text: str) -> None:
        """Text already translated and formatted (lists, amounts)."""
        self.messages[-1].append(text)

    def send_qr(self, scene: str) -> None:
        """The QR code of `scene` as an image message of its own, after what was said before it
        (the transport draws and sends it: see `image_reply`)."""
        self.new_message()
        self.messages[-1].append(QR_IMAGE + scene)
        self.messages.append([])

    def new_message(self) -> None:
        """What follows goes out as a separate message."""
        if self.messages[-1]:
            self.messages.append([])

    def money(self, amount_fen: int) -> str:
        return i18n.money(amount_fen, self.locale)

    def department(self, name: str) -> str:
        return i18n.department(name, self.locale)

    def moment(self, value: datetime) -> str:
        return i18n.moment(value, self.locale)

    def day(self, value: date | datetime) -> str:
        return i18n.day(value, self.locale)

    # moves
    def goto(self, state: str) -> None:
        """Go to a step; its question is asked once the handler returns."""
        self.state = self.asking = state

    def retry(self, message: str, **params: object) -> None:
        """Say what was wrong with the answer and ask the same question again."""
        self.say(message, **params)
        self.goto(self.state)

    def end(self) -> None:
        self.state = self.asking = None
        self.data = {key: self.data[key] for key in KEPT_ACROSS_FLOWS if key in self.data}

    @property
    def flow(self) -> Flow | None:
        return self.registry.flow_of(self.state)

    # numbered choices and confirmations
    def offer(self, options: list[tuple[Any, str]]) -> None:
        """A numbered list; `picked()` gives back the value of the number answered."""
        self.data["choices"] = [value for value, _ in options]
        self.say_text("\n".join(f"{n}  {label}" for n, (_, label) in enumerate(options, start=1)))

    def picked(self) -> Any | None:
        choices = self.data.get("choices", [])
        n = self.intent.slots.get("number")
        return choices[n - 1] if n is not None and 1 <= n <= len(choices) else None

    def confirmed(self) -> bool | None:
        """True for 同意/确认/是/1, False for 不/否/2, None for anything else."""
        n = self.intent.slots.get("number")
        if self.intent.name == "yes" or n == 1:
            return True
        if self.intent.name == "no" or n == 2:
            return False
        return None

    def agreed(self, unclear: str, declined: str) -> bool:
        """The answer to a confirmation: True to go on. Otherwise the turn has said `unclear` and
        asks again, or said `declined` and ended. Both messages are marked with N_()."""
        agreed = self.confirmed()
        if agreed is None:
            self.retry(unclear)
        elif not agreed:
            self.say(declined)
            self.end()
        return bool(agreed)

    # who is writing
    async def member(self) -> Row | None:
        """The member writing, as `billing.members.chat_member` reads them, or None."""
        if "member" not in self._cache:
            self._cache["member"] = await self.core.db.run(chat_member, self.incoming.openid)
        return self._cache["member"]

    async def staff_id(self) -> int | None:
        """The writer's id as an active staff member, or None."""
        if "staff_id" not in self._cache:
            self._cache["staff_id"] = await self.core.db.run(active_staff_id, self.incoming.openid)
        return self._cache["staff_id"]

    def forget_member(self) -> None:
        """After enrolment or 解约 the member row has changed."""
        self._cache.pop("member", None)

    def replies(self) -> list[str]:
        return ["\n".join(lines) for lines in self.messages if lines]


# --- routing: filters that compose ---------------------------------------------------------


class Filter:
    def __init__(self, test: Callable[[Turn], bool]) -> None:
        self.test = test

    def __call__(self, turn: Turn) -> bool:
        return self.test(turn)

    def __and__(self, other: Filter) -> Filter:
        return Filter(lambda turn: self(turn) and other(turn))

    def __or__(self, other: Filter) -> Filter:
        return Filter(lambda turn: self(turn) or other(turn))

    def __invert__(self) -> Filter:
        return Filter(lambda turn: not self(turn))


def is_event(name: str | None = None) -> Filter:
    return Filter(lambda turn: turn.incoming.kind == "event" and (name is None or turn.incoming.event == name))


def said(*intents: str) -> Filter:
    """The message is nothing but one of these commands."""
    return Filter(lambda turn: turn.intent.exact and turn.intent.name in intents)


def asked(*intents: str) -> Filter:
    """The message asks for one of these, in any words."""
    return Filter(lambda turn: turn.intent.name in intents)


in_flow = Filter(lambda turn: turn.registry.step(turn.state) is not None)
has_text = Filter(lambda turn: bool(turn.intent.text))
always = Filter(lambda turn: True)


@dataclass(frozen=True)
class Route:
    when: Filter
    then: Handler


class Router:
    """Routes tried in order; the first whose filter passes handles the turn."""

    def __init__(self, *routes: Route) -> None:
        self.routes = list(routes)

    async def dispatch(self, turn: Turn) -> None:
        for route in self.routes:
            if route.when(turn):
                await route.then(turn)
                return


# --- one message, start to end -----------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    state: str | None
    data: dict[str, Any]
    locale: str
    version: int  # 0: nothing saved yet


@dataclass(frozen=True)
class Loaded:
    """What a message starts from, read in one transaction: the conversation and who is writing."""

    saved: Saved
    expired: bool  # the flow it was in has expired
    member: Row | None  # billing.members.chat_member
    staff_id: int | None


async def converse(core: Core, incoming: Incoming, router: Router, registry: Registry, on_error: Handler,
                   on_expired: Handler) -> Replies:
    loaded = await load(core, incoming.openid)
    saved, expired = loaded.saved, loaded.expired
    # A state no flow knows any more (a flow changed since) starts afresh, like an expired one.
    resumed = not expired and (saved.state is None or registry.step(saved.state) is not None)
    turn = Turn(core, incoming, parse(incoming.text), registry,
                saved.state if resumed else None, copy.deepcopy(saved.data) if resumed else {}, saved.locale,
                _cache={"member": loaded.member, "staff_id": loaded.staff_id})
    try:
        if expired:
            await on_expired(turn)
        await router.dispatch(turn)
        await _ask(turn)
    except Exception:  # the one error handler: logged masked, and the user told what to do next
        log.error("chat %s failed at %s:\n%s", incoming.openid, turn.state, mask_numbers(traceback.format_exc()))
        turn.end()
        turn.messages = [[]]
        await on_error(turn)
    log.debug("chat %s: %s %s, %s -> %s", incoming.openid, incoming.kind, turn.intent.name or incoming.event,
              saved.state, turn.state)  # what was understood and where it led, never the words
    changed = (turn.state, turn.data, turn.locale) != (saved.state, saved.data, saved.locale)
    return Replies(turn.replies(), recording(core, incoming.openid, saved, turn) if changed else None)


async def _ask(turn: Turn) -> None:
    for _ in range(MAX_ASKS):
        state, turn.asking = turn.asking, None
        if state is None:
            return
        step = turn.registry.step(state)
        if step is None:
            raise LookupError(f"no step {state}")
        await step.ask(turn)
    raise RuntimeError(f"steps kept skipping past {turn.state}")


async def answer_step(turn: Turn) -> None:
    await turn.registry.step(turn.state).answer(turn)


# Every message reads these and writes the conversation: Core statements prepared once.
_CONVERSATIONS = Conversation.__table__
# The conversation, the member and the staff id, each a row or none, in one statement: one
# round trip instead of three, which on PostgreSQL is most of a read's cost.
_SAVED = select(_CONVERSATIONS.c.state, _CONVERSATIONS.c.data, _CONVERSATIONS.c.locale, _CONVERSATIONS.c.version,
                _CONVERSATIONS.c.expires_at).where(_CONVERSATIONS.c.openid == bindparam("openid")).subquery("saved")
_WRITER, _STAFF_ID = CHAT_MEMBER.subquery("writer"), ACTIVE_STAFF_ID.subquery("staff")
_ONE_ROW = select(literal_column("1").label("one")).subquery("one_row")
_LOAD = Prepared(select(*_SAVED.c, *(column.label(f"member_{column.key}") for column in _WRITER.c),
                        _STAFF_ID.c.id.label("staff_id"))
                 .select_from(_ONE_ROW.outerjoin(_SAVED, true()).outerjoin(_WRITER, true()).outerjoin(_STAFF_ID, true())))
_FIRST_SAVE = {dialect: Prepared(statement) for dialect, statement in insert_unless_present(_CONVERSATIONS).items()}
_NEXT_SAVE = Prepared(update(_CONVERSATIONS).where(
    _CONVERSATIONS.c.openid == bindparam("who"), _CONVERSATIONS.c.version == bindparam("old_version")
).values({name: bindparam(f"new_{name}") for name in ("version", "state", "data", "locale", "updated_at", "expires_at")}))


async def load(core: Core, openid: str) -> Loaded:
    return await core.db.run(_load, core.clock.now(), openid)


def _load(session: Session, now: datetime, openid: str) -> Loaded:
    row = _LOAD.execute(session, {"openid": openid}).one()
    member = None if row.member_id is None else ChatMember(*(getattr(row, f"member_{key}") for key in ChatMember._fields))
    if row.version is None:  # no conversation yet
        return Loaded(Saved(None, {}, i18n.SOURCE_LOCALE, 0), False, member, row.staff_id)
    expired = row.state is not None and row.expires_at is not None and now >= row.expires_at
    return Loaded(Saved(row.state, row.data or {}, row.locale, row.version), expired, member, row.staff_id)


def recording(core: Core, openid: str, saved: Saved, turn: Turn) -> Callable[[Session], None]:
    """The write of the turn's state, made only if nobody else wrote since it was loaded; the
    caller commits it with the replies (`Replies.record`)."""
    now = core.clock.now()
    values = {"state": turn.state, "data": turn.data, "locale": turn.locale, "updated_at": now,
              "expires_at": now + SESSION_TTL if turn.state else None}
    return partial(_save, openid=openid, version=saved.version, values=values)


def _save(session: Session, openid: str, version: int, values: dict[str, Any]) -> None:
    if version == 0:  # a first message of the same user may have been saved meanwhile: skipped, not failed
        first_save = _FIRST_SAVE[session.get_bind().dialect.name]
        saved = first_save.execute(session, {"openid": openid, "version": 1, **values})
    else:
        saved = _NEXT_SAVE.execute(session, {"who": openid, "old_version": version, "new_version": version + 1,
                                             **{f"new_{name}": value for name, value in values.items()}})
    if saved.rowcount != 1:
        log.warning("chat %s: state changed by another message meanwhile; kept the other one", openid)
