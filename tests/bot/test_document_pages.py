"""`GET /documents/{name}`: the policy's privacy notice and credit commitment in full, in the
three languages, readable on a phone; an unknown document is a 404 page."""
from __future__ import annotations

import pytest

from bot.app import build_app


@pytest.fixture
async def nantong(aiohttp_client, make_core):
    return await aiohttp_client(build_app(await make_core("nantong"), background=False))


@pytest.mark.parametrize("lang, title, words", [
    ("zh_Hans", "先诊疗后付费信用承诺书（南通）", "在信用修复完成前不再享受"),
    ("zh_Hant", "先診療後付費信用承諾書（南通）", "在信用修復完成前不再享受"),
    ("en", "Treat first, pay later: credit commitment (Nantong)", "until credit repair is complete"),
])
async def test_the_commitment_in_each_language(nantong, lang, title, words):
    response = await nantong.get(f"/documents/commitment?lang={lang}")
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert f"<h2>{title}</h2>" in page and words in page and "nantong-2023-07" in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "多次逾期" not in page
    assert response.headers["Cache-Control"] == "no-store"
    for other in ("zh_Hans", "zh_Hant", "en"):  # the page in the other languages, one tap away
        assert f'href="/documents/commitment?lang={other}"' in page


async def test_the_privacy_notice_follows_the_browser_language(nantong):
    response = await nantong.get("/documents/privacy", headers={"Accept-Language": "zh-TW,zh;q=0.8"})
    assert "隱私說明（南通市一院先診療後付費）" in await response.text()


async def test_an_unknown_document_is_not_found(nantong):
    response = await nantong.get("/documents/contract?lang=en")
    assert response.status == 404 and "Document not found" in await response.text()
    assert (await nantong.get("/documents/../presets/nantong.toml")).status == 404
