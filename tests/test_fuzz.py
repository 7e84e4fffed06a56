"""Hostile links, broken files and faults (issue 10): no traceback, nothing rendered that the app did not write.

Two parts:

- A property-based suite (Hypothesis) opens every page through app.py, as a new
  visitor following a generated link: wrong types, huge and tiny numbers, NaN,
  1e400, 3,000 nested brackets, unknown names, markdown links and images, HTML,
  and the words of the pages themselves (so valid tabs, presets and slider values
  open the parts of a page the default view does not run), for every query
  parameter a page reads and for unknown ones. Each page must
  show no exception element, and no link, image or autolink from the link may be
  rendered (see ``apphelpers.injected_markup`` for the precise check).
  Derandomised (the same examples every run); ``FUZZ_EXAMPLES`` (default 200)
  examples a page; ``FUZZ_SHRINK=1`` shrinks a failure to a minimal example.
- One explicit test for each case the issue lists (items 1 to 6) that AppTest,
  a ``core`` call or the training command line can check.

Each case test failed on the code the issue was filed against (commit 7882e58),
except the guards that say so; a case found open again is marked
``xfail(strict=True)`` until its fix removes the marker.
The pages and the query parameters fuzzed are read from app.py and pages/*.py, so
a new page or parameter is covered without editing this file. Every AppTest run happens under a memory guard
(``apphelpers.memory_guard``), so a link that asks for gigabytes fails with a
MemoryError here instead of exhausting a shared machine.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from apphelpers import (
    MIB,
    PAGES,
    REPO,
    exceptions,
    fast_app_tests,
    markup_from_input,
    memory_guard,
    open_page,
    page_query_params,
    page_words,
    rss_bytes,
    texts,
    write_small_dataset,
)
from core.transforms import TRANSFORMS
from helpers import write_tiny_dataset

APP_TIMEOUT = 60  # seconds one AppTest run may take before it counts as a hang
GUARD_BYTES = 3 * 1024 * MIB  # how far this process may grow while a page handles one link
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
ROOT_TOKEN = "@ROOT@"  # replaced by the small data set's folder: a valid value among the hostile ones

settings.register_profile(
    "app-fuzz",
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,  # the same links every run, in CI and locally: a failure reproduces
    deadline=None,  # one example is a whole page run (0.1 to 1 s)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if os.environ.get("FUZZ_SHRINK") else ()),
    report_multiple_bugs=False,
    print_blob=False,
)
FUZZ = settings.get_profile("app-fuzz")


# ------------------------------------------------------------------ data and sessions


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The data home every session of this module uses: a small default set (short, sparse recordings)."""
    home = tmp_path_factory.mktemp("fuzz-home")
    write_small_dataset(home / "simulated")
    with pytest.MonkeyPatch.context() as mp, fast_app_tests():
        mp.setenv("NMNIST_DASHBOARD_HOME", str(home))
        mp.chdir(REPO)
        yield home


def visit(page: str, query: dict[str, Any] | None = None, headroom: int = GUARD_BYTES) -> AppTest:
    """One new visitor opening ``page`` through a link with ``query``; the run is done under the memory guard."""
    at = open_page(page, query, timeout=APP_TIMEOUT)
    with memory_guard(headroom):
        return at.run()


def problems(at: AppTest, query: Any) -> list[str]:
    """Exception elements, and markup from the link rendered by the page."""
    return exceptions(at) + markup_from_input(at, query)


def messages(at: AppTest) -> str:
    """Everything the page says in alerts and captions, as one text."""
    return "\n".join(texts(at, "error", "warning", "info", "caption", "toast"))


def own_home(tmp_path: Path) -> Path:
    """A data home for one test (its own runs and its own caches' keys)."""
    home = tmp_path / "home"
    write_small_dataset(home / "simulated")
    return home


# ------------------------------------------------------------------ generated links

STEP_PARAMS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in TRANSFORMS.items()}

MARKUP = [
    "[Session expired – sign in](https://evil.example/login) ![p](https://host/p.png)",
    "[Click](https://evil.example/x)",
    "![p](https://host.example/p.png)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<https://evil.example/auto>",
    "see https://evil.example/bare or www.evil.example",
    "[ref][1]\n\n[1]: https://evil.example/ref",
    "[x](//evil.example/protocol-relative)",
    ":red[**alarm**] :material/warning: $x^2$ **bold** _it_ `code`",
    "# head\n---\n> quote\n- item",
]
NUMBER_TEXT = [
    "-1", "0", "-0", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "Infinity", "1e-9", "5e-324", "1e308",
    "99999999999999999999999", "-99999999999999999999999", str(2**63), str(2**64), "0x10", "1_000", "٣", "３",
    "3.5", "+5", " 7 ", "07", "1e3", "2",
]
SHAPES = [
    "", " ", "true", "null", "[]", "{}", "[1,2]", '{"a":1}', "[" * 3000 + "]" * 3000, "[" * 3000,
    '{"a":' * 2000 + "1" + "}" * 2000, "x" * 5000, "\x00", "%00", "%", "../../etc/passwd", "/nonexistent",
    "/", "/proc/self", "~", "~nobody", "simulated", "Train", "Test", "any", "7", "\u202e\u0644\u0627", "😀",
    "a\nb", "a\rb\tc", ROOT_TOKEN, ROOT_TOKEN + "/NMNIST", ROOT_TOKEN + "/NMNIST/Train/0/00001.bin",
]
JSON_VALUES = [
    0, -1, 1, 2, 0.5, 1e-9, 5e-324, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 2**53 + 1, 2**63,
    2**64, 10**23, -(10**23), 3.7, 34, 35, 100, True, False, None, "abc", "", "1e400", [], [1], [1, 2], [2, 1],
    [1, 2, 3], [[1]], {"a": 1}, "[Click](https://evil.example/v)", "<img src=x onerror=alert(1)>",
]
RAW_PIPELINES = [
    '[{"name":[1]}]',
    '[{"name":"Denoise","filter_time":"abc"}]',
    '[{"name":"Denoise","filter_time":1e400}]',
    '[{"name":"Denoise","filter_time":10000},{"name":"ToFrame","time_window":1e-9}]',
    '[{"name":"ToFrame","n_time_bins":1e400}]',
    '[{"name":"ToFrame","time_window":-1e400}]',
    '[{"name":"[Click](https://evil.example/x)"}]',
    '[{"name":"Nope"}]',
    '[{"name":"Denoise","filter_time":10000,"[x](https://evil.example/k)":1}]',
    "[" * 3000 + "]" * 3000,
    "[" * 3000 + '{"name":"Denoise"}' + "]" * 3000,
    "not json",
    "{",
    '{"name":"Denoise"}',
    "[]",
    "null",
    "[null]",
    '[{"name":"ToFrame"}]',
    '[{"name":"ToFrame","time_window":1000,"n_time_bins":10}]',
]
# Every name a page reads or binds (found in pages/*.py, so a new one is fuzzed too), and those read when this was written.
PARAM_NAMES = tuple(dict.fromkeys((*page_query_params(), "data", "split", "digit", "sample", "pipeline", "seed")))
OTHER_NAMES = (  # names a page might read one day, Streamlit's own, junk
    "tab", "rate_bin", "window", "step", "page", "embed", "embed_options",
    "[x](https://evil.example/name)", "<img src=x onerror=alert(1)>", "",
)

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # no lone surrogates: not sendable in a URL
_number_text = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
_page_words = st.sampled_from(page_words())  # valid values too: a tab, slider value, preset or run named in the link
_hostile_text = st.one_of(st.sampled_from(MARKUP + NUMBER_TEXT + SHAPES), _page_words, _text, _number_text)
_json_scalar = st.one_of(st.sampled_from(JSON_VALUES), st.integers(-5, 64), st.floats(-10, 1000), _text)
_json_value = st.recursive(_json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=2),
                           max_leaves=6)


@st.composite
def _step(draw: st.DrawFn) -> Any:
    name = draw(st.one_of(
        st.sampled_from(sorted(TRANSFORMS)),
        st.sampled_from(["[Click](https://evil.example/x)", "<img src=x onerror=alert(1)>", "", "Nope", "denoise",
                         "ToFrame ", "x" * 500]),
        st.sampled_from([[1], None, 1, 1.5, {"a": 1}, True]),
    ))
    names = STEP_PARAMS.get(name, []) if isinstance(name, str) else []
    keys = st.sampled_from(names + ["bogus", "[x](https://evil.example/k)", "name"]) if names else st.sampled_from(
        ["bogus", "[x](https://evil.example/k)"])
    params = draw(st.dictionaries(keys, _json_value, max_size=3))
    params.pop("name", None)
    step = {"name": name, **params}
    return draw(st.sampled_from([step, step, step, [name], name]))  # now and then not an object at all


_pipeline = st.one_of(
    st.lists(_step(), max_size=4).map(lambda steps: json.dumps(steps)),  # NaN, Infinity: Python's JSON reads them
    st.sampled_from(RAW_PIPELINES),
    _hostile_text,
)


def _value(name: str) -> st.SearchStrategy[Any]:
    one = _pipeline if name == "pipeline" else st.one_of(_hostile_text, _page_words)  # half of them page words
    return st.one_of(one, one, one, st.lists(one, min_size=2, max_size=3))  # a repeated key: ?sample=1&sample=2


def queries() -> st.SearchStrategy[dict[str, Any]]:
    """A link's query: any subset of the parameters the pages read, plus unknown ones."""
    known = st.fixed_dictionaries({}, optional={name: _value(name) for name in PARAM_NAMES})
    unknown = st.dictionaries(st.one_of(st.sampled_from(OTHER_NAMES), _text), _hostile_text, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, unknown)


def concrete(query: dict[str, Any], root: Path) -> dict[str, Any]:
    """The query with :data:`ROOT_TOKEN` replaced by a real data folder."""
    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.replace(ROOT_TOKEN, str(root)) if isinstance(value, str) else value
    return {k: fill(v) for k, v in query.items()}


TIMES: dict[str, list[float]] = {}  # seconds per example, by page (printed at the end of the module)


@pytest.fixture(scope="module", autouse=True)
def _report_times() -> Iterator[None]:
    yield
    for page, times in TIMES.items():
        if times:
            ordered = sorted(times)
            print(f"\nfuzz {page}: {len(times)} examples, {sum(times):.1f} s, median {ordered[len(ordered) // 2]:.2f} s, "
                  f"worst {ordered[-1]:.2f} s")


FUZZ_PAGES = [pytest.param(page, id=Path(page).stem) for page in PAGES]


@pytest.mark.slow
@pytest.mark.parametrize("page", FUZZ_PAGES)
@FUZZ
@given(query=queries())
@example(query={"data": "[Session expired – sign in](https://evil.example/login) ![p](https://host/p.png)"})
@example(query={"pipeline": '[{"name":[1]}]'})
@example(query={"pipeline": '[{"name":"Denoise","filter_time":1e400}]', "seed": "99999999999999999999999"})
@example(query={"pipeline": "[" * 3000 + "]" * 3000, "sample": "1e400", "split": "<img src=x onerror=alert(1)>"})
def test_no_link_shows_a_traceback_or_renders_markup_from_the_link(page: str, query: dict[str, Any],
                                                                     fuzz_home: Path) -> None:
    query = concrete(query, fuzz_home / "simulated")
    start = time.perf_counter()
    at = visit(page, query)
    TIMES.setdefault(page, []).append(time.perf_counter() - start)
    assert not problems(at, query), problems(at, query)


# ------------------------------------------------------------------ 5. crafted input on /transforms

TRANSFORMS_PAGE = "pages/transforms.py"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        pytest.param({"pipeline": '[{"name":[1]}]'}, "name", id="name-not-a-string"),
        pytest.param({"pipeline": '[{"name":"Denoise","filter_time":"abc"}]'}, "filter_time", id="filter_time-abc"),
        pytest.param({"pipeline": '[{"name":"Denoise","filter_time":1e400}]'}, "filter_time", id="filter_time-1e400"),
        pytest.param({"pipeline": "[" * 3000 + "]" * 3000}, "pipeline", id="3000-nested-brackets"),
        pytest.param({"pipeline": '[{"name":"Denoise","filter_time":10000},{"name":"ToFrame","time_window":1e-9}]'},
                     "time_window", id="time_window-1e-9"),
        pytest.param({"pipeline": "not json"}, "pipeline", id="invalid-json-is-not-silent"),
        pytest.param({"pipeline": '[{"name":"Nope"}]'}, "Nope", id="unknown-step-is-named"),
    ],
)
def test_transforms_link_is_refused_with_a_message(query: dict[str, str], named: str, fuzz_home: Path) -> None:
    """A crafted pipeline: no traceback, and a message that names what is wrong (not the tutorial pipeline in silence)."""
    at = visit(TRANSFORMS_PAGE, query)
    assert not exceptions(at), exceptions(at)
    said = "\n".join(texts(at, "error", "warning"))
    assert named in said, f"no error or warning names {named!r}: {said!r}"


def test_transforms_huge_seed_is_no_traceback(fuzz_home: Path) -> None:
    at = visit(TRANSFORMS_PAGE, {"seed": "99999999999999999999999"})
    assert not exceptions(at), exceptions(at)


@pytest.mark.slow
def test_training_transform_box_with_3000_nested_brackets(fuzz_home: Path) -> None:
    """The Training page's transform field: a message next to it, not a RecursionError."""
    at = visit("pages/training.py")
    box = next(t for t in at.text_area if "transform" in (t.label + str(t.key)).lower())
    box.input("[" * 3000 + "]" * 3000)
    start = next(b for b in at.button if b.label == "Start training")
    with memory_guard(GUARD_BYTES):
        start.click().run()
    assert not exceptions(at), exceptions(at)
    assert any("transform" in e.lower() for e in texts(at, "error")), texts(at, "error", "warning")


# ------------------------------------------------------------------ 4. markdown injection

LOGIN_LINK = "[Session expired – sign in](https://evil.example/login) ![p](https://host/p.png)"


def test_home_data_link_renders_no_link_or_image(fuzz_home: Path) -> None:
    query = {"data": LOGIN_LINK}
    at = visit("pages/home.py", query)
    assert not problems(at, query), problems(at, query)


@pytest.mark.parametrize("page", [page for page in PAGES if page != "pages/home.py"])
def test_other_pages_render_no_link_from_data(page: str, fuzz_home: Path) -> None:
    """A guard (these pages passed before the fix too): the link's folder text renders no link anywhere."""
    query = {"data": LOGIN_LINK}
    at = visit(page, query)
    assert not problems(at, query), problems(at, query)


def test_transforms_step_name_renders_no_link(fuzz_home: Path) -> None:
    query = {"pipeline": '[{"name":"[Click](https://evil.example/x)"},{"name":"ToFrame","time_window":1000}]'}
    at = visit(TRANSFORMS_PAGE, query)
    assert not problems(at, query), problems(at, query)


# ------------------------------------------------------------------ 2. symlinks in a data folder


def _real_layout(root: Path) -> Path:
    """A small folder in the real N-MNIST layout (no simulation marker: the app lists and fingerprints its files)."""
    write_small_dataset(root)
    (root / "simulation.json").unlink()
    return root


@pytest.fixture(params=["dangling", "loop"])
def linked_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """(ROOT, the bad link): a data folder with a dangling symlink or a symlink loop among its Train recordings."""
    root = _real_layout(tmp_path / f"linked-{request.param}")
    folder = root / "NMNIST" / "Train" / "7"
    if request.param == "dangling":
        link = folder / "00000-dangling.bin"
        link.symlink_to(tmp_path / "nonexistent" / "d.bin")
    else:
        link = folder / "00000-loop.bin"
        link.symlink_to(link)  # resolving it loops: ELOOP
    return root, link


def test_data_functions_list_bad_links(linked_root: tuple[Path, Path]) -> None:
    """dataset_stats, fingerprint and validate: the link is a bad file like any other, never a crash."""
    from core.data import dataset_stats, fingerprint, validate

    root, link = linked_root
    fingerprint(root)
    stats = dataset_stats(root)
    assert stats["Train"]["valid_samples"] == 10
    assert str(link) in stats["Train"]["bad_files"]
    assert str(link) in {path for path, _ in validate(root)}


def test_training_data_set_skips_bad_links(linked_root: tuple[Path, Path]) -> None:
    """What training reads: every good recording, the link skipped (a guard: passed before the fix too)."""
    from core.data import NMNISTFolder

    root, _ = linked_root
    assert len(list(NMNISTFolder(root, "Train").iter_valid())) == 10


@pytest.mark.slow
def test_home_counts_recordings_beside_a_bad_link(linked_root: tuple[Path, Path], fuzz_home: Path) -> None:
    root, _ = linked_root
    at = visit("pages/home.py", {"data": str(root)})
    assert not exceptions(at), exceptions(at)
    assert at.session_state["sel_data"] == str(root), messages(at)
    metrics = [(m.label, m.value) for m in at.metric]
    assert "no recordings" not in [v for _, v in metrics] and ("samples", "10") in metrics, metrics


def test_events_page_on_a_bad_link(linked_root: tuple[Path, Path], fuzz_home: Path) -> None:
    """The link itself chosen as the sample: a message, no traceback."""
    from core.data import scan_split

    root, link = linked_root
    index = [path for path, _ in scan_split(root, "Train")].index(link)
    at = visit("pages/events.py", {"data": str(root), "split": "Train", "sample": str(index)})
    assert not exceptions(at), exceptions(at)


# ------------------------------------------------------------------ 3. damaged run folders

DAMAGE = {
    "results-iterations-lots": ("results.json", json.dumps({"status": "finished", "iterations": "lots"})),
    "results-a-list": ("results.json", "[1, 2]"),
    "results-accuracy-text": ("results.json", json.dumps({"status": "finished", "test_accuracy": "high"})),
    "config-a-list": ("config.json", "[1, 2]"),
    "metrics-loss-text": ("metrics.jsonl", json.dumps({"type": "iteration", "iteration": 1, "loss": "x", "accuracy": 0.1})),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged_home(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """(data home, run id): one good-looking run folder with one damaged file."""
    home = own_home(tmp_path)
    run = home / "runs" / "20250101-000000-quick"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"preset": "quick"}))
    (run / "results.json").write_text(json.dumps({"status": "finished", "iterations": 3, "seconds": 1.0,
                                                  "test_accuracy": 0.5}))
    name, text = DAMAGE[request.param]
    (run / name).write_text(text)
    return home, run.name


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.slow
def test_damaged_run_breaks_no_page(page: str, damaged_home: tuple[Path, str], fuzz_home: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home, _ = damaged_home
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = visit(page)
    assert not exceptions(at), exceptions(at)


def test_damaged_run_is_listed_as_damaged(damaged_home: tuple[Path, str]) -> None:
    from core.runs import RunStore

    home, run_id = damaged_home
    infos = {info.run_id: info for info in RunStore(home / "runs").list_runs()}
    assert "damaged" in infos[run_id].status.lower(), infos[run_id]


# ------------------------------------------------------------------ 1. memory: refused before computing


@pytest.mark.slow
def test_transforms_refuses_frames_over_the_budget(fuzz_home: Path) -> None:
    """``n_time_bins=100000`` (0.5 to 1 GB of frames): refused, naming the field, before anything is computed."""
    query = {"pipeline": '[{"name":"ToFrame","n_time_bins":100000}]'}
    gc.collect()
    before = rss_bytes()
    at = visit(TRANSFORMS_PAGE, query, headroom=2 * 1024 * MIB)
    gc.collect()
    grown = rss_bytes() - before
    assert not exceptions(at), exceptions(at)
    assert any("n_time_bins" in e for e in texts(at, "error", "warning")), messages(at)
    assert grown < 200 * MIB, f"resident memory grew by {grown / MIB:,.0f} MB: the frames were computed"


BIG_FILE_BYTES = 200 * MIB  # the file: 42 M events, 1.3 GB once decoded


@pytest.fixture()
def big_file_root(tmp_path: Path) -> tuple[Path, Path]:
    """(ROOT, file): a data folder with one 200 MB event file (sparse on disk: all-zero events)."""
    root = _real_layout(tmp_path / "big")
    big = root / "NMNIST" / "Train" / "5" / "00000-big.bin"
    with open(big, "wb") as fh:
        fh.truncate(BIG_FILE_BYTES)
    return root, big


def test_validate_reports_an_event_file_over_the_size_limit(big_file_root: tuple[Path, Path]) -> None:
    from core.data import validate

    root, big = big_file_root
    with memory_guard(2 * 1024 * MIB):
        found = dict(validate(root))
    assert str(big) in found, found


def test_events_page_refuses_an_event_file_over_the_size_limit(big_file_root: tuple[Path, Path],
                                                               fuzz_home: Path) -> None:
    from core.data import scan_split

    root, big = big_file_root
    index = [path for path, _ in scan_split(root, "Train")].index(big)
    at = visit("pages/events.py", {"data": str(root), "split": "Train", "sample": str(index)},
               headroom=2 * 1024 * MIB)
    assert not exceptions(at), exceptions(at)
    assert texts(at, "error", "warning"), "no message says the file is refused"


# ------------------------------------------------------------------ 6. faults: disk, settings, checkpoints


def test_start_training_with_an_unwritable_runs_folder(tmp_path: Path, fuzz_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs folder cannot be made (a read-only home; as root, a file stands in the way): a message."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated", {"Train": 1, "Test": 1})  # recordings long enough for the quick preset
    (home / "runs").write_text("not a folder")
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    at = visit("pages/training.py")
    start = next(b for b in at.button if b.label == "Start training")
    with memory_guard(GUARD_BYTES):
        start.click().run()
    assert not exceptions(at), exceptions(at)
    assert texts(at, "error", "warning"), "no message says why training cannot start"


def test_failed_first_start_generation_can_be_retried(tmp_path: Path, fuzz_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk on first start: a message; once space is freed, the generation runs again (button or new visit)."""
    import errno

    import pages.common as common
    from core.data import default_source

    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    calls = []

    def generation(progress=None, *args: Any, **kwargs: Any):  # stands in for core.data.ensure_default_dataset
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return common.DataSource(write_small_dataset(default_source().root), "simulated")

    monkeypatch.setattr(common, "ensure_default_dataset", generation)
    at = visit("pages/home.py")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not texts(at, "error"):
        time.sleep(0.3)
        at.run()
    assert not exceptions(at), exceptions(at)
    assert texts(at, "error"), "the failed generation is not reported"
    retry = [b for b in at.button if any(w in b.label.lower() for w in ("retry", "try again", "generate"))]
    if retry:
        retry[0].click().run()
    else:
        at = visit("pages/home.py")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not texts(at, "success"):
        time.sleep(0.3)
        at.run()
    assert not exceptions(at), exceptions(at)
    assert len(calls) >= 2 and texts(at, "success"), f"generation ran {len(calls)} time(s); {messages(at)!r}"


class _NotAllowed:
    """Stands for any object a checkpoint must not unpickle."""


class _RunsCode:
    """Unpickling this calls a function (print: harmless, were it ever run)."""

    def __reduce__(self):
        return (print, ("a checkpoint ran code",))


@pytest.mark.parametrize("kind", ["torch-save-of-an-object", "pickle-that-calls-a-function"])
def test_checkpoint_refusal_does_not_advise_running_its_code(kind: str, tmp_path: Path) -> None:
    """A checkpoint that needs arbitrary unpickling is refused, without torch's advice to set weights_only=False."""
    import re

    import torch

    from core.runs import CheckpointError, load_checkpoint

    path = tmp_path / "best.pt"
    if kind == "torch-save-of-an-object":
        torch.save({"format": "x", "payload": _NotAllowed()}, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps({"format": "x", "payload": _RunsCode()}, protocol=2))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert not re.search(r"weights_only\W*(=|set to)\W*False|two options|[Rr]e-?running", message), message


def _train_cli(*args: str, data: Path, runs: Path, timeout: float) -> tuple[int | None, str, float]:
    """``python -m core.train`` in a child (its memory capped at 4 GB): (exit code or None on timeout, output, seconds)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (4 * 1024 * MIB, resource.RLIM_INFINITY))

    command = [sys.executable, "-m", "core.train", "--data", str(data), "--runs", str(runs), "--no-estimate",
               "--quiet", "--max-iters", "2", "--eval-samples", "10", *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, time.perf_counter() - start
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Recordings of the real length (315 ms), two a digit in Train, one in Test."""
    return write_tiny_dataset(tmp_path_factory.mktemp("cli-data") / "data", {"Train": 2, "Test": 1})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(("--n-classes", "1"), "n_classes", id="n_classes-1-vs-10-classes-in-the-data"),
        pytest.param(("--channels", "4000", "4000"), "channels", id="channels-4000"),
        pytest.param(("--transform", '[{"name":"ToFrame","time_window":1}]'), "time_window", id="time_window-1us"),
        pytest.param(("--transform", '[{"name":"ToFrame","time_window":1e-9}]'), "time_window",
                     id="time_window-1e-9"),
    ],
)
def test_training_settings_are_refused_before_work(args: tuple[str, ...], named: str, cli_data: Path,
                                                   tmp_path: Path) -> None:
    """Checked against the data and the memory of a batch before any work: exit 2 naming the field, no run folder."""
    code, out, seconds = _train_cli(*args, data=cli_data, runs=tmp_path / "runs", timeout=60)
    assert code == 2, f"exit {code} after {seconds:.0f} s: {out[-1500:]}"
    assert named in out and "Traceback" not in out, out[-1500:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "work started: a run folder"


@pytest.mark.slow
def test_training_cli_with_an_unwritable_runs_folder(cli_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    code, out, seconds = _train_cli(data=cli_data, runs=runs, timeout=60)
    assert code not in (0, None) and "Traceback" not in out, f"exit {code} after {seconds:.0f} s: {out[-1500:]}"
    assert str(runs) in out, out[-1500:]


# ------------------------------------------------------------------ the markup check itself

EVIL = {"evil.example", "host"}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("[Session expired](https://evil.example/login)", True),
        ("![p](https://host/p.png)", True),
        ("[x](https:/evil.example/login)", True),  # a path-normalised URL still links
        ("<https://evil.example/a>", True),
        ("see https://evil.example/a", True),  # GitHub markdown links bare URLs
        ("[r][1]\n\n[1]: https://evil.example/r", True),
        ("\\[Session expired\\]\\(https://evil.example/login\\)", True),  # no [..](..) link, but a bare URL
        ("[x]\\(https\\://evil\\.example/login\\)", False),
        ("https\\://evil\\.example/a", False),  # no bare URL either
        ("`[x](https://evil.example/a)`", False),  # a code span shows it literally
        ("\\\\[x](https://evil.example/a)", True),  # an escaped backslash escapes nothing after it
        ("[docs](https://docs.streamlit.io)", False),  # a link the app wrote, not from the input
    ],
)
def test_markup_check(text: str, found: bool) -> None:
    from apphelpers import injected_markup

    assert bool(injected_markup(text, EVIL)) is found, injected_markup(text, EVIL)


def test_markup_check_html_only_where_html_is_rendered() -> None:
    from apphelpers import injected_markup

    tag = "<img src=x onerror=alert(1)>"
    assert injected_markup(f"a {tag}", set(), allow_html=True, input_text=tag)
    assert not injected_markup(f"a {tag}", set(), allow_html=False, input_text=tag)
    assert not injected_markup("a <b>bold</b>", set(), allow_html=True, input_text=tag)


def test_markup_check_knows_the_apps_own_scripts() -> None:
    """The Events page's own script (it preloads plotly) is not markup from a link holding "<script>"; the same
    script, or any other, taken from the link still is."""
    from apphelpers import injected_markup

    link = "<script>alert(1)</script>"
    own = '<script data-app="preload-plotly">\nload();\n</script>'
    assert not injected_markup(own, set(), allow_html=True, input_text=link)
    assert injected_markup(own + " " + link, set(), allow_html=True, input_text=link)
    assert injected_markup(own, set(), allow_html=True, input_text=own)
