"""Translations: Simplified Chinese is the source language; zh_Hant and en catalogs in locales/.

`t(message, locale, **params)` translates and then fills `{name}` placeholders.
"""
from __future__ import annotations

import gettext as _gettext
from functools import lru_cache
from pathlib import Path

LOCALES = ("zh_Hans", "zh_Hant", "en")
SOURCE_LOCALE = "zh_Hans"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"


@lru_cache(maxsize=None)
def _catalog(locale: str) -> _gettext.NullTranslations:
    if locale == SOURCE_LOCALE:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[locale], fallback=True)


def t(message: str, locale: str = SOURCE_LOCALE, **params: object) -> str:
    text = _catalog(locale if locale in LOCALES else SOURCE_LOCALE).gettext(message)
    return text.format(**params) if params else text
