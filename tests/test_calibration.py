"""Calibration: the simulator against real N-MNIST recordings of the same MNIST digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.calibration import (
    CORRELATION_TARGET,
    COUNT_RATIO_TARGET,
    calibrate,
    compare,
    reference_file,
    saccade_count_images,
)
from core.events import make_events, read_nmnist
from core.images import load_mnist_idx
from core.saccade import SimulationConfig


@pytest.fixture(scope="module")
def mnist_sample(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    sample = shared_data / "mnist-sample"
    return load_mnist_idx(sample / "t10k-images-first50-idx3-ubyte", sample / "t10k-labels-first50-idx1-ubyte")


@pytest.fixture(scope="module")
def report(real_nmnist_root: Path, mnist_sample):
    return calibrate(real_nmnist_root, *mnist_sample)


@pytest.mark.slow  # calibrates the simulator against 50 real recordings (the report fixture)
def test_simulated_recordings_meet_the_targets(report) -> None:
    """The issue's targets on the 50 real pairs: event count and per-saccade ON / OFF images."""
    low, high = COUNT_RATIO_TARGET
    assert len(report.pairs) == 50
    assert low <= report.median_count_ratio <= high, report.table()
    assert report.median_correlation >= CORRELATION_TARGET, report.table()
    # every saccade and polarity on its own, not only the pooled median
    assert min(report.median_corr_on + report.median_corr_off) >= CORRELATION_TARGET, report.table()
    assert report.meets_targets()


@pytest.mark.slow  # calibrates the simulator against 50 real recordings (the report fixture)
def test_events_are_shared_between_saccades_like_the_real_ones(report) -> None:
    sim, real = np.array(report.median_sim_fractions), np.array(report.median_real_fractions)
    np.testing.assert_allclose(sim, real, atol=0.06)
    assert abs(sim.sum() - 1) < 0.02


@pytest.mark.slow
def test_a_wrong_simulator_fails_the_targets(real_nmnist_root: Path, mnist_sample) -> None:
    """Bright ink instead of dark flips every edge's polarity: the check must notice."""
    images, labels = mnist_sample
    wrong = calibrate(real_nmnist_root, images[:20], labels[:20], SimulationConfig(dark_ink=False))
    assert not wrong.meets_targets()
    assert wrong.median_correlation < 0.5


@pytest.mark.slow  # calibrates the simulator against 50 real recordings (the report fixture)
def test_pairs_follow_nmnist_numbering(real_nmnist_root: Path, report) -> None:
    first = report.pairs[0]
    assert first.index == 0 and first.label == 7
    assert Path(first.real_file) == reference_file(real_nmnist_root, 0, 7) == real_nmnist_root / "NMNIST/Test/7/00001.bin"
    assert "median event-count ratio" in report.table() and len(report.table().splitlines()) > 50


def test_a_recording_compared_with_itself(real_nmnist_root: Path) -> None:
    real = read_nmnist(reference_file(real_nmnist_root, 3, 0))
    figures = compare(real, real, SimulationConfig())
    assert figures["sim_events"] == figures["real_events"] == len(real)
    assert figures["corr_on"] == figures["corr_off"] == (1.0, 1.0, 1.0)
    assert figures["sim_fractions"] == figures["real_fractions"]


def test_saccade_count_images_put_late_events_in_the_last_saccade() -> None:
    config = SimulationConfig()
    events = make_events([0, 1, 2, 3], [5, 5, 6, 7], [0, 104_999, 105_000, 336_000], [1, 0, 1, 0])
    images = saccade_count_images(events, config)
    assert images.shape == (3, 2, 34, 34) and images.sum() == 4
    assert images[0, 1, 5, 0] == 1 and images[0, 0, 5, 1] == 1
    assert images[1, 1, 6, 2] == 1 and images[2, 0, 7, 3] == 1


def test_no_matching_recordings_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no real recordings"):
        calibrate(tmp_path, np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))
