"""Chinese resident identity numbers (居民身份证号码) and mobile numbers, checked with python-stdnum."""
from __future__ import annotations

import re
from datetime import date

from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from billing.errors import InvalidInput

_FULL_WIDTH = str.maketrans("０１２３４５６７８９ｘＸ", "0123456789xX")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def normalise_id_number(raw: str) -> str:
    """A valid 18-digit ID number, upper-case X; full-width digits and spaces are accepted."""
    text = raw.translate(_FULL_WIDTH).replace(" ", "").upper()
    try:
        number = ric.validate(text)
    except ValidationError:
        raise InvalidInput("the ID number is not valid (check the 18 digits)", field="id_number") from None
    if len(number) != 18:
        raise InvalidInput("the ID number must have 18 characters", field="id_number")
    return number


def birth_date(id_number: str) -> date:
    return ric.get_birth_date(id_number)


def age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def normalise_phone(raw: str) -> str:
    text = raw.translate(_FULL_WIDTH).replace(" ", "").replace("-", "")
    if text.startswith("+86"):
        text = text[3:]
    if not _MOBILE.fullmatch(text):
        raise InvalidInput("the mobile number must have 11 digits and start with 1", field="phone")
    return text
