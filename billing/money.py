"""Money is integer fen. These helpers check amounts at the edge of the core."""
from __future__ import annotations

from decimal import Decimal

from billing.errors import InvalidInput

MAX_AMOUNT_FEN = 10**11  # one billion yuan: far above any bill, far below BIGINT


def require_fen(value: object, field: str, *, allow_zero: bool = False) -> int:
    """An amount in fen as the caller sent it: an int (not bool, not float), positive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number of fen", field=field)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{field} must be {'zero or more' if allow_zero else 'more than zero'}", field=field)
    if value > MAX_AMOUNT_FEN:
        raise InvalidInput(f"{field} is too large", field=field)
    return value


def fen_to_yuan(fen: int) -> Decimal:
    """For display and for gateways that speak yuan ("12.34"): exact, never float."""
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))
