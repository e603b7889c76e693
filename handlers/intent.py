"""What a message asks for (an intent) and what it names (slots): a filter the router
and the flows consult, never a router itself.

Text is normalised first: NFKC turns full-width letters, digits and spaces into ASCII;
then lower case, with punctuation, symbols and emoji dropped. What every answer step
reads (a name, an ID or phone number) is normalised once too, the same for typed words
and recognised speech (`answer`). jieba segments what is
left with the domain dictionary of handlers/data/ (commands in the three chat languages,
departments, symptoms, relations, days), so "我肚子疼想挂号" reads as the intent `book`
with the slot department=消化内科.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jieba

DATA_DIR = Path(__file__).with_name("data")
MAX_CHARS = 500  # no answer is longer; a longer message is not parsed at all
DICTIONARY_FREQ = 100_000  # high enough that a domain word is never split by jieba's own dictionary
ANSWERS = ("yes", "no")
GREETING = "greet"  # 您好, 在吗, hello: only when nothing else is asked ("您好，我想挂号" books)
FILLERS = frozenset("我 的 了 吧 呢 啊 嗯 呀 哦 哈 请 請 i the a please".split())
_DROPPED = ("P", "S", "C", "Z", "M")  # punctuation, symbols (emoji), controls, separators, marks
_CHINESE_DIGITS = {"一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_NUMBER = re.compile(r"第?([0-9]{1,3}|[一二两兩三四五六七八九十]{1,3})(个|個|项|項|位)?")
_MONTH_DAY = re.compile(r"(?:([0-9]{1,2})月)?([0-9]{1,2})[日号號]")
NAME_DOTS = "·•"  # between the parts of a name (阿依古丽·买买提): punctuation kept in answers
# A number answer: digits with at least one Arabic digit, the Chinese ones said among them (幺 for 1 as
# numbers are read out), and X, the ID check digit.
_SPOKEN_DIGITS = str.maketrans("幺〇零一二三四五六七八九", "100123456789")
_NUMBER_ANSWER = re.compile(r"\+?[0-9幺〇零一二三四五六七八九xX]*[0-9][0-9幺〇零一二三四五六七八九xX]*")


@dataclass(frozen=True)
class Intent:
    name: str | None  # a command (handlers/data/commands.txt), "language", or None
    exact: bool  # the message is nothing but a command word: a command even in the middle of a step
    text: str  # normalised: lower case, words separated by single spaces
    answer: str  # what an answer step reads (names, ID and phone numbers): see `answer()`
    slots: dict[str, Any] = field(default_factory=dict)

    @property
    def compact(self) -> str:
        return self.text.replace(" ", "")


@dataclass(frozen=True)
class Lexicon:
    commands: dict[str, str]
    languages: dict[str, str]
    departments: dict[str, str]
    symptoms: dict[str, str]
    relations: dict[str, str]
    days: dict[str, str]

    def aliases(self, department: str) -> set[str]:
        """Every name of a department: its own and what people call it."""
        return {word for word, canonical in self.departments.items() if canonical == department} | {department}


def normalise(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).lower()
    kept = "".join(" " if unicodedata.category(ch)[0] in _DROPPED else ch for ch in text)
    return " ".join(kept.split())


def answer(raw: str) -> str:
    """A typed or spoken answer as the steps read it. NFKC (full-width letters and digits to
    ASCII), punctuation dropped wherever it is (WeChat's speech recognition ends a sentence
    with 。; people type ，！？) except the dot inside a name, spaces collapsed. A number
    answer ("110105 1949 0815 002x。", "幺38-0013-8000") is written plainly: no spaces,
    Chinese digits among Arabic ones as digits (幺 as 1), the ID check digit as an upper-case X."""
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(" " if unicodedata.category(ch).startswith("P") and ch not in NAME_DOTS else ch for ch in text)
    text = " ".join(text.split())
    compact = text.replace(" ", "")
    if _NUMBER_ANSWER.fullmatch(compact):
        return compact.translate(_SPOKEN_DIGITS).upper()
    return text


def _read(name: str, *, key_is_word: bool = False) -> dict[str, str]:
    """`key word word ...` per line -> {word: key}."""
    words: dict[str, str] = {}
    for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            key, *synonyms = fields
            for word in ([key] if key_is_word else []) + synonyms:
                words[normalise(word).replace(" ", "")] = key
    return words


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    return Lexicon(
        commands=_read("commands.txt"),
        languages=_read("languages.txt"),
        departments=_read("departments.txt", key_is_word=True),
        symptoms=_read("symptoms.txt"),
        relations=_read("relations.txt"),
        days=_read("days.txt"),
    )


@lru_cache(maxsize=1)
def _tokenizer() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    lex = lexicon()
    for table in (lex.commands, lex.languages, lex.departments, lex.symptoms, lex.relations, lex.days):
        for word in table:
            if len(word) > 1 and not word.isascii():
                tokenizer.add_word(word, DICTIONARY_FREQ)
    return tokenizer


def number(text: str) -> int | None:
    """A choice number: "2", "２", "第二个", "二", "十二"."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    if digits.isdigit():
        return int(digits)
    tens, _, ones = digits.rpartition("十")
    if "十" not in digits:
        return _CHINESE_DIGITS.get(digits) if len(digits) == 1 else None
    if len(tens) > 1 or len(ones) > 1:
        return None
    return _CHINESE_DIGITS.get(tens, 1 if not tens else 0) * 10 + _CHINESE_DIGITS.get(ones, 0)


def parse(raw: str) -> Intent:
    said = answer(raw[:MAX_CHARS])
    text = normalise(raw) if len(raw) <= MAX_CHARS else ""
    if not text:
        return Intent(None, False, text, said)
    lex = lexicon()
    compact = text.replace(" ", "")
    slots: dict[str, Any] = {}
    if (n := number(compact)) is not None:
        slots["number"] = n
    if match := _MONTH_DAY.search(compact):
        slots["month_day"] = (int(match.group(1)) if match.group(1) else None, int(match.group(2)))
    tokens = [token for token in _tokenizer().cut(text, HMM=False) if token.strip()]
    found: list[str] = []
    for token in (compact, *tokens):
        if token in lex.commands:
            found.append(lex.commands[token])
        if token in lex.languages:
            found.append("language")
            slots.setdefault("locale", lex.languages[token])
        if token in lex.symptoms:
            slots.setdefault("symptom", token)
            slots.setdefault("department", lex.symptoms[token])
        for table, slot in ((lex.departments, "department"), (lex.relations, "relation"), (lex.days, "day")):
            if token in table:
                slots.setdefault(slot, table[token])
    exact = compact in lex.commands or compact in lex.languages
    return Intent(_intent(found, tokens, slots, lex), exact, text, said, slots)


def _intent(found: list[str], tokens: list[str], slots: dict[str, Any], lex: Lexicon) -> str | None:
    asked = [name for name in found if name not in ANSWERS and name != GREETING]
    if "cancel" in asked and "book" in asked:
        return "cancel_booking"
    if asked:
        return asked[0]
    meaningful = [token for token in tokens if token not in FILLERS]
    for answer in ANSWERS:
        if meaningful and all(lex.commands.get(token) == answer for token in meaningful):
            return answer
    if "department" in slots:
        return "book"
    return GREETING if GREETING in found else None
