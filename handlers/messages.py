"""What the transport hands to the conversations and gets back: no HTTP, no XML here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from sqlalchemy.orm import Session

from billing.core import Core


@dataclass(frozen=True)
class Incoming:
    openid: str
    kind: str  # "text", "voice" (text is WeChat's Recognition), "event"
    text: str = ""
    event: str = ""  # subscribe, unsubscribe, SCAN, CLICK, VIEW
    event_key: str = ""  # a QR scene ("qrscene_" stripped) or a menu key
    msg_id: str = ""


@dataclass(frozen=True)
class Replies:
    """The replies to one message, in order (the first is the passive reply, any further ones go
    out as customer-service messages), and the write that stores the conversation's new state,
    for the caller to commit in the transaction that stores the replies: a message WeChat sends
    again then finds both or neither. None when the state did not change."""

    replies: list[str]
    record: Callable[[Session], object] | None = None


# A responder turns one incoming message into its Replies.
Responder = Callable[[Core, Incoming], Awaitable[Replies]]
