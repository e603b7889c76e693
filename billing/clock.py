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
    """A clock that stands still until moved: `clock.advance(hours=48)`."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at
