"""Mistakes: where a run's network goes wrong, recording by recording.

Choose a run and one of its evaluations (or run a new one in the background); a click on a
cell of the confusion matrix lists the recordings in it as small event images, the most
confident answer first, each with links that open it in the Spike counter, the Events page or the Layer view.
Below, the most confidently wrong answers of the whole evaluation.

Every choice is in the URL: ``run`` (a run id), ``eval`` (the name of one of its saved
evaluations), ``cell`` (``<true>-<predicted>``, e.g. ``3-5``), ``cell_page``, and the new
evaluation's ``eval_split``, ``eval_samples`` and ``eval_fair``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import figures, inference
from core.data import SPLITS, DataSource, check_folder, default_source
from core.evaluate import (
    EvaluationError,
    EvaluationResult,
    SamplePrediction,
    confusion_cell,
    evaluate,
    load_predictions,
    most_confidently_wrong,
    predictions_file,
    saved_evaluations,
)
from core.events import NMNISTFormatError
from core.inference import RunChoice
from core.jobs import ProgressJob
from core.runs import RunStore, default_runs_root
from core.text import escape_markdown
from pages.common import DEFAULT_DATA, dataset, init_selection, load_sample, require_data, write_query_params
from pages.runs import RUN_PARAM, damaged_runs_ui, evaluation_jobs, run_choices, run_store

EVAL_PARAM, CELL_PARAM, PAGE_PARAM = "eval", "cell", "cell_page"
CELL_PATTERN = re.compile(r"^(\d{1,3})-(\d{1,3})$")  # "<true>-<predicted>"
PER_PAGE = 24  # recordings of a cell shown at once
WRONG_SHOWN = 12  # the most confidently wrong answers listed
THUMB_SCALE = 5  # each sensor pixel as 5 x 5 image pixels (the browser scales the 172 px image to its column)
SACCADE_US = figures.SACCADE_US  # the image shows the first saccade: over all three, the edges cancel out
ERROR_ICON = "⚠️"
IMAGES_NOTE = ("Each image is the recording's first saccade (ON red, OFF blue); Spikes opens it in the Spike counter "
               "with this run, Events on the Events page, Layers in the Layer view.")

init_selection()
source = require_data()


# ------------------------------------------------------------------ server-wide resources and caches


@st.cache_data(show_spinner="Reading the evaluation's predictions…", max_entries=8)
def cached_predictions(path: str, stamp: float, _result: EvaluationResult) -> tuple[SamplePrediction, ...] | None:
    """The per-sample predictions of an evaluation (``stamp``, the file's modification time, reads a newer one)."""
    return load_predictions(_result)


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(source_key: str, path: str) -> np.ndarray:
    """A recording's first saccade as an RGB image, ON minus OFF events: red ON, blue OFF, white none."""
    events = load_sample(source_key, path)
    if len(events):
        events = events[events["t"] < int(events["t"].min()) + SACCADE_US]
    counts = figures.accumulate(events)
    diff = (counts[1] - counts[0]).astype(np.float64)
    nonzero = np.abs(diff[diff != 0])
    scale = float(np.percentile(nonzero, 99)) if nonzero.size else 1.0
    amount = np.clip(np.abs(diff) / max(scale, 1.0), 0.0, 1.0)[..., None]
    colour = np.where(diff[..., None] >= 0, _rgb(figures.ON_COLOR), _rgb(figures.OFF_COLOR))
    image = (255.0 * (1 - amount) + colour * amount).round().astype(np.uint8)
    image = image.repeat(THUMB_SCALE, axis=0).repeat(THUMB_SCALE, axis=1)
    return np.pad(image, ((1, 1), (1, 1), (0, 0)), constant_values=200)  # a grey frame: the sensor's edge


@st.cache_data(show_spinner=False, max_entries=8)
def file_places(source_key: str, _data: DataSource, split: str) -> dict[str, int]:
    """Each recording's place in its split, by its path relative to the data root (as an evaluation names it)."""
    ds = dataset(_data, split)
    return {} if ds is None else {Path(f).relative_to(_data.root).as_posix(): i for i, f in enumerate(ds.files)}


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)


# ------------------------------------------------------------------ state: from the URL on a session's first run


def _url_cell(raw: str | None) -> tuple[int, int] | None:
    match = CELL_PATTERN.match(raw or "")
    return (int(match[1]), int(match[2])) if match else None


def _url_page(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() and len(raw) < 6 else 0


if "mx_choice" not in st.session_state:  # a session's first view: the link decides
    st.session_state["mx_choice"] = st.query_params.get(RUN_PARAM)
    st.session_state["mx_eval_choice"] = st.query_params.get(EVAL_PARAM)
    st.session_state["mx_cell"] = _url_cell(st.query_params.get(CELL_PARAM))
    st.session_state["mx_page"] = _url_page(st.query_params.get(PAGE_PARAM))
    st.session_state["mx_notice"] = None
    if st.query_params.get(CELL_PARAM) and st.session_state["mx_cell"] is None:
        st.session_state["mx_notice"] = "The link's confusion cell is not <true digit>-<predicted digit>; none is chosen."


def _set_param(name: str, value: str | None) -> None:
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def choose_cell(cell: tuple[int, int] | None) -> None:
    st.session_state["mx_cell"] = cell
    st.session_state["mx_page"] = 0


# ------------------------------------------------------------------ the run


def run_ui(store: RunStore) -> RunChoice | None:
    """The run whose mistakes are shown: the link's, else the picker's, else the best finished one."""
    runs = run_choices(str(store.root))
    by_id = {r.run_id: r for r in runs}
    usable = [r.run_id for r in runs if r.usable]
    if not usable:
        st.info("No trained run yet: train one on the **Training** page, then look at its mistakes here.")
        return None
    chosen = st.session_state["mx_choice"]
    if chosen is not None and chosen not in usable:
        gone = by_id.get(chosen)
        name = chosen if len(chosen) <= 80 else chosen[:80] + "…"
        reason = (gone.problem or "it has no checkpoint yet") if gone is not None else "there is no run of that name here"
        st.warning(escape_markdown(f"Run {name} cannot be shown: {reason}. Showing the default run instead.", limit=600))
        st.session_state["mx_choice"] = chosen = None
    default, why = inference.default_run(runs)
    shown = chosen or (default.run_id if default is not None else usable[0])
    st.session_state["mx_run"] = shown

    def picked() -> None:
        st.session_state["mx_choice"] = st.session_state["mx_run"]
        st.session_state["mx_eval_choice"] = None
        choose_cell(None)

    st.selectbox("Run", usable, key="mx_run", on_change=picked, format_func=lambda r: by_id[r].label())
    if chosen is None and default is not None and shown == default.run_id:
        st.caption(escape_markdown(f"By default: run {shown}, {why}.", limit=400))
    damaged_runs_ui(runs)
    return by_id[shown]


# ------------------------------------------------------------------ the evaluation: a saved one, or a new one


def describe(result: EvaluationResult) -> str:
    """One line for the evaluation picker (plain text)."""
    data = "the default simulated set" if _is_default(result.data_root) else Path(result.data_root).name
    return f"{result.accuracy:.1%} on {result.samples:,} {result.split} recordings of {data}"


def _is_default(root: str) -> bool:
    try:
        return Path(root).resolve() == default_source().root.resolve()
    except OSError:
        return False


def evaluation_ui(run: RunChoice, run_dir: Path, picker: Any) -> EvaluationResult | None:
    """The evaluation shown (the link's, else the newest; its picker in ``picker``), and the form that starts one."""
    saved = saved_evaluations(run_dir)
    by_name = {r.name: r for r in saved}
    jobs = evaluation_jobs()
    job = jobs.get("job") if jobs.get("run") == run.run_id else None
    finished = job is not None and not job.running and isinstance(job.result, EvaluationResult)
    if finished and not st.session_state.get(f"mx_seen_{id(job)}"):  # a new evaluation just ended: show it
        st.session_state[f"mx_seen_{id(job)}"] = True
        st.session_state["mx_eval_choice"] = job.result.name
        choose_cell(None)
    chosen = st.session_state["mx_eval_choice"]
    if chosen is not None and chosen not in by_name:
        if saved:  # a link to an evaluation that is gone (or another run's)
            st.warning(escape_markdown(f"Run {run.run_id} has no evaluation {chosen[:80]}; showing its newest.",
                                       limit=400))
        st.session_state["mx_eval_choice"] = chosen = None
    with st.expander("New evaluation" if saved else "Evaluate this run", expanded=not saved or job is not None):
        new_evaluation_ui(run, run_dir, job)
    if not saved:
        st.info("This run has no saved evaluation yet: evaluate it above (its results are kept with the run).")
        return None
    shown = chosen or saved[0].name
    st.session_state["mx_eval"] = shown

    def picked() -> None:
        st.session_state["mx_eval_choice"] = st.session_state["mx_eval"]
        choose_cell(None)

    picker.selectbox("Evaluation", list(by_name), key="mx_eval", on_change=picked,
                     format_func=lambda n: describe(by_name[n]),
                     help="the evaluations kept with the run, newest first (the Training page makes them too)")
    return by_name[shown]


def new_evaluation_ui(run: RunChoice, run_dir: Path, job: ProgressJob | None) -> None:
    """Split, samples and fairness of a new evaluation on the data chosen on Home; its progress while it runs."""
    st.caption(escape_markdown(f"Data: {source.label} (change it on Home)", limit=400))
    cols = st.columns(2, vertical_alignment="bottom")
    cols[0].radio("split", SPLITS, index=SPLITS.index("Test"), key="eval_split", horizontal=True, bind="query-params")
    cols[1].number_input("samples (0 = all)", min_value=0, max_value=10**7, value=1000, step=100, key="eval_samples",
                         bind="query-params")
    st.checkbox("leave out recordings of images its data used", value=True, key="eval_fair", bind="query-params",
                help="N-MNIST Test recording k is MNIST test image k-1, and the default set is simulated from "
                     "MNIST test images: a fair test leaves those out")  # its own row: in a third column it was cut off
    running = evaluation_jobs().get("job")
    busy = running is not None and running.running
    st.button("Evaluate", key="mx_evaluate", on_click=start_evaluation, args=(run.run_id, str(run_dir)), disabled=busy,
              type="primary")
    message = st.session_state.get("mx_eval_message")
    if message:
        st.warning(escape_markdown(message, limit=400))
    if busy and job is None:
        st.caption(escape_markdown(f"An evaluation of run {evaluation_jobs().get('run')} is running; one at a time."))
    if job is not None:
        evaluation_progress(job)


def start_evaluation(run_id: str, run_dir: str) -> None:
    jobs = evaluation_jobs()
    running = jobs.get("job")
    if running is not None and running.running:
        st.session_state["mx_eval_message"] = f"An evaluation is running (run {jobs['run']}): wait for it to end."
        return
    data = source
    split = st.session_state.get("eval_split", "Test")
    samples = int(st.session_state.get("eval_samples", 1000) or 0) or None
    fair = bool(st.session_state.get("eval_fair", True))

    def work(progress: Any) -> EvaluationResult:
        return evaluate(run_dir, data, split, exclude_trained_images=fair, max_samples=samples, progress=progress)

    jobs.update(run=run_id, job=ProgressJob(work, name=f"mistakes-evaluate-{run_id}").start(),
                what=f"{data.label} {split}")
    st.session_state["mx_eval_message"] = None


def evaluation_progress(job: ProgressJob) -> None:
    @st.fragment(run_every=1.0 if job.running else None)
    def draw() -> None:
        state = job.snapshot()
        if state.error is not None:
            problem = str(job.exception) if isinstance(job.exception, (EvaluationError, OSError)) else state.error
            st.error(f"The evaluation failed: {escape_markdown(problem, limit=600)}", icon=ERROR_ICON)
            return
        if state.running:
            st.progress(state.fraction, text=f"evaluating: {state.done:,} of {state.total:,} recordings")
        elif job.result is not None and not st.session_state.get(f"mx_seen_{id(job)}"):
            st.rerun()  # the whole page: it shows the new evaluation

    draw()


# ------------------------------------------------------------------ the confusion matrix


def confusion_figure(matrix: np.ndarray, cell: tuple[int, int] | None) -> go.Figure:
    """The confusion matrix with a clickable (invisible) point on every cell, the chosen cell outlined."""
    n = len(matrix)
    labels = list(inference.output_labels(n))
    fig = figures.confusion_matrix_figure(matrix, labels)
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector=dict(type="heatmap"))
    true, predicted = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    fig.add_trace(go.Scatter(
        x=[labels[p] for p in predicted.ravel()], y=[labels[t] for t in true.ravel()], mode="markers",
        marker=dict(symbol="square", size=max(12, 260 // n), opacity=0), customdata=matrix.ravel(), showlegend=False,
        hovertemplate="true %{y}, predicted %{x}: %{customdata} recordings<br>click to list them<extra></extra>",
    ))
    if cell is not None and max(cell) < n:
        t, p = cell
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5, line=dict(color="#ff7f0e", width=3))
    fig.update_layout(height=440, clickmode="event+select", dragmode=False)
    return fig


def on_chart_select(key: str, n: int) -> None:
    """A click on a cell chooses it (a click on nothing, or a double click, keeps the cell chosen)."""
    points = (st.session_state.get(key) or {}).get("selection", {}).get("points", [])
    for point in points:
        try:
            cell = (int(point["y"]), int(point["x"]))
        except (KeyError, TypeError, ValueError):
            continue
        if max(cell) < n:
            choose_cell(cell)
            return


def cell_options(matrix: np.ndarray) -> list[tuple[int, int]]:
    """Every cell: the mistakes first (the largest first), then the right answers, then the empty cells."""
    n = len(matrix)
    cells = [(t, p) for t in range(n) for p in range(n)]
    return sorted(cells, key=lambda c: (matrix[c] == 0, c[0] == c[1], -matrix[c], c))


def matrix_ui(result: EvaluationResult) -> tuple[int, int] | None:
    """The matrix (a click chooses a cell) and a picker of the same cells; returns the chosen cell."""
    matrix = np.array(result.confusion, dtype=np.int64)
    n = len(matrix)
    cell = st.session_state["mx_cell"]
    if cell is not None and max(cell) >= n:
        st.warning(f"The network has {n} classes: there is no cell {cell[0]}-{cell[1]}.")
        choose_cell(None)
        cell = None
    key = f"mx_chart_{result.name}"
    st.plotly_chart(confusion_figure(matrix, cell), width="stretch", key=key, on_select=lambda: on_chart_select(key, n),
                    selection_mode="points", config={"displayModeBar": False})
    cell = st.session_state["mx_cell"]
    options = [None, *cell_options(matrix)]
    st.session_state["mx_cell_pick"] = cell

    def picked() -> None:
        choose_cell(st.session_state["mx_cell_pick"])

    st.selectbox("Confusion cell (or click one)", options, key="mx_cell_pick", on_change=picked,
                 format_func=lambda c: "–" if c is None else f"true {c[0]}, predicted {c[1]}: {matrix[c]:,} recordings")
    return cell


# ------------------------------------------------------------------ recordings as small images with links


def data_of(result: EvaluationResult) -> tuple[DataSource | None, str | None]:
    """The data source an evaluation ran on, and its ``data`` link parameter; None and why where it is unusable."""
    if _is_default(result.data_root):
        return default_source(), DEFAULT_DATA
    check = check_folder(result.data_root)
    return check.source, check.problem if check.source is None else result.data_root


def sample_links(run_id: str, data_param: str, split: str, label: int, position: int) -> str:
    """Markdown links (fixed words, URL-encoded parameters) to one recording in the Spike counter, Events, Layer view."""
    query = urlencode(dict(data=data_param, split=split, digit=str(label), sample=str(position)))
    run = urlencode(dict(run=run_id))
    return f"[Spikes](spike_counter?{query}&{run}) · [Events](events?{query}) · [Layers](layers?{query}&{run})"


def samples_ui(result: EvaluationResult, samples: list[SamplePrediction], columns: int, caption: Any) -> None:
    """Recordings as a grid of small event images, each with what it is and links that open it."""
    data, param_or_problem = data_of(result)
    if data is None:
        st.warning(f"The data this evaluation ran on cannot be read now: {escape_markdown(param_or_problem, limit=400)}")
    ds = dataset(data, result.split) if data is not None else None
    where = file_places(data.key, data, result.split) if ds is not None else {}
    for start in range(0, len(samples), columns):
        for column, p in zip(st.columns(columns), samples[start : start + columns]):
            with column:
                index = where.get(p.file)
                if index is None:
                    st.caption(caption(p) + escape_markdown(f": {p.file} is no longer in the data folder", limit=200))
                    continue
                try:
                    st.image(thumbnail(data.key, str(ds.files[index])), caption=caption(p), width="stretch")
                except NMNISTFormatError as exc:
                    st.caption(caption(p) + f": cannot be read ({escape_markdown(exc.problem, limit=200)})")
                position = int(np.searchsorted(ds.indices_of(ds.targets[index]), index))
                st.caption(sample_links(result.run_id, param_or_problem, result.split, int(ds.targets[index]), position))


def cell_ui(result: EvaluationResult, predictions: tuple[SamplePrediction, ...], cell: tuple[int, int]) -> None:
    """The recordings of one cell, the most confident answer first, a page at a time."""
    true, predicted = cell
    samples = confusion_cell(predictions, true, predicted)
    verdict = "right" if true == predicted else "wrong"
    st.subheader(f"True {true}, predicted {predicted}")
    if not samples:
        st.info(f"No recording of digit {true} was called {predicted} in this evaluation: the cell is empty. "
                "Click another cell.")
        return
    pages = (len(samples) + PER_PAGE - 1) // PER_PAGE
    if st.session_state["mx_page"] >= pages:
        st.session_state["mx_page"] = 0
    page = st.session_state["mx_page"]
    if pages > 1:
        st.session_state["mx_page_pick"] = page + 1

        def turned() -> None:
            st.session_state["mx_page"] = int(st.session_state["mx_page_pick"]) - 1

        st.number_input(f"page (of {pages})", min_value=1, max_value=pages, step=1, key="mx_page_pick", on_change=turned)
    shown = samples[page * PER_PAGE : (page + 1) * PER_PAGE]
    st.caption(f"{len(samples):,} recording{'s' if len(samples) != 1 else ''} ({verdict}), the most confident answer "
               f"first: under each, neuron {predicted}'s share of the output spikes. " + IMAGES_NOTE)
    samples_ui(result, shown, 3, lambda p: f"{p.confidence:.0%} of {sum(p.spikes)} spikes")


def wrong_ui(result: EvaluationResult, predictions: tuple[SamplePrediction, ...]) -> None:
    st.subheader("Most confidently wrong")
    wrong = most_confidently_wrong(predictions, WRONG_SHOWN)
    if not wrong:
        st.info("The network answered every recording of this evaluation right.")
        return
    st.caption("The wrong answers given with the largest share of output spikes: under each, the true digit → the "
               "answer, and that share. " + IMAGES_NOTE)
    samples_ui(result, wrong, 6, lambda p: f"{p.label} → {p.predicted}, {p.confidence:.0%}")


# ------------------------------------------------------------------ page

st.title("Mistakes")
if st.session_state.get("mx_notice"):
    st.warning(escape_markdown(st.session_state["mx_notice"], limit=400))
    st.session_state["mx_notice"] = None
store = run_store(str(default_runs_root()))
run = run_ui(store)  # the run and the evaluation each on a row of their own: side by side their labels were cut
if run is None:
    write_query_params("sel_data")
    st.stop()
run_dir = store.root / run.run_id
result = evaluation_ui(run, run_dir, st.container())
_set_param(RUN_PARAM, run.run_id)
_set_param(EVAL_PARAM, result.name if result is not None else None)
write_query_params("sel_data")
if result is None:
    _set_param(CELL_PARAM, None)
    st.stop()

try:
    path = predictions_file(result)
    predictions = cached_predictions(str(path), path.stat().st_mtime if path.is_file() else 0.0, result)
except EvaluationError as exc:
    st.error(escape_markdown(str(exc), limit=600), icon=ERROR_ICON)
    predictions = None
st.caption(escape_markdown(
    f"{result.accuracy:.1%} right on {result.samples:,} {result.split} recordings of {result.data_root} "
    f"({result.checkpoint}.pt, iteration {result.checkpoint_iteration})"
    + (", the data it trained on" if result.same_data else "")
    + (f"; {result.excluded:,} left out (images its data used)" if result.excluded else ""), limit=600))
left, right = st.columns([5, 4], gap="medium")
with left:
    cell = matrix_ui(result)
_set_param(CELL_PARAM, None if cell is None else f"{cell[0]}-{cell[1]}")
_set_param(PAGE_PARAM, str(st.session_state["mx_page"]) if cell is not None and st.session_state["mx_page"] else None)
with right:
    if predictions is None:
        st.info("This evaluation was made before the recordings' answers were kept: evaluate the run again "
                "(New evaluation, above) to list the recordings of a cell.")
    elif cell is None:
        st.info("Click a cell of the confusion matrix (or choose one under it) to see its recordings.")
    else:
        cell_ui(result, predictions, cell)
if predictions is not None:
    wrong_ui(result, predictions)
