"""Driving the whole app in tests: AppTest sessions, the text a page renders as markdown, and memory.

What the fuzz, memory and regression tests of issue 10 share:

- :func:`open_page` starts a fresh AppTest session (a new visitor) on one page
  with the query parameters of a link, as ``tests/test_app.py`` does;
- :func:`rendered_markdown` lists every string Streamlit renders as markdown
  (bodies, labels, help, captions, headings, alerts) and :func:`injected_markup`
  finds, in one of them, a link, image or autolink that came from the input;
- :func:`memory_guard` caps this process's data segment so that a runaway
  allocation raises MemoryError rather than taking a shared machine down, and
  :func:`rss_bytes` reads resident memory from /proc (psutil is not installed).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import resource
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from streamlit.testing.v1 import AppTest

from core.data import SIMULATION_MARKER
from helpers import random_events, write_folder

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
MIB = 2**20


def app_pages() -> tuple[str, ...]:
    """The pages app.py's navigation lists (``pages/<name>.py``), in its order."""
    return tuple(re.findall(r"st\.Page\(\s*[\"'](pages/[^\"']+\.py)[\"']", APP.read_text(encoding="utf-8")))


PAGES = app_pages()

_PARAM_PATTERNS = (
    r"query_params\.get\(\s*[\"']([^\"']+)[\"']",  # st.query_params.get("seed")
    r"query_params\[\s*[\"']([^\"']+)[\"']\s*\]",  # st.query_params["pipeline"]
    r"^\s*[A-Z_]*PARAM\s*=\s*[\"']([^\"']+)[\"']",  # RUN_PARAM = "run"
    r"[\"']sel_\w+[\"']\s*:\s*\(\s*[\"']([^\"']+)[\"']",  # SELECTION: "sel_data": ("data", ...)
    r"key=[\"']([^\"']+)[\"'][^()]*?bind=[\"']query-params[\"']",  # widgets bound to the URL by their key
    r"bind=[\"']query-params[\"'][^()]*?key=[\"']([^\"']+)[\"']",
)


def page_words(max_length: int = 40) -> tuple[str, ...]:
    """The short literals in tuples and lists of app.py and pages/*.py: tab labels, option names, slider values.

    Valid values matter to a fuzzer too: a tab, preset or run named in the link
    opens a part of a page that the default view never runs.
    """
    import ast

    words: dict[str, None] = {}
    for path in [APP, *sorted((REPO / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):  # option lists: tab labels, slider values
                continue
            for item in node.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, (str, int, float)) and not isinstance(
                        item.value, bool):
                    text = str(item.value)
                    if 0 < len(text) <= max_length and "\n" not in text:
                        words[text] = None
    return tuple(words)


def page_query_params() -> tuple[str, ...]:
    """Every query parameter name the pages' source reads or binds (found by pattern, so new ones are fuzzed too)."""
    names: dict[str, None] = {}
    for path in sorted((REPO / "pages").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for pattern in _PARAM_PATTERNS:
            for name in re.findall(pattern, source, re.MULTILINE):
                names[name] = None
        for group in re.findall(r"^ALIASES\s*=\s*\(([^)]*)\)", source, re.MULTILINE):
            for name in re.findall(r"[\"']([^\"']+)[\"']", group):
                names[name] = None
    return tuple(names)


# ------------------------------------------------------------------ data


def write_small_dataset(root: Path, per_class: int = 1, n_events: int = 300, duration_us: int = 30_000,
                        seed: int = 0) -> Path:
    """A simulated-style N-MNIST folder of short, sparse recordings: every page renders it in a fraction of a second.

    ``per_class`` recordings of each digit in Train and Test, ``n_events`` events over ``duration_us``
    each, gathered on a place of their own per digit; ``simulation.json`` names the folder (a simulated
    set's cache key is made from that file).
    """
    import json

    root = Path(root)

    def recording(split: str, digit: int, k: int):
        return random_events(n_events, [seed, split == "Test", digit, k], duration_us=duration_us,
                             around=(8 + 2 * digit, 25 - 2 * digit), spread=4)

    write_folder(root, {"Train": per_class, "Test": per_class}, recording)
    (root / SIMULATION_MARKER).write_text(json.dumps({"made_by": "tests/apphelpers.py", "root": str(root)}))
    return root


# ------------------------------------------------------------------ AppTest sessions


@contextmanager
def fast_app_tests() -> Iterator[None]:
    """Share between AppTest sessions what a real server shares: the component scan and the compiled scripts.

    Every new AppTest reads the metadata of all ~500 installed distributions to
    find custom components (0.3 to 1.5 s on a 2-core machine), and every run
    parses, rewrites ("magic") and compiles app.py and the page again (0.1 to
    0.5 s); a server does both once. Across the hundreds of sessions of a fuzz
    run they would dominate, so for the duration the scan is memoised and one
    script cache is shared (private Streamlit modules: where they are missing,
    nothing is patched and AppTest is merely slower). Scripts edited meanwhile
    are not re-read.
    """
    patches: list[tuple[Any, str, Any]] = []
    try:
        from streamlit.components.v2 import manifest_scanner

        patches.append((manifest_scanner, "scan_component_manifests",
                        functools.cache(manifest_scanner.scan_component_manifests)))
    except ImportError:
        pass
    try:
        from streamlit.runtime.scriptrunner.script_cache import ScriptCache
        from streamlit.testing.v1 import app_test, local_script_runner

        shared = ScriptCache()
        for module in (app_test, local_script_runner):
            if getattr(module, "ScriptCache", None) is ScriptCache:
                patches.append((module, "ScriptCache", lambda: shared))
    except ImportError:
        pass
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in originals:
            setattr(module, name, value)


def open_page(page: str, query: Mapping[str, str | list[str]] | None = None, timeout: float = 30) -> AppTest:
    """A new session on ``page`` (a path under pages/) opened by a link with ``query``; not yet run."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(page)
    return at


def open_with_home(page: str, home: Path, monkeypatch: Any, timeout: float = 30, **params: str) -> AppTest:
    """A new session (a new browser opening a link) on ``page`` with ``params`` in its URL and ``home`` as the
    data home; run once, and checked to show no exception."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    return ok(open_page(page, params, timeout=timeout).run())


def ok(at: AppTest) -> AppTest:
    """``at`` after asserting that its last run showed no exception."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    """The page's metrics, label -> value as shown."""
    return {m.label: m.value for m in at.metric}


def param(at: AppTest, name: str) -> str | None:
    """A query parameter of the page's URL (AppTest hands out a value or a list of them); None if absent."""
    if name not in at.query_params:
        return None
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def plain(markdown: str) -> str:
    """What a person reads of markdown that escapes outside text (core.text.escape_markdown): no backslashes."""
    return re.sub(r"\\(.)", r"\1", markdown)


def page_text(at: AppTest) -> str:
    """Everything the page wrote in captions, alerts and markdown, as its markdown source."""
    return "\n".join(texts(at, "caption", "info", "warning", "error", "markdown", "success"))


def walk(node: Any) -> Iterator[Any]:
    """Every element of the page (``at._tree`` or a block) in the order a person sees them."""
    yield node
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for key in sorted(children):
            yield from walk(children[key])


def exceptions(at: AppTest) -> list[str]:
    """The exception elements of the last run: message and the last lines of the traceback."""
    return [f"{e.value}\n" + "\n".join(e.stack_trace[-6:]) for e in at.exception]


def texts(at: AppTest, *kinds: str) -> list[str]:
    """The values of the elements of the given kinds (``error``, ``warning``, ``info``, ``caption``, ...)."""
    found = []
    for kind in kinds:
        found.extend(str(e.value) for e in getattr(at, kind))
    return found


_SHAPE = re.compile(r"\((\d[\d,]*), (\d+), (\d+), (\d+)\)")


def frame_shapes(at: AppTest) -> list[tuple[int, int, int, int]]:
    """Every (T, C, H, W) shape the page shows, in metrics, captions, markdown or alerts."""
    shown = [str(m.value) for m in at.metric] + texts(at, "caption", "markdown", "info", "success", "code")
    return [tuple(int(g.replace(",", "")) for g in m.groups()) for text in shown for m in _SHAPE.finditer(text)]


# ------------------------------------------------------------------ what is rendered as markdown

# Proto fields that Streamlit's frontend renders as (GitHub-flavoured) markdown. ``label`` and ``help`` are
# markdown on every widget, metric, tab and expander; ``body`` on st.markdown / caption / headings / alerts /
# toasts; ``captions`` and radio ``options`` on radios; ``text`` on progress bars and spinners.
_MARKDOWN_FIELDS = frozenset({"body", "label", "help", "captions", "text"})
_MARKDOWN_OPTIONS = frozenset({"Radio"})  # widgets whose options are markdown too
_PLAIN = frozenset({"Text", "Code", "Json", "DataFrame", "Arrow", "ArrowTable", "Empty", "Exception"})
_LATEX = 3  # Markdown.Type.LATEX: KaTeX, not markdown


def _is_repeated(descriptor: Any) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)  # protobuf >= 5.28; `label` is deprecated there
    return bool(repeated) if repeated is not None else descriptor.label == descriptor.LABEL_REPEATED


def _strings(message: Any, fields: frozenset[str]) -> Iterator[tuple[str, str]]:
    """``(field, text)`` of every string field named in ``fields``, in ``message`` and its sub-messages."""
    for descriptor, value in message.ListFields():
        items = value if _is_repeated(descriptor) else [value]
        if descriptor.type == descriptor.TYPE_MESSAGE:
            for item in items:
                if hasattr(item, "ListFields"):
                    yield from _strings(item, fields)
        elif descriptor.type == descriptor.TYPE_STRING and descriptor.name in fields:
            for item in items:
                yield descriptor.name, item


def rendered_markdown(at: AppTest) -> list[tuple[str, str, bool]]:
    """``(where, text, allow_html)`` for every string of the last run that the browser renders as markdown."""
    tree = getattr(at, "_tree", None)
    roots = [tree] if tree is not None else [at.main, at.sidebar]
    found = []
    for root in roots:
        for node in walk(root):
            proto = getattr(node, "proto", None)
            if proto is None or not hasattr(proto, "DESCRIPTOR"):
                continue
            kind = proto.DESCRIPTOR.name
            if kind in _PLAIN or (kind == "Markdown" and getattr(proto, "element_type", 0) == _LATEX):
                continue
            if kind == "PlotlyChart":  # plotly renders a little HTML (<a href>, <b>) in titles and hover text
                spec = getattr(proto, "spec", "") or ""
                if "<" in spec:
                    found.append((f"{kind}.spec", spec, True))
                continue
            fields = _MARKDOWN_FIELDS | ({"options"} if kind in _MARKDOWN_OPTIONS else frozenset())
            allow_html = kind == "Html" or bool(getattr(proto, "allow_html", False))
            for name, text in _strings(proto, fields):
                found.append((f"{kind}.{name}", text, allow_html))
    return found


_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_HOLE = "\x00"  # stands for a character that markdown shows literally (escaped, or inside a code span)
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_INLINE_LINK = re.compile(r"(!?)\[([^\[\]\n]*)\]\(\s*<?([^\s)>]*)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+)", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:[A-Za-z][A-Za-z0-9+.-]{1,31}):[^\s<>]*|[^\s<>@]+@[^\s<>@]+)>")
_LITERAL_URL = re.compile(r"(?:https?://|www\.)[^\s<]+", re.IGNORECASE)
_HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")
_APP_SCRIPT = re.compile(r'<script data-app="[\w-]+">.*?</script>', re.DOTALL)
_HOST = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/\s?#)\]>\"'\\]+)|\bwww\.([^/\s?#)\]>\"'\\]+)", re.IGNORECASE)


def active_markdown(text: str) -> str:
    """``text`` with every character that markdown shows literally replaced by a hole.

    Backslash-escaped ASCII punctuation (CommonMark) and the contents of code
    spans cannot form links, images or HTML; what remains can.
    """
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCT:
            out.append(_HOLE * 2)
            i += 2
        else:
            out.append(text[i])
            i += 1
    active = "".join(out)
    return _CODE_SPAN.sub(lambda m: _HOLE * len(m.group(0)), active)


def input_hosts(values: Any) -> set[str]:
    """Host names of every URL in the input (strings, and strings inside lists / dicts), lower case."""
    hosts: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, str):
            for m in _HOST.finditer(value):
                host = (m.group(1) or m.group(2) or "").strip().lower()
                if host:
                    hosts.add(host)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                visit(k)
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    visit(values)
    return hosts


def injected_markup(text: str, hosts: set[str], allow_html: bool = False, input_text: str = "") -> list[str]:
    """Links, images and autolinks in markdown ``text`` that lead to a host from the input; HTML from the input.

    ``hosts`` are the host names found in the input (:func:`input_hosts`). A link
    whose syntax markdown would act on (not escaped, not in a code span) and
    whose target names one of them came from outside. With ``allow_html``, an
    HTML tag that also appears in ``input_text`` counts too.
    """
    if not hosts and not (allow_html and input_text):
        return []
    active = active_markdown(text)

    def from_input(target: str) -> bool:
        target = target.lower()
        return any(host in target for host in hosts)

    problems = []
    for m in _INLINE_LINK.finditer(active):
        if from_input(m.group(3)):
            problems.append(f"{'image' if m.group(1) else 'link'} {m.group(0)!r}")
    for m in _REFERENCE.finditer(active):
        if from_input(m.group(1)):
            problems.append(f"link reference {m.group(0)!r}")
    for m in _AUTOLINK.finditer(active):
        if from_input(m.group(1)):
            problems.append(f"autolink {m.group(0)!r}")
    for m in _LITERAL_URL.finditer(active):
        if from_input(m.group(0)):
            problems.append(f"bare URL (GitHub markdown links it) {m.group(0)!r}")
    if allow_html and input_text:
        # the app's own scripts (pages.events.preload_plotly) are not markup from the link, unless the link holds them
        own = _APP_SCRIPT.sub(lambda m: "" if m.group(0) not in input_text else m.group(0), active)
        for m in _HTML_TAG.finditer(own):
            if m.group(0) in input_text:
                problems.append(f"HTML {m.group(0)!r}")
    return problems


def markup_from_input(at: AppTest, inputs: Any) -> list[str]:
    """Every link, image, autolink or HTML tag from ``inputs`` that the last run renders, with where it is."""
    hosts = input_hosts(inputs)
    input_text = repr(inputs)
    problems = []
    for where, text, allow_html in rendered_markdown(at):
        if where == "PlotlyChart.spec":  # not markdown: only its HTML counts
            found = [p for p in injected_markup(text, set(), True, input_text) if p.startswith("HTML")]
        else:
            found = injected_markup(text, hosts, allow_html, input_text)
        for problem in dict.fromkeys(found):
            problems.append(f"{where}: {problem} in {text[:300]!r}")
    return problems


# ------------------------------------------------------------------ memory


def _status_kib(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (VmRSS in /proc/<pid>/status)."""
    return _status_kib("VmRSS", pid) * 1024


@contextmanager
def memory_guard(headroom_bytes: int) -> Iterator[None]:
    """Let this process's data segment grow by at most ``headroom_bytes`` (RLIMIT_DATA), then restore the limit.

    While the app has no memory bounds of its own, one hostile link can ask for
    tens of gigabytes; on a machine shared by several test runs that must fail
    as a MemoryError in this process, not as the kernel's OOM killer elsewhere.
    Child processes (ffmpeg) inherit the limit, which is far above their needs.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _status_kib("VmData") * 1024 + int(headroom_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


# ------------------------------------------------------------------ run folders, written directly (no training)


def _save_run(home: Path, config: Any, model: Any, status: str, accuracy: float | None, when: float) -> str:
    """A run folder holding ``model`` as its best checkpoint after 3 iterations, ended ``status``, dated ``when``."""
    from core.runs import RunStore, make_checkpoint

    run = RunStore(home / "runs").create_run(config.preset, when=when)
    run.write_config(config.to_dict())
    run.save_checkpoint("best", make_checkpoint(model, config.model, iteration=3, train_config=config))
    run.write_results({"status": status, "iterations": 3, "seconds": 1.0, "test_accuracy": accuracy})
    os.utime(run.path / "config.json", (when, when))
    return run.run_id


def write_run(home: Path, status: str, accuracy: float | None, when: float, votes_for: int,
              preset: str = "quick", **config_changes) -> str:
    """A run whose network always votes for ``votes_for``: that output neuron spikes every step, the others never."""
    from core.model import build_model
    from core.training import PRESETS

    config = dataclasses.replace(PRESETS[preset], max_iters=3, **config_changes)
    model = build_model(config.model)
    with torch.no_grad():
        model.net[7].weight.zero_()
        model.net[7].bias.fill_(-1.0)
        model.net[7].bias[votes_for] = 2.0
    return _save_run(home, config, model, status, accuracy, when)


def write_active_run(home: Path, when: float, preset: str = "tutorial", status: str = "finished",
                     accuracy: float | None = 0.9, seed: int = 3, scale: float = 4.0, **model_changes) -> str:
    """A run whose hidden layers spike: its seeded initial weights scaled up by ``scale`` (iteration 0 is the
    unscaled network of ``seed``, so the weights view has a change to show)."""
    from core.layers import initial_model
    from core.training import PRESETS

    config = dataclasses.replace(PRESETS[preset], max_iters=3, seed=seed)
    if model_changes:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, **model_changes))
    model = initial_model(config.model, seed)
    with torch.no_grad():
        for i in (0, 3, 7):
            model.net[i].weight.mul_(scale)
    return _save_run(home, config, model, status, accuracy, when)


def write_training_run(home: Path, status: str = "finished", reason: str = "all 3 iterations done", **changes: Any) -> str:
    """A ``quick`` run with a checkpoint, metrics and results in ``home/runs``, written directly (no training)."""
    from core.model import build_model
    from core.runs import RunStore, make_checkpoint
    from core.training import PRESETS

    config = dataclasses.replace(PRESETS["quick"], data_root=str(home / "simulated"), max_iters=3).with_overrides(**changes)
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    run = RunStore(home / "runs").create_run(config.preset)
    run.write_config(config.to_dict())
    for i in range(3):
        run.append_metrics({"type": "iteration", "iteration": i, "loss": 2.3 - 0.1 * i, "accuracy": 0.1 * i})
    confusion = [[1 if i == j else 0 for j in range(10)] for i in range(10)]
    run.append_metrics({"type": "eval", "iteration": 3, "accuracy": 0.3, "per_class_accuracy": [1.0] * 10,
                        "confusion": confusion, "samples": 10, "seconds": 0.1})
    run.save_checkpoint("final", make_checkpoint(model, config.model, iteration=3, train_config=config))
    run.write_data({"root": str(home / "simulated"), "kind": "simulated", "source": "tests", "train_samples": 30,
                    "test_samples": 20, "train_found": 30, "test_found": 20})
    run.write_results({"status": status, "reason": reason, "iterations": 3, "seconds": 1.0, "test_accuracy": 0.3})
    return run.run_id


def save_test_evaluation(home: Path, run_id: str, **changes: Any) -> None:
    """An evaluation of ``write_training_run``'s run on its own Test split (10 samples, 30 % right), kept with the run;
    ``changes`` set its other fields (``created``, ``options``, ``metrics``...)."""
    from core.evaluate import EvaluationResult, save_evaluation

    fields = dict(run_id=run_id, run_dir=str(home / "runs" / run_id), checkpoint="final", checkpoint_iteration=3,
                  data_root=str(home / "simulated"), data_kind="simulated", data_source="tests", split="Test",
                  transform="[]", trained_on=str(home / "simulated"), same_data=True, samples=10, excluded=0,
                  skipped_bad=0, accuracy=0.3, per_class_accuracy=(0.3,) * 10,
                  confusion=tuple(tuple(1 if i == j else 0 for j in range(10)) for i in range(10)), seconds=1.0,
                  created=1.0, options={})
    save_evaluation(EvaluationResult(**(fields | changes)))
