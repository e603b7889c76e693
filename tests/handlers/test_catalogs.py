"""The Babel catalogs: every message the code marks is translated in zh_Hant and en, the
template and the compiled catalogs are current, placeholders survive translation, and
every command a reply tells people to type is one the parser understands."""
from __future__ import annotations

import re
import string

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from handlers.i18n import LOCALE_DIR
from handlers.intent import parse

ROOT = LOCALE_DIR.parent
KEYWORDS = {**DEFAULT_KEYWORDS, "t": None, "say": None, "retry": None}  # as handlers/i18n.py tells pybabel
TRANSLATED = ("zh_Hant", "en")
COMMAND = {
    "zh_Hans": re.compile(r"回复 ([^\s，。；、“”0-9]+)"),
    "zh_Hant": re.compile(r"回覆 ([^\s，。；、“”0-9]+)"),
    "en": re.compile(r"[Rr]eply ([A-Z]{2,})\b"),
}


def extracted() -> set[str]:
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    return {message for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)}


def po(locale: str):
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=locale)


def ids(catalog) -> set[str]:
    return {m.id for m in catalog if m.id}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_template_is_current():
    with (LOCALE_DIR / "messages.pot").open("rb") as source:
        assert ids(read_po(source)) == extracted(), "run the pybabel extract of handlers/i18n.py"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_message_is_translated(locale):
    catalog = po(locale)
    assert ids(catalog) == extracted(), "run pybabel update (handlers/i18n.py)"
    untranslated = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert not untranslated, f"{locale}: {untranslated[:5]}"
    for message in catalog:
        if message.id:
            assert fields(message.string) == fields(message.id), f"{locale}: {message.id!r} -> {message.string!r}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_the_compiled_catalog_is_current(locale):
    compiled = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.mo"
    assert compiled.exists(), "pip install -e . compiles the catalogs (setup.py)"
    with compiled.open("rb") as source:
        mo = read_mo(source)
    assert {m.id: m.string for m in mo if m.id} == {m.id: m.string for m in po(locale) if m.id}, "pip install -e . again"


@pytest.mark.parametrize("locale", ("zh_Hans", *TRANSLATED))
def test_every_command_a_reply_names_is_understood(locale):
    texts = extracted() if locale == "zh_Hans" else {m.string for m in po(locale) if m.id}
    named = {word for text in texts for word in COMMAND[locale].findall(text)}
    assert len(named) >= 10
    misunderstood = sorted(word for word in named if not (parse(word).exact or parse(word).slots.get("number")))
    assert not misunderstood, f"{locale}: replies tell people to type {misunderstood}"
