"""Memory by link (issue 10): 25 distinct hostile Transforms links may raise resident memory by 500 MB at most.

One AppTest process stands for one server: the pages' caches are per process,
shared by every session, as on a server. Each link is a new visitor asking for
frames far over any sensible budget (ToFrame with 100,000 bins, 2 us windows, a
sensor blown up by Downsample or CenterCrop, ...). Resident memory (VmRSS) is read
after each link; the test stops as soon as growth passes the budget, so a server
without bounds fails after one or two links instead of exhausting the machine,
and a memory guard turns any single allocation past 1.5 GB into a MemoryError.
Then a normal link must still be answered promptly. The figures are printed.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphelpers import MIB, REPO, exceptions, fast_app_tests, frame_shapes, memory_guard, open_page, rss_bytes, texts
from helpers import write_tiny_dataset

PAGE = "pages/transforms.py"
BUDGET_BYTES = 500 * MIB  # growth allowed over all 25 links
GUARD_BYTES = 1536 * MIB  # no single allocation past this while a link is handled
NORMAL_SECONDS = 30.0  # a normal link after the hostile ones must be answered within this
TUTORIAL = [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]


def hostile_links() -> list[list[dict]]:
    """25 distinct pipelines, each asking for 0.3 to 15 GB of frames from one 315 ms recording."""
    links: list[list[dict]] = []
    links += [[{"name": "ToFrame", "n_time_bins": 100_000 + i}] for i in range(8)]
    links += [[{"name": "ToFrame", "n_event_bins": 100_000 + i}] for i in range(4)]
    links += [[{"name": "ToVoxelGrid", "n_time_bins": 100_000 + i}] for i in range(4)]
    links += [[{"name": "ToFrame", "time_window": 2 + i}] for i in range(3)]
    links += [[{"name": "Downsample", "spatial_factor": 60 + i}, {"name": "ToFrame", "n_time_bins": 20}] for i in range(3)]
    links += [[{"name": "CenterCrop", "size": 3000 + i}, {"name": "ToFrame", "n_time_bins": 20}] for i in range(3)]
    assert len({json.dumps(link) for link in links}) == 25
    return links


@pytest.fixture()
def server_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data home with recordings of the real length (315 ms, 1,500 to 2,400 events), one a digit."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated", {"Train": 1, "Test": 1})
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    with fast_app_tests():
        yield home


def _visit(pipeline: list[dict]) -> tuple[object, float]:
    at = open_page(PAGE, {"pipeline": json.dumps(pipeline, separators=(",", ":")), "sample": "3"}, timeout=120)
    start = time.perf_counter()
    with memory_guard(GUARD_BYTES):
        at.run()
    return at, time.perf_counter() - start


def _resident() -> int:
    gc.collect()
    return rss_bytes()


@pytest.mark.slow
def test_25_hostile_transforms_links_raise_resident_memory_by_at_most_500_mb(server_home: Path) -> None:
    for _ in range(2):  # warm: kernels compiled, the sample and the tutorial pipeline's figures cached
        at, _ = _visit(TUTORIAL)
        assert not exceptions(at), exceptions(at)
    base = _resident()
    rows = []
    for i, link in enumerate(hostile_links()):
        at, seconds = _visit(link)
        growth = _resident() - base
        said = "exception" if exceptions(at) else ("refused" if texts(at, "error", "warning") else "computed")
        rows.append((i + 1, json.dumps(link), seconds, growth, said, exceptions(at)))
        if growth > BUDGET_BYTES:
            break
    at, normal_seconds = _visit(TUTORIAL)
    growth_after = _resident() - base

    print(f"\nbaseline resident memory {base / MIB:,.0f} MB; budget {BUDGET_BYTES / MIB:,.0f} MB over 25 links")
    for n, link, seconds, growth, said, _ in rows:
        print(f"link {n:2d}: {seconds:6.2f} s  growth {growth / MIB:+8,.0f} MB  {said:9s} {link}")
    print(f"normal link after them: {normal_seconds:.2f} s; growth {growth_after / MIB:+,.0f} MB")

    worst = max(growth for _, _, _, growth, _, _ in rows)
    assert len(rows) == 25 and worst <= BUDGET_BYTES, (
        f"resident memory grew by {worst / MIB:,.0f} MB after {len(rows)} links (budget {BUDGET_BYTES / MIB:.0f} MB)")
    assert not [r for r in rows if r[5]], [(r[1], r[5]) for r in rows if r[5]]
    assert not exceptions(at) and normal_seconds <= NORMAL_SECONDS, (normal_seconds, exceptions(at))
    assert any(shape[1:] == (2, 34, 34) for shape in frame_shapes(at)), "the normal link shows no frames"
