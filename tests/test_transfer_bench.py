"""``benchmarks.bench_transfer``'s ``--set FIELD=JSON``: training settings for the transfer runs, checked by name."""

from __future__ import annotations

import pytest

from benchmarks.bench_transfer import main, parse_settings
from core.training import PRESETS, ConfigError, with_settings


def test_settings_are_json_or_bare_words() -> None:
    changes = parse_settings(["lr_schedule=cosine", "weight_decay=0.05", "seed=2", "model.channels=[8, 24]",
                              'loss="ce_count"'])
    assert changes == {"lr_schedule": "cosine", "weight_decay": 0.05, "seed": 2, "model.channels": [8, 24],
                       "loss": "ce_count"}
    config = with_settings(PRESETS["quick"], changes)
    assert (config.lr_schedule, config.weight_decay, config.seed, config.model.channels) == ("cosine", 0.05, 2, (8, 24))


@pytest.mark.parametrize("item", ["weight_decay", "=0.1", ""])
def test_an_item_without_a_field_and_value_is_refused(item: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="expected FIELD=JSON"):
        parse_settings([item])
    with pytest.raises(SystemExit) as info:  # before any data is made
        main(["--set", item])
    assert info.value.code == 2 and "--set" in capsys.readouterr().err


def test_a_bad_value_is_named_by_its_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:  # before any data is made
        main(["--set", "lr_schedule=linear"])
    assert info.value.code == 2 and "--set lr_schedule: must be one of" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="^lr_schedule: must be one of"):
        with_settings(PRESETS["quick"], parse_settings(["lr_schedule=linear"]))
    with pytest.raises(ConfigError, match="^bogus: not a setting"):
        with_settings(PRESETS["quick"], parse_settings(["bogus=1"]))


@pytest.mark.parametrize("fraction", ["0", "1", "-0.1"])
def test_a_test_fraction_outside_0_1_is_refused(fraction: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:  # before any data is made
        main(["--images", "50:10000", "--test-fraction", fraction])
    assert info.value.code == 2 and "--test-fraction" in capsys.readouterr().err


def test_only_the_two_transfer_presets_are_offered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:  # the tutorial's 311 steps a sample would not fit 300 s; refused at once
        main(["--preset", "tutorial"])
    assert info.value.code == 2 and "--preset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a setting is checked against the preset chosen, before any data is made
        main(["--preset", "long", "--set", "augment_shift=9"])
    assert info.value.code == 2 and "--set augment_shift: must be at most 8" in capsys.readouterr().err
