from __future__ import annotations

import itertools

import pytest

from config.errors import ValidationFailed
from ledger.money import (
    MAX_AMOUNT_MICROS,
    amount_validate,
    capture_validate,
    credits_format,
    fee_for,
    fee_increment,
    fee_split,
)


@pytest.mark.parametrize(
    ("gross", "bps", "fee"),
    [
        (1_000_000, 1000, 100_000),
        (9, 1000, 0),  # 0.9 micro-credit of fee: the fraction goes to the host
        (19, 1000, 1),
        (0, 1000, 0),
        (12_345, 0, 0),
        (12_345, 10_000, 12_345),
        (3, 3333, 0),
        (10_000, 3333, 3333),
    ],
)
def test_fee_for_floors_in_the_hosts_favour(gross: int, bps: int, fee: int) -> None:
    # given / when
    result = fee_for(gross, bps)
    # then
    assert result == fee


def test_fee_split_defaults_to_the_platform_fee_setting(settings: object) -> None:
    # given
    settings.PLATFORM_FEE_BPS = 250  # type: ignore[attr-defined]
    # when
    split = fee_split(1_000_001)
    # then
    assert (split.gross_micros, split.fee_micros, split.net_micros) == (1_000_001, 25_000, 975_001)


def test_fees_of_increments_add_up_to_the_fee_of_the_total() -> None:
    # given: a cumulative charge reported in awkward increments
    totals = [0, 7, 19, 20, 33, 1_000, 1_009, 25_011]
    # when
    splits = [fee_increment(a, b, 1000) for a, b in itertools.pairwise(totals)]
    # then
    assert sum(s.gross_micros for s in splits) == 25_011
    assert sum(s.fee_micros for s in splits) == fee_for(25_011, 1000) == 2_501
    assert [s.fee_micros for s in splits] == [0, 1, 1, 1, 97, 0, 2_401]


def test_fee_increment_refuses_a_total_that_goes_down() -> None:
    with pytest.raises(ValueError, match="never goes down"):
        fee_increment(10, 9, 1000)


@pytest.mark.parametrize("bps", [-1, 10_001, True, 1.5])
def test_fee_for_refuses_bad_basis_points(bps: object) -> None:
    with pytest.raises(ValueError, match="basis points"):
        fee_for(100, bps)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, 999, MAX_AMOUNT_MICROS])
def test_amount_validate_accepts_positive_integers(value: int) -> None:
    assert amount_validate(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "must be positive"),
        (-5, "must be positive"),
        (True, "not an integer"),
        (1.0, "not an integer"),
        ("100", "not an integer"),
        (None, "not an integer"),
        (MAX_AMOUNT_MICROS + 1, f"at most {MAX_AMOUNT_MICROS}"),
    ],
)
def test_amount_validate_refuses_anything_else(value: object, reason: str) -> None:
    # when
    with pytest.raises(ValidationFailed) as refused:
        amount_validate(value, field="gross_micros")
    # then
    assert refused.value.code == "invalid_amount"
    assert refused.value.fields == {"gross_micros": [reason]}


@pytest.mark.parametrize(
    ("gross", "fee", "field"),
    [
        (100, -1, "fee_micros"),
        (100, 101, "fee_micros"),
        (100, 1.5, "fee_micros"),
        (0, 0, "gross_micros"),
    ],
)
def test_capture_validate_refuses_bad_amounts(gross: object, fee: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        capture_validate(gross, fee)
    assert (refused.value.code, list(refused.value.fields)) == ("invalid_amount", [field])


def test_capture_validate_accepts_a_fee_from_zero_to_gross() -> None:
    assert capture_validate(100, 0).net_micros == 100
    assert capture_validate(100, 100).net_micros == 0


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000 cr"),
        (1, "0.000001 cr"),
        (12_345_678, "12.345678 cr"),
        (-1_500_000, "-1.500000 cr"),
    ],
)
def test_credits_format_is_exact(micros: int, text: str) -> None:
    assert credits_format(micros) == text
