"""The documents a member accepts (the privacy notice, the credit commitment), per policy.

A policy names each document's version; its text is `VERSION.LOCALE.txt`, looked for
beside the policy's TOML file first (a city of one's own ships its texts with it), then
among the texts shipped in billing/document_texts/. The first line is the title, then one
paragraph a line, blank lines between them. zh_Hans is required; zh_Hant and en fall back to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from billing.core import Core
    from billing.policy import Policy

SHIPPED_DIR = Path(__file__).with_name("document_texts")
DOCUMENT_NAMES = ("privacy", "commitment")
SOURCE_LOCALE = "zh_Hans"


@dataclass(frozen=True)
class Document:
    name: str
    version: str
    locale: str  # the language of the text found (zh_Hans when the one asked for is missing)
    title: str
    paragraphs: tuple[str, ...]


def text_path(policy_dir: Path, version: str, locale: str) -> Path | None:
    for folder in (policy_dir, SHIPPED_DIR):
        path = folder / f"{version}.{locale}.txt"
        if path.is_file():
            return path
    return None


def document(policy: Policy, name: str, locale: str) -> Document | None:
    """The policy's current text of `name` in `locale`, or None for a name that is no document."""
    if name not in DOCUMENT_NAMES:
        return None
    version = policy.document_version(name)
    policy_dir = Path(policy.source).parent
    path = text_path(policy_dir, version, locale)
    if path is None:
        locale, path = SOURCE_LOCALE, text_path(policy_dir, version, SOURCE_LOCALE)
    title, paragraphs = _read(path)
    return Document(name, version, locale, title, paragraphs)


@lru_cache(maxsize=64)
def _read(path: Path) -> tuple[str, tuple[str, ...]]:
    title, _, body = path.read_text(encoding="utf-8").strip().partition("\n")
    return title.strip(), tuple(p.strip() for p in body.split("\n\n") if p.strip())


def document_path(name: str, locale: str) -> str:
    """Where xinyi serves the full text (bot/documents.py)."""
    return f"/documents/{name}?" + urlencode({"lang": locale})


def document_url(core: Core, name: str, locale: str) -> str:
    return core.public_url.rstrip("/") + document_path(name, locale)
