"""Checks on what a request carries (bodies, headers, query strings): each failure names
what is wrong and changes nothing."""
from __future__ import annotations

import json
import re
from typing import Any

from billing.errors import InvalidInput

MAX_JSON_DEPTH = 32  # no request of ours nests deeper than 4
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """`text` as an int when it is 1 to `max_digits` ASCII digits, else None. `isdigit()` alone
    passes "²" and "５" (which int() refuses or reads), and int() refuses over 4,300 digits.
    The default 18 digits fit any 64-bit integer column."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def printable_ascii(text: str, max_len: int) -> bool:
    """1 to `max_len` printable ASCII characters: what a credential header or token may be. Undecodable
    header bytes arrive as lone surrogates, and hmac.compare_digest refuses non-ASCII text."""
    return 0 < len(text) <= max_len and text.isascii() and text.isprintable()


class BadJson(ValueError):
    """A body that is not strict JSON; the message says why."""


def loads_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, arrays and objects at most `max_depth` deep, and no
    lone surrogate (`"\\ud800"`) in any string, which no database driver can store. BadJson otherwise."""
    try:
        value = json.loads(raw.decode(), parse_constant=_no_constant)
    except RecursionError:
        raise BadJson(f"JSON nested more than {max_depth} deep") from None
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise BadJson(str(exc) if isinstance(exc, BadJson) else "not valid UTF-8 JSON") from None
    _check_tree(value, max_depth)
    return value


def _no_constant(name: str) -> None:
    raise BadJson(f"{name} is not JSON")


def _check_tree(value: Any, max_depth: int) -> None:
    stack = [(value, 0)]  # iterative: the tree may be as deep as the parser allowed
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadJson("a string holds a lone surrogate (an unpaired \\ud800-\\udfff)")
        elif isinstance(item, (dict, list)):
            if depth == max_depth:
                raise BadJson(f"JSON nested more than {max_depth} deep")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
