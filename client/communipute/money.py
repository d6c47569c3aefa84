"""Money is an integer of micro-credits on the wire (1 credit = 1,000,000 µcr), never a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS_PER_CREDIT = 1_000_000
MICROS_MAX = 2**63 - 1

Credits = int | str | Decimal | float


def credits_to_micros(credits: Credits) -> int:
    """``2``, ``"0.5"``, ``Decimal("1.25")`` (or a float, read through its shortest decimal
    form: ``0.1`` is 100,000 µcr) in micro-credits; more than six decimals is refused."""
    if isinstance(credits, bool) or not isinstance(credits, int | str | Decimal | float):
        raise TypeError(f"credits are a number or a decimal string, not {credits!r}")
    try:
        amount = Decimal(str(credits).strip()) * MICROS_PER_CREDIT
    except InvalidOperation:
        raise ValueError(f"not a number of credits: {credits!r}") from None
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError(f"{credits!r} credits is not a whole number of micro-credits")
    micros = int(amount)
    if not 1 <= micros <= MICROS_MAX:
        raise ValueError(f"{credits!r} credits is out of range (at least 0.000001)")
    return micros


def micros_text(micros: int) -> str:
    """``1500000`` -> ``"1.5"``: micro-credits as credits, exactly (no float on the way)."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_CREDIT)
    return f"{sign}{whole}.{fraction:06d}".rstrip("0").rstrip(".")
