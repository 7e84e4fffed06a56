"""Simulated vs real recordings of the same handwritten digits.

N-MNIST numbers its recordings in MNIST order: ``NMNIST/Test/<d>/000k.bin`` is a recording of
MNIST test image ``k - 1``. Simulating those MNIST images and comparing with the real recordings
tells how close :func:`core.saccade.simulate` comes to the real camera: how many events, when
(which saccade), and where (ON and OFF count images of each saccade).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data import recording_path
from core.events import SENSOR_SIZE, read_nmnist
from core.saccade import SimulationConfig, simulate

COUNT_RATIO_TARGET = (0.8, 1.25)  # median simulated/real event count
CORRELATION_TARGET = 0.85  # median correlation of per-saccade ON / OFF count images (issue 11)
RATE_BIN_US = 5_000  # time bins of the event-rate comparison


@dataclass(frozen=True)
class PairReport:
    """One MNIST image against its real recording."""

    index: int  # 0-based MNIST test index; the recording's id is index + 1
    label: int
    real_file: str
    sim_events: int
    real_events: int
    sim_fractions: tuple[float, ...]  # share of events in each saccade slot
    real_fractions: tuple[float, ...]
    corr_on: tuple[float, ...]  # per saccade: correlation of the ON count images
    corr_off: tuple[float, ...]  # per saccade: correlation of the OFF count images
    rate_corr: float  # correlation of the event rates over time (5 ms bins)

    @property
    def count_ratio(self) -> float:
        return self.sim_events / self.real_events

    @property
    def correlations(self) -> tuple[float, ...]:
        """All per-saccade correlations of this pair, ON then OFF."""
        return self.corr_on + self.corr_off


@dataclass(frozen=True)
class CalibrationReport:
    """Per-pair figures and their medians; ``meets_targets`` checks the issue's targets."""

    pairs: tuple[PairReport, ...]
    config: SimulationConfig = field(default_factory=SimulationConfig)

    @property
    def median_count_ratio(self) -> float:
        return float(np.median([p.count_ratio for p in self.pairs]))

    @property
    def median_correlation(self) -> float:
        """Median over every pair, saccade and polarity of the count-image correlations."""
        return float(np.median([c for p in self.pairs for c in p.correlations]))

    @property
    def median_corr_on(self) -> tuple[float, ...]:
        """Median ON-image correlation of each saccade."""
        return tuple(float(v) for v in np.median([p.corr_on for p in self.pairs], axis=0))

    @property
    def median_corr_off(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median([p.corr_off for p in self.pairs], axis=0))

    @property
    def median_rate_corr(self) -> float:
        """Median correlation of simulated and real event rates over time: the saccades' timing."""
        return float(np.median([p.rate_corr for p in self.pairs]))

    @property
    def median_sim_fractions(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median([p.sim_fractions for p in self.pairs], axis=0))

    @property
    def median_real_fractions(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.median([p.real_fractions for p in self.pairs], axis=0))

    def meets_targets(self) -> bool:
        low, high = COUNT_RATIO_TARGET
        return low <= self.median_count_ratio <= high and self.median_correlation >= CORRELATION_TARGET

    def table(self) -> str:
        """A plain-text table: one row per pair, then the medians."""
        n = len(self.config.path)
        head = (f"{'id':>5} {'digit':>5} {'sim':>6} {'real':>6} {'ratio':>6}  "
                + " ".join(f"{'frac' + str(s + 1) + ' s/r':>11}" for s in range(n)) + "  "
                + " ".join(f"{'on' + str(s + 1):>5}" for s in range(n)) + " "
                + " ".join(f"{'off' + str(s + 1):>5}" for s in range(n)) + f" {'rate':>5}")
        rows = [head]
        for p in self.pairs:
            rows.append(
                f"{p.index + 1:>5} {p.label:>5} {p.sim_events:>6} {p.real_events:>6} {p.count_ratio:>6.2f}  "
                + " ".join(f"{s:>5.2f}/{r:<5.2f}" for s, r in zip(p.sim_fractions, p.real_fractions)) + "  "
                + " ".join(f"{c:>5.2f}" for c in p.corr_on) + " "
                + " ".join(f"{c:>5.2f}" for c in p.corr_off) + f" {p.rate_corr:>5.2f}"
            )
        low, high = COUNT_RATIO_TARGET
        rows += [
            "",
            f"pairs: {len(self.pairs)}",
            f"median event-count ratio sim/real: {self.median_count_ratio:.3f}  (target {low}..{high})",
            "median saccade fractions sim: " + " ".join(f"{v:.3f}" for v in self.median_sim_fractions)
            + "   real: " + " ".join(f"{v:.3f}" for v in self.median_real_fractions),
            "median ON  image correlation per saccade: " + " ".join(f"{v:.3f}" for v in self.median_corr_on),
            "median OFF image correlation per saccade: " + " ".join(f"{v:.3f}" for v in self.median_corr_off),
            f"median per-saccade image correlation: {self.median_correlation:.3f}  (target >= {CORRELATION_TARGET})",
            f"median event-rate correlation over time (5 ms bins): {self.median_rate_corr:.3f}",
            f"targets met: {self.meets_targets()}",
        ]
        return "\n".join(rows)


def saccade_count_images(events: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """Accumulated event counts, shape (saccades, 2 polarities [OFF, ON], height, width).

    Events after the last slot count to the last saccade (real recordings can end late).
    """
    n = len(config.path)
    width, height = SENSOR_SIZE[0], SENSOR_SIZE[1]
    slot = np.clip(events["t"] // config.saccade_duration_us, 0, n - 1)
    flat = ((slot * 2 + events["p"]) * height + events["y"]) * width + events["x"]
    return np.bincount(flat, minlength=n * 2 * height * width).reshape(n, 2, height, width)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64)
    b = b.ravel().astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _rate(events: np.ndarray, config: SimulationConfig, bin_us: int = RATE_BIN_US) -> np.ndarray:
    """Events per time bin, over the recording plus a margin for late ends."""
    n_bins = (config.duration_us + 30_000) // bin_us + 1
    return np.bincount(np.minimum(events["t"] // bin_us, n_bins - 1), minlength=n_bins)


def compare(simulated: np.ndarray, real: np.ndarray, config: SimulationConfig) -> dict:
    """The figures of one pair: counts, saccade fractions and per-saccade ON / OFF correlations."""
    sim_images = saccade_count_images(simulated, config)
    real_images = saccade_count_images(real, config)
    n = len(config.path)
    sim_total = max(len(simulated), 1)
    real_total = max(len(real), 1)
    return {
        "sim_events": len(simulated),
        "real_events": len(real),
        "sim_fractions": tuple(float(sim_images[s].sum() / sim_total) for s in range(n)),
        "real_fractions": tuple(float(real_images[s].sum() / real_total) for s in range(n)),
        "corr_on": tuple(_correlation(sim_images[s, 1], real_images[s, 1]) for s in range(n)),
        "corr_off": tuple(_correlation(sim_images[s, 0], real_images[s, 0]) for s in range(n)),
        "rate_corr": _correlation(_rate(simulated, config), _rate(real, config)),
    }


def reference_file(nmnist_root: str | os.PathLike[str], index: int, label: int) -> Path:
    """The real recording of MNIST test image ``index`` (0-based) with digit ``label``."""
    return recording_path(nmnist_root, "Test", label, index + 1)


def calibrate(
    nmnist_root: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    config: SimulationConfig | None = None,
    seed: int = 0,
) -> CalibrationReport:
    """Simulate MNIST test images 0..N-1 and compare each with its real N-MNIST Test recording.

    Images without a real recording in ``nmnist_root`` are skipped; none at all is an error.
    """
    config = config or SimulationConfig()
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or labels.shape != (len(images),):
        raise ValueError(f"images (N, 28, 28) and labels (N,) must match, got {images.shape} and {labels.shape}")
    pairs = []
    for index, (image, label) in enumerate(zip(images, labels)):
        path = reference_file(nmnist_root, index, int(label))
        if not path.is_file():
            continue
        real = read_nmnist(path)
        simulated = simulate(image, config, seed=seed + index)
        pairs.append(PairReport(index=index, label=int(label), real_file=str(path), **compare(simulated, real, config)))
    if not pairs:
        raise FileNotFoundError(
            f"{nmnist_root}: no real recordings NMNIST/Test/<digit>/<id>.bin matching the {len(images)} images"
        )
    return CalibrationReport(pairs=tuple(pairs), config=config)
