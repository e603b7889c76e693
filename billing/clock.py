"""Time is injected so that tests and `xinyi sweep --now` can travel in it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

CHINA_TIME = timezone(timedelta(hours=8), "CST")  # one zone, no daylight saving: what hospitals and people read


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that stands still until moved: `clock.advance(hours=48)`, `clock.advance(PAY_LINK_TTL)`."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, by: timedelta = timedelta(0), /, **parts: int) -> datetime:
        """Move on by a timedelta, or by whole units (`days=`, `hours=`, `minutes=`, `seconds=`)."""
        self.at += by + timedelta(**parts)
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at
