"""Calibration report: simulated vs real N-MNIST recordings of MNIST test images 0..49.

Prints one row per pair (event counts and ratio, share of events per saccade simulated/real,
correlation of the ON and OFF count images of each saccade) and the medians against the
targets. Data: ``$NMNIST_SHARED_DATA`` (default ``../shared/data``), holding
``nmnist-sample/NMNIST/Test`` and ``mnist-sample``.

    .venv/bin/python benchmarks/calibrate.py [--data DIR] [--seed N] [--set field=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks._shared import REPO
from core.calibration import calibrate
from core.images import load_mnist_idx
from core.saccade import SimulationConfig


def _config(overrides: list[str]) -> SimulationConfig:
    values = SimulationConfig().to_dict()
    for item in overrides:
        name, _, text = item.partition("=")
        values[name] = json.loads(text)
    return SimulationConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a SimulationConfig field, e.g. --set contrast_threshold=0.3")
    args = parser.parse_args(argv)
    sample = args.data / "mnist-sample"
    images, labels = load_mnist_idx(sample / "t10k-images-first50-idx3-ubyte", sample / "t10k-labels-first50-idx1-ubyte")
    config = _config(args.set)
    start = time.perf_counter()
    report = calibrate(args.data / "nmnist-sample", images, labels, config, seed=args.seed)
    print(report.table())
    print(f"({len(report.pairs)} pairs simulated and compared in {time.perf_counter() - start:.1f} s)")
    return 0 if report.meets_targets() else 1


if __name__ == "__main__":
    raise SystemExit(main())
