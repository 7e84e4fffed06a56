"""What the benchmark scripts share: where the real sample recordings are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_nmnist_root() -> Path:
    """``$NMNIST_SHARED_DATA/nmnist-sample`` (default ``../shared/data``); exits with a message if absent."""
    shared = Path(os.environ.get("NMNIST_SHARED_DATA", REPO.parent / "shared" / "data"))
    root = shared / "nmnist-sample"
    if not (root / "NMNIST").is_dir():
        raise SystemExit(f"no recordings under {root}; set NMNIST_SHARED_DATA")
    return root


def real_recordings() -> list[Path]:
    """Every real ``.bin`` recording of the sample, sorted."""
    return sorted(real_nmnist_root().glob("NMNIST/*/*/*.bin"))
