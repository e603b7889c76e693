"""Checks on request bodies: each failure names the field and changes nothing."""
from __future__ import annotations

from typing import Any

from billing.errors import InvalidInput


def require_text(body: dict[str, Any], field: str, max_len: int = 64) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise InvalidInput(f"{field} must be a non-empty string of at most {max_len} characters", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return value.strip()


def require_choice(body: dict[str, Any], field: str, choices: tuple[str, ...]) -> str:
    value = body.get(field)
    if value not in choices:
        raise InvalidInput(f"{field} must be one of {', '.join(choices)}", field=field)
    return value
