"""What the transport hands to the conversations and gets back: no HTTP, no XML here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from billing.core import Core


@dataclass(frozen=True)
class Incoming:
    openid: str
    kind: str  # "text", "voice" (text is WeChat's Recognition), "event"
    text: str = ""
    event: str = ""  # subscribe, unsubscribe, SCAN, CLICK, VIEW
    event_key: str = ""  # a QR scene ("qrscene_" stripped) or a menu key
    msg_id: str = ""


# A responder turns one incoming message into the replies for it, in order: the first is
# the passive reply, any further ones go out as customer-service messages.
Responder = Callable[[Core, Incoming], Awaitable[list[str]]]
