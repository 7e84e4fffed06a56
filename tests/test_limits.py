"""The byte budgets' owner (core.limits): figures people read, budgets from the environment."""

from __future__ import annotations

import pytest

from core.limits import LimitExceeded, Limits, check_bytes, format_bytes, limits


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 kB"), (3 * 2**30, "3.0 GB"), (5 * 2**40, "5.0 TB"),
     (2**50, "1.0 PB"), (1e30, "8.9e+14 PB"), (float("inf"), "an unbounded number of bytes")],
)
def test_byte_counts_read_as_people_say_them_even_when_absurd(n: float, shown: str) -> None:
    assert format_bytes(n) == shown


def test_a_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    field = next(iter(Limits.__dataclass_fields__))
    monkeypatch.setenv(f"NMNIST_LIMIT_{field.upper()}", "12345")
    assert getattr(limits(), field) == 12345
    for typo in ("not a number", "inf"):
        monkeypatch.setenv(f"NMNIST_LIMIT_{field.upper()}", typo)
        assert getattr(limits(), field) == getattr(Limits(), field)  # a typo keeps the default


def test_an_estimate_over_its_budget_or_not_a_number_is_refused_naming_the_field() -> None:
    check_bytes("n_time_bins", 100, 100, "this pipeline")
    for needed in (101, float("nan"), float("inf")):
        with pytest.raises(LimitExceeded) as refused:
            check_bytes("n_time_bins", needed, 100, "n_time_bins=100000 for this sample")
        assert refused.value.field == "n_time_bins" and "the limit is 100 bytes" in str(refused.value)
