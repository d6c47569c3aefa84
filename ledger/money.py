"""Money arithmetic for the ledger: amounts and the platform fee. No database here.

Every amount is an ``int`` of micro-credits (1 credit = 1,000,000 µcr). Floats never reach a
money path; ``bool`` is refused even though it is an ``int`` subclass.

Rounding rule for the fee: ``fee = floor(gross * bps / 10_000)``, so any fraction of a
micro-credit goes to the host, never to the platform. Callers that charge in increments (metering)
compute the fee of the *cumulative* gross and post the difference from the fee already charged:
``fee_for(total_now) - fee_for(total_before)``. Then the fees of all increments add up to exactly
``fee_for(total)`` and rounding never drifts, however the total was split.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from config.errors import ValidationFailed

MICROS_PER_CREDIT = 1_000_000
BPS_PER_WHOLE = 10_000
# Far above any real amount (9.2 million credits), far below the bigint limit, so that sums of
# many postings can never overflow a PostgreSQL bigint.
MAX_AMOUNT_MICROS = 2**53


@dataclass(frozen=True)
class FeeSplit:
    """A charge split between the host (``net``) and the platform (``fee``)."""

    gross_micros: int
    fee_micros: int

    @property
    def net_micros(self) -> int:
        return self.gross_micros - self.fee_micros


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def amount_validate(value: object, *, field: str = "amount_micros") -> int:
    """Return ``value`` when it is a positive integer amount; raise ``ValidationFailed`` if not."""
    if not _is_int(value):
        raise ValidationFailed(
            f"{field} must be an integer of micro-credits",
            code="invalid_amount",
            fields={field: ["not an integer"]},
        )
    assert isinstance(value, int)
    if value <= 0:
        raise ValidationFailed(
            f"{field} must be positive, got {value}",
            code="invalid_amount",
            fields={field: ["must be positive"]},
        )
    if value > MAX_AMOUNT_MICROS:
        raise ValidationFailed(
            f"{field} is too large: {value}",
            code="invalid_amount",
            fields={field: [f"at most {MAX_AMOUNT_MICROS}"]},
        )
    return value


def fee_bps_validate(fee_bps: int) -> int:
    if not _is_int(fee_bps) or not 0 <= fee_bps <= BPS_PER_WHOLE:
        raise ValueError(f"fee basis points must be an integer in 0..{BPS_PER_WHOLE}: {fee_bps!r}")
    return fee_bps


def fee_for(gross_micros: int, fee_bps: int | None = None) -> int:
    """The platform fee of a gross amount: floor(gross * bps / 10000); the host keeps the rest.

    ``fee_bps`` defaults to ``settings.PLATFORM_FEE_BPS``. ``gross_micros`` may be zero.
    """
    bps = fee_bps_validate(settings.PLATFORM_FEE_BPS if fee_bps is None else fee_bps)
    if not _is_int(gross_micros) or gross_micros < 0:
        raise ValueError(f"gross must be a non-negative integer: {gross_micros!r}")
    return gross_micros * bps // BPS_PER_WHOLE


def fee_split(gross_micros: int, fee_bps: int | None = None) -> FeeSplit:
    """Split a gross charge into the platform fee and the host's net (see the rounding rule)."""
    return FeeSplit(gross_micros=gross_micros, fee_micros=fee_for(gross_micros, fee_bps))


def fee_increment(
    total_before_micros: int, total_after_micros: int, fee_bps: int | None = None
) -> FeeSplit:
    """The split of one increment of a cumulative charge, exact with respect to the total.

    The fees of consecutive increments always sum to ``fee_for`` of the final total.
    """
    if total_after_micros < total_before_micros:
        raise ValueError("a cumulative total never goes down")
    fee = fee_for(total_after_micros, fee_bps) - fee_for(total_before_micros, fee_bps)
    return FeeSplit(gross_micros=total_after_micros - total_before_micros, fee_micros=fee)


def capture_validate(gross_micros: object, fee_micros: object) -> FeeSplit:
    """Check a capture's amounts: gross positive, 0 <= fee <= gross."""
    gross = amount_validate(gross_micros, field="gross_micros")
    if not _is_int(fee_micros):
        raise ValidationFailed(
            "fee_micros must be an integer of micro-credits",
            code="invalid_amount",
            fields={"fee_micros": ["not an integer"]},
        )
    assert isinstance(fee_micros, int)
    if not 0 <= fee_micros <= gross:
        raise ValidationFailed(
            f"fee_micros must be between 0 and gross_micros ({gross}), got {fee_micros}",
            code="invalid_amount",
            fields={"fee_micros": ["must be between 0 and gross_micros"]},
        )
    return FeeSplit(gross_micros=gross, fee_micros=fee_micros)


def credits_format(amount_micros: int) -> str:
    """Human form for admin pages and memos: ``12.345678 cr``; exact, no float."""
    sign = "-" if amount_micros < 0 else ""
    whole, fraction = divmod(abs(amount_micros), MICROS_PER_CREDIT)
    return f"{sign}{whole}.{fraction:06d} cr"
