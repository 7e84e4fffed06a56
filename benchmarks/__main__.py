"""Run every benchmark script in this folder, one after another: ``python -m benchmarks [NAME ...]``.

Each ``bench_<name>.py`` runs the reference library and ours on the same inputs in
one process and prints the figures and their ratio (absolute times drift on
shared machines; the ratios are what to compare).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or None
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names or s.stem in names]
    failed = []
    for script in scripts:
        print(f"\n=== {script.name}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"benchmarks.{script.stem}"], cwd=HERE.parent).returncode
        if rc:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
