"""HTML without a template engine, shared by the cashier and the console: text goes into
markup only through `tag` (and `esc` for attributes), which escapes it."""
from __future__ import annotations

from html import escape

HTML_LANG = {"zh_Hans": "zh-Hans", "zh_Hant": "zh-Hant", "en": "en"}
LANGUAGE_NAMES = (("zh_Hans", "简体中文"), ("zh_Hant", "繁體中文"), ("en", "English"))  # each in its own language


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def attributes(**values: object) -> str:
    """`class_="x", data_done="/p"` -> ` class="x" data-done="/p"`; True stands alone, None is left out."""
    return "".join(
        f" {name.rstrip('_').replace('_', '-')}" + ("" if value is True else f'="{esc(value)}"')
        for name, value in values.items() if value is not None
    )


def tag(name: str, text: str, **attrs: object) -> str:
    """An element holding text, escaped."""
    return f"<{name}{attributes(**attrs)}>{esc(text)}</{name}>"


def wrap(name: str, markup: str, **attrs: object) -> str:
    """An element holding markup made by `tag` and `wrap`."""
    return f"<{name}{attributes(**attrs)}>{markup}</{name}>"
