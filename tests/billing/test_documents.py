"""The documents a member accepts are the policy's: each preset names its own texts, shipped
in three languages, and only Beijing's commitment revokes after repeated overdues (seeds 000,
001; Nantong 002 and Xiamen 004 say no such thing)."""
from __future__ import annotations

import pytest

from billing.documents import DOCUMENT_NAMES, document
from billing.policy import load_policy
from handlers.i18n import LOCALES

PRESETS = ("beijing-shijingshan", "nantong", "xiamen")
REVOCATION = ("多次逾期", "取消资格", "取消資格", "6 次逾期", "overdue bills in total cancel")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("locale", LOCALES)
def test_every_document_of_every_preset_in_every_language(preset, locale):
    policy = load_policy(preset)
    for name in DOCUMENT_NAMES:
        found = document(policy, name, locale)
        assert (found.version, found.locale) == (policy.document_version(name), locale)
        assert found.title and len(found.paragraphs) >= 3


def test_each_preset_has_its_own_documents():
    policies = [load_policy(preset) for preset in PRESETS]
    for name in DOCUMENT_NAMES:
        assert len({policy.document_version(name) for policy in policies}) == len(PRESETS)


@pytest.mark.parametrize("locale", LOCALES)
def test_only_beijing_revokes_after_repeated_overdues(locale):
    def says_revocation(preset: str) -> bool:
        text = "\n".join(document(load_policy(preset), "commitment", locale).paragraphs)
        return any(words in text for words in REVOCATION)

    assert says_revocation("beijing-shijingshan")
    assert not says_revocation("nantong") and not says_revocation("xiamen")


def test_nantong_commitment_says_what_credit_repair_needs():
    text = "\n".join(document(load_policy("nantong"), "commitment", "zh_Hans").paragraphs)
    assert "在信用修复完成前不再享受" in text and "付清全部逾期费用，并重新签署本承诺书" in text


def test_unknown_document():
    assert document(load_policy("nantong"), "contract", "zh_Hans") is None
