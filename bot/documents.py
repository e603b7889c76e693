"""`GET /documents/{name}?lang=`: the full text of a document the member accepts (the
policy's current `privacy` notice or credit `commitment`), readable on a phone, in the
member's language. The enrolment chat links here (billing.documents.document_url)."""
from __future__ import annotations

from aiohttp import web

from billing.documents import Document, document, document_path
from bot.cashier import html, page_locale, secured
from bot.cashier_pages import message_page
from bot.html import HTML_LANG, LANGUAGE_NAMES, tag, wrap
from bot.cashier_pages import document as page
from bot.hospital_api import CORE
from handlers.i18n import t


def setup(app: web.Application) -> None:
    app.router.add_get("/documents/{name}", show)


@secured
async def show(request: web.Request) -> web.Response:
    locale = page_locale(request)
    found = document(request.app[CORE].policy, request.match_info["name"], locale)
    if found is None:
        return html(message_page(locale, t("找不到这份文件", locale),
                                 t("这个链接不对。请在信医公众号里发送“开通”查看要签的文件。", locale)), 404)
    return html(page(locale, found.title, _body(found, locale), heading=t("信医", locale)))


def _body(found: Document, locale: str) -> str:
    text = "".join(tag("p", paragraph) for paragraph in found.paragraphs)
    version = tag("p", t("版本 {version}", locale, version=found.version), class_="hint")
    languages = "".join(tag("a", name, href=document_path(found.name, code), aria_current="page" if code == locale else None)
                        for code, name in LANGUAGE_NAMES)
    return (wrap("section", tag("h2", found.title) + text + version, class_="document", lang=HTML_LANG[found.locale])
            + wrap("nav", languages, class_="languages"))

