"""Translations: Simplified Chinese is the source language; zh_Hant and en catalogs in locales/.

`t(message, locale, **params)` translates and then fills `{name}` placeholders. Messages
kept in data (menus, reasons) are marked with `N_()` where they are written and passed
to `t()` where they are shown. Money and times are formatted with Babel per locale.

The catalog cycle, from the repository root (`say` and `retry` are the chat Turn's `t`):
    pybabel extract -F babel.cfg -k t -k say -k retry --add-location=file --sort-output -o locales/messages.pot .
    pybabel update -i locales/messages.pot -d locales -D messages --no-wrap
then translate what is new or fuzzy; `pip install -e .` compiles them (setup.py), and
tests/handlers/test_catalogs.py checks that all of it is done.
"""
from __future__ import annotations

import gettext as _gettext
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from babel.dates import format_skeleton, format_time, get_datetime_format
from babel.lists import format_list
from babel.numbers import format_currency, get_currency_symbol

from billing.clock import CHINA_TIME
from billing.interest import daily_fen
from billing.money import fen_to_yuan
from billing.policy import Institution

LOCALES = ("zh_Hans", "zh_Hant", "en")
SOURCE_LOCALE = "zh_Hans"
# An installed wheel carries the compiled catalogs inside this package (setup.py puts them
# there); a checkout, or an editable install, has them in the repository's locales/.
_SHIPPED = Path(__file__).resolve().parent / "locales"
LOCALE_DIR = _SHIPPED if _SHIPPED.is_dir() else Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
# The CLDR locale each chat language formats money and dates with.
CLDR = {"zh_Hans": "zh_Hans_CN", "zh_Hant": "zh_Hant", "en": "en"}


@lru_cache(maxsize=None)
def _catalog(locale: str) -> _gettext.NullTranslations:
    if locale == SOURCE_LOCALE:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[locale], fallback=True)


def _known(locale: str) -> str:
    return locale if locale in LOCALES else SOURCE_LOCALE


def t(message: str, locale: str = SOURCE_LOCALE, **params: object) -> str:
    text = _catalog(_known(locale)).gettext(message)
    return text.format(**params) if params else text


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; `t()` translates it where it is shown."""
    return message


# Department names are data, stored as the hospital's schedule gives them (Simplified Chinese).
# These, the demo hospital's (billing/demo.py) and the common ones, are translated like
# messages; any other name, from a hospital's own schedule import, is shown as given.
DEPARTMENTS = frozenset((
    N_("内科"), N_("外科"), N_("儿科"), N_("眼科"), N_("消化内科"), N_("心血管内科"), N_("呼吸内科"),
))


def department(name: str, locale: str) -> str:
    """A department's name in the member's language when it is one of DEPARTMENTS, else as stored."""
    return t(name, locale) if name in DEPARTMENTS else name


# How a payment reached a bill: xinyi's cashier (WeChat Pay, Alipay), or the hospital's own ways
# (billing.payments.HOSPITAL_CHANNELS), among them NHSA's 刷脸支付, 一码支付 and 移动支付 (seed 003).
PAYMENT_CHANNELS = {
    "wechatpay": N_("微信支付"), "alipay": N_("支付宝"), "window": N_("医院窗口"), "kiosk": N_("自助机"),
    "face": N_("刷脸支付"), "code": N_("医保码一码付"), "mobile": N_("医院手机端"), "cash": N_("现金"),
}


def payment_channel(channel: str, locale: str) -> str:
    return t(PAYMENT_CHANNELS[channel], locale) if channel in PAYMENT_CHANNELS else channel


def institution_terms(institution: Institution, locale: str) -> str:
    """A financial institution's terms in plain words: the interest-free days, then the interest a
    day on each 1,000 yuan still owed (by the rule bills accrue by), and its most credit."""
    return t("免息 {days} 天，之后{rate}，最高额度 {cap}", locale, days=institution.interest_free_days,
             rate=daily_interest(institution.daily_interest_ppm, locale), cap=money(institution.max_limit_fen, locale))


def institution_name(institution: Institution | None, code: str | None, locale: str) -> str:
    """An institution's name in `locale`; one the policy no longer lists by its code; `-` for none."""
    return institution.name(locale) if institution is not None else code or "-"


def daily_interest(daily_interest_ppm: int, locale: str) -> str:
    """A rate in plain words: the interest a day on each 1,000 yuan owed."""
    return t("每欠 1000 元每天利息 {fee}", locale, fee=money(daily_fen(100_000, daily_interest_ppm), locale))


def listing(words: list[str], locale: str) -> str:
    """`微信支付和支付宝`, `WeChat Pay and Alipay`: a list as the language writes one (CLDR)."""
    return format_list(words, locale=CLDR[_known(locale)])


def with_lang(url: str, locale: str) -> str:
    """A link to one of our pages (the cashier, the QR poster) that opens in `locale`: `?lang=`."""
    return f"{url}{'&' if '?' in url else '?'}lang={_known(locale)}"


def money(amount_fen: int, locale: str) -> str:
    """`¥1,234.50` (zh_Hans), `CN¥1,234.50` (zh_Hant, en): exact, from integer fen."""
    return format_currency(fen_to_yuan(amount_fen), "CNY", locale=CLDR[_known(locale)])


def yuan_sign(locale: str) -> str:
    """The sign `money` puts before an amount: `¥` (zh_Hans), `CN¥` (zh_Hant, en)."""
    return get_currency_symbol("CNY", locale=CLDR[_known(locale)])


def day(value: date | datetime, locale: str) -> str:
    """A day with its weekday: `3月4日周三`, `Wed, Mar 4`; a datetime counts in China time."""
    if isinstance(value, datetime):
        value = value.astimezone(CHINA_TIME).date()
    return format_skeleton("MMMEd", value, locale=CLDR[_known(locale)])


def moment(value: datetime, locale: str) -> str:
    """A point in time as people in China read it: `3月4日周三 17:05`, `Wed, Mar 4, 17:05`."""
    local = value.astimezone(CHINA_TIME)
    cldr = CLDR[_known(locale)]
    return get_datetime_format("short", locale=cldr).format(format_time(local, "HH:mm", locale=cldr), day(local, locale))
