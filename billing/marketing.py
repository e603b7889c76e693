"""Partners' offers (营销信息): only to a member who said yes to them, apart from everything else.

Seed 004: "严禁金融机构在未获得用户授权的前提下开展商业营销活动". The other seeds are silent, and every
preset keeps the same rule (`[marketing]`, billing/policy.py), as national law asks (广告法 art. 43:
consent, the sender named, a way to refuse). The consent is never bundled with the privacy notice or
the credit commitment, never presumed, never a condition of the line: the member says yes in the
chat (订阅) and no at any time (退订); unfollowing the account is a no; an operator may record a no
the member asked for elsewhere, never a yes. Every yes and no is a row of marketing_consents; the
latest is the choice now, and none is a no.

An operator's offer (billing/console.py `send_offer`) is queued in the outbox, kind `marketing`, for
each member who says yes then; when it is sent (bot/wechat_sender.py) `to_send` asks again, and a
message whose yes was withdrawn meanwhile is dropped (outbox status `dropped`), not sent. The member's
status does not matter: the choice is theirs, so a suspended or revoked member who said yes gets
offers and one who said no never does. Offers go by WeChat only: a marketing SMS has rules of its own
(an opt-out in every message, "拒收请回复R"; providers approve no marketing template), not built here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from billing.core import Core
from billing.errors import InvalidInput
from billing.outbox import QUEUED, Dropped
from storage.db import signal_on_commit
from storage.models import MarketingConsent, MarketingOffer, Member, Operator, Outbox

KIND = "marketing"  # the outbox kind of an offer to one member
OFFER_LOCALES = ("zh_Hans", "zh_Hant", "en")  # zh_Hans always; a member whose language is missing gets it
SENDER_MAX_CHARS = 50
TEXT_MAX_CHARS = 300  # a few lines on a phone; WeChat takes more, elderly readers do not


@dataclass(frozen=True)
class Choice:
    """The member's answer to offers now."""

    granted: bool
    since: datetime | None  # when they last said yes or no; None: never asked
    changed: bool = False  # this request changed it


@dataclass(frozen=True)
class Offer:
    sender: str
    texts: dict[str, str]

    def text(self, locale: str) -> str:
        return self.texts.get(locale) or self.texts["zh_Hans"]


def _latest(session: Session, member_id: int) -> MarketingConsent | None:
    return session.scalar(select(MarketingConsent).where(MarketingConsent.member_id == member_id)
                          .order_by(MarketingConsent.id.desc()).limit(1))


def _choice(row: MarketingConsent | None, changed: bool = False) -> Choice:
    return Choice(row is not None and row.granted, row.at if row is not None else None, changed)


def choose(session: Session, member_id: int, granted: bool, via: str, now: datetime,
           operator_id: int | None = None) -> Choice:
    """Record the member's yes or no, unless it is their answer already (then nothing is written).
    The member's row is locked, so that a yes and a no at the same moment are taken one after the other."""
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    latest = _latest(session, member_id)
    if _choice(latest).granted == granted:
        return _choice(latest)
    row = MarketingConsent(member_id=member_id, granted=granted, via=via, operator_id=operator_id, at=now)
    session.add(row)
    session.flush()
    return _choice(row, changed=True)


async def subscribe(core: Core, member_id: int) -> Choice:
    """订阅 in the chat. The caller checks the policy sends offers at all (`marketing_allowed`)."""
    return await core.db.run(choose, member_id, True, "chat", core.clock.now())


async def unsubscribe(core: Core, member_id: int) -> Choice:
    """退订 in the chat: always taken, whatever the policy."""
    return await core.db.run(choose, member_id, False, "chat", core.clock.now())


async def unfollowed(core: Core, member_id: int) -> None:
    """The member unfollowed the account: their yes ends with it (following again is no yes)."""
    await core.db.run(choose, member_id, False, "unfollow", core.clock.now())


def history(session: Session, member_id: int) -> list[tuple[MarketingConsent, str | None]]:
    """Every yes and no of the member, newest first, with the operator who recorded it (or None)."""
    return [(row, username) for row, username in session.execute(
        select(MarketingConsent, Operator.username).outerjoin(Operator, Operator.id == MarketingConsent.operator_id)
        .where(MarketingConsent.member_id == member_id).order_by(MarketingConsent.id.desc()))]


def _consenting():
    """The members whose latest answer is yes and whom WeChat can reach (an openid)."""
    latest = select(func.max(MarketingConsent.id)).group_by(MarketingConsent.member_id)
    return (select(MarketingConsent.member_id).join(Member, Member.id == MarketingConsent.member_id)
            .where(MarketingConsent.id.in_(latest), MarketingConsent.granted.is_(True), Member.openid.is_not(None)))


def consenting_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(_consenting().subquery()))


def offer_fields(sender: str, texts: dict[str, str]) -> tuple[str, dict[str, str]]:
    """An offer's sender and texts as kept, or InvalidInput naming the field at fault: a sender, a
    text in Simplified Chinese, the other languages optional; plain text, no control characters."""
    sender = sender.strip()
    if not sender or len(sender) > SENDER_MAX_CHARS or not sender.isprintable():
        raise InvalidInput(f"name who makes the offer, in 1 to {SENDER_MAX_CHARS} characters", field="sender")
    kept = {}
    for locale in OFFER_LOCALES:
        text = texts.get(locale, "").replace("\r\n", "\n").strip()
        if not text:
            continue
        if len(text) > TEXT_MAX_CHARS or not all(line.isprintable() for line in text.split("\n")):
            raise InvalidInput(f"an offer's text is plain text of at most {TEXT_MAX_CHARS} characters", field=f"text_{locale}")
        kept[locale] = text
    if "zh_Hans" not in kept:
        raise InvalidInput("the offer needs its text in Simplified Chinese", field="text_zh_Hans")
    return sender, kept


def queue_offer(session: Session, sender: str, texts: dict[str, str], operator_id: int, now: datetime) -> MarketingOffer:
    """The offer, and one outbox message of it for each member who says yes now, in the caller's
    transaction; `sender` and `texts` as `offer_fields` gives them."""
    offer = MarketingOffer(sender=sender, texts=texts, operator_id=operator_id, recipients=0, created_at=now)
    session.add(offer)
    session.flush()
    members = list(session.scalars(_consenting().order_by(MarketingConsent.member_id)))
    if members:
        session.execute(insert(Outbox.__table__), [
            {"dedupe_key": f"{KIND}:{offer.id}:{member_id}", "kind": KIND, "member_id": member_id,
             "payload": {"offer_id": offer.id}, "status": "pending", "attempts": 0, "next_attempt_at": now,
             "created_at": now} for member_id in members])
        signal_on_commit(session, QUEUED)
    offer.recipients = len(members)
    return offer


@dataclass(frozen=True)
class Sent:
    """An offer as the console lists it: who sent it, and where its messages are."""

    offer: MarketingOffer
    username: str
    statuses: dict[str, int]  # outbox status -> messages: pending, sent, dropped, dead


def recent_offers(session: Session, limit: int) -> list[Sent]:
    """The latest offers, newest first, with their messages counted by status."""
    rows = session.execute(select(MarketingOffer, Operator.username).join(Operator, Operator.id == MarketingOffer.operator_id)
                           .order_by(MarketingOffer.id.desc()).limit(limit)).all()
    offer_id = Outbox.payload["offer_id"].as_integer()
    counted: dict[int, dict[str, int]] = {}
    for offer, status, count in session.execute(
            select(offer_id, Outbox.status, func.count()).where(Outbox.kind == KIND, offer_id.in_([r[0].id for r in rows]))
            .group_by(offer_id, Outbox.status)):
        counted.setdefault(offer, {})[status] = count
    return [Sent(offer, username, counted.get(offer.id, {})) for offer, username in rows]


async def to_send(core: Core, offer_id: int, member_id: int) -> Offer:
    """The offer, when it may go to the member now; else `Dropped` says why: the member said no
    since it was queued, or the programme stopped sending offers."""
    def work(session: Session) -> Offer:
        if not core.policy.marketing_allowed:
            raise Dropped("marketing_off")
        if not _choice(_latest(session, member_id)).granted:
            raise Dropped("consent_withdrawn")
        offer = session.get(MarketingOffer, offer_id)
        return Offer(offer.sender, dict(offer.texts))

    return await core.db.run(work)
