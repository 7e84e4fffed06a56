"""Draw: draw a digit with the mouse (or upload a picture or a recording) and watch the network see it.

A drawing or picture is framed as MNIST digits are, recorded by the simulated event camera
(three saccades, the data set's own simulator settings) and run through a trained network;
an uploaded N-MNIST ``.bin`` goes straight to the network. The network is named in the URL
(``?run=<run id>``); without one, the best finished run by test accuracy answers. Where no
network has been trained yet, one click starts the quick preset.
"""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit_drawable_canvas import st_canvas

from core import drawing, inference
from core.drawing import Answer, DrawingError
from core.events import NMNISTFormatError
from core.inference import Network, NetworkError, RunChoice
from core.limits import LimitExceeded, format_bytes, limits
from core.runs import default_runs_root
from core.saccade import SimulationConfig
from core.text import escape_markdown
from core.training import ConfigError, JobBusyError, JobRegistry, StorageError, TrainingJob, preset
from pages.common import DEFAULT_DATA, init_selection, require_data, write_query_params
from pages.runs import RUN_PARAM, registry, run_choices, run_store

INPUT_PARAM = "input"  # the input in the link: draw or upload
INPUTS = {"draw": "Draw", "upload": "Upload a file"}
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bin"]
CHART_WIDTH = 440  # the spike counts and the saccade images side by side at 1400 px, one above the other at 1000 px
ZOOM = 5  # the 28 x 28 image is shown at 140 x 140 screen pixels, each pixel a square
ERROR_ICON = "⚠️"

init_selection()
source = require_data()


# ------------------------------------------------------------------ server-wide resources


@st.cache_resource(show_spinner="Loading the network…", max_entries=4)
def draw_network(runs_root: str, run_id: str, stamp: float) -> Network:
    """A run's best checkpoint (``stamp``, its modification time, reloads a newer one)."""
    return inference.load_network(run_store(runs_root), run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def see_canvas(runs_root: str, run_id: str, stamp: float, config_key: str, digest: str, _png: bytes,
               _config: SimulationConfig) -> drawing.Seen:
    """A canvas drawing (its PNG, named by ``digest``) framed, recorded and answered."""
    return drawing.see_drawing(draw_network(runs_root, run_id, stamp), drawing.read_canvas(_png), _config)


@st.cache_data(show_spinner=False, max_entries=16)
def see_picture(runs_root: str, run_id: str, stamp: float, config_key: str, digest: str, _data: bytes,
                _config: SimulationConfig) -> drawing.Seen:
    """An uploaded picture framed, recorded and answered."""
    return drawing.see_drawing(draw_network(runs_root, run_id, stamp), drawing.read_picture(_data), _config)


@st.cache_data(show_spinner=False, max_entries=16)
def see_recording(runs_root: str, run_id: str, stamp: float, digest: str, _data: bytes) -> tuple[np.ndarray, Answer]:
    """An uploaded N-MNIST recording and the network's answer on it (no simulation)."""
    events = drawing.read_recording(_data)
    return events, drawing.classify(draw_network(runs_root, run_id, stamp), events)


@st.cache_resource(show_spinner=False, max_entries=16)  # see pages.common.FIGURE_CACHE
def draw_figures(digest: str, _events: np.ndarray, _spikes: np.ndarray):
    """The 3D event cloud, the three saccade images and the spike-count animation of one answer."""
    return drawing.answer_figures(_events, _spikes)


@st.cache_resource(show_spinner=False)
def warm_up_simulator() -> threading.Thread:
    """Once per server, in the background: the simulator's kernel loads while a person draws the first stroke."""
    thread = threading.Thread(target=drawing.warm_up, name="warm-up-simulator", daemon=True)
    thread.start()
    return thread


def digest_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ------------------------------------------------------------------ the network


def run_ui(runs: list[RunChoice]) -> RunChoice | None:
    """The run that answers (None where none can): the one chosen, else the link's, else the best finished run."""
    usable = {run.run_id: run for run in runs if run.usable}
    default, why = inference.default_run(runs)
    if default is None:
        return None
    linked = st.query_params.get(RUN_PARAM)
    if "draw_run" not in st.session_state:  # the session's first view: the link decides
        if linked and linked not in usable:
            st.session_state["draw_notice"] = (f"The link names run {linked}, which cannot answer here; the default "
                                               "network answers instead.")
        st.session_state["draw_run"] = linked if linked in usable else default.run_id
    if st.session_state["draw_run"] not in usable:  # deleted meanwhile
        st.session_state["draw_run"] = default.run_id
    st.session_state["draw_run"] = st.session_state["draw_run"]  # kept while another page is shown
    shown = st.selectbox("Network", list(usable), key="draw_run", format_func=lambda r: usable[r].label())
    if st.query_params.get(RUN_PARAM) != shown:
        st.query_params[RUN_PARAM] = shown
    if st.session_state.get("draw_notice"):
        st.warning(escape_markdown(st.session_state.pop("draw_notice")), icon=ERROR_ICON)
    run = usable[shown]
    line = f"{why}." if shown == default.run_id else f"chosen; by default {default.run_id} answers, {why}."
    if run.trained_on is not None:
        line += f" Trained on {run.trained_on.describe()}."
    st.caption(escape_markdown(line[0].upper() + line[1:], limit=600))
    return run


def data_fields() -> dict[str, str | None]:
    """The data a quick training here trains on: the data set in use (as the Training page does)."""
    if st.session_state["sel_data"] == DEFAULT_DATA:
        return dict(data_root=None, data_kind="auto")
    return dict(data_root=str(source.root), data_kind=source.kind)


def start_quick_training(reg: JobRegistry) -> None:
    """The one click: the quick preset on the data set in use (refused, with the reason, while another trains)."""
    try:
        reg.submit(preset("quick", **data_fields()))
    except (JobBusyError, ConfigError, StorageError) as exc:
        st.session_state["draw_training_problem"] = str(exc)
    else:
        st.session_state["draw_training_problem"] = None


def no_network_ui(reg: JobRegistry) -> None:
    """No trained network: say so, offer the quick training, or show the one under way until it ends."""
    job: TrainingJob | None = reg.active()
    if job is None:
        quick = preset("quick")
        st.info(f"No trained network yet, so nothing can answer. One click trains the quick preset on "
                f"{escape_markdown(source.label, limit=200)} (about {quick.max_seconds:.0f} s of training, a little "
                "more to prepare and test); the **Training** page has every other setting.")
        st.button("Train a network now", key="draw_train", type="primary", on_click=start_quick_training, args=(reg,),
                  icon="⚡")
        problem = st.session_state.get("draw_training_problem")
        if problem:
            st.error(escape_markdown(problem, limit=600), icon=ERROR_ICON)
        return

    @st.fragment(run_every=1.0)
    def progress() -> None:
        snap = job.snapshot()
        if not job.active:
            run_choices.clear()
            st.rerun()  # the whole page: the new run answers
        if snap.iteration:
            limit = f" of at most {snap.config.max_seconds:.0f} s" if snap.config.max_seconds else ""
            text = f"Training run {snap.run_id}: {snap.iteration:,} iterations, {snap.train_seconds:.0f} s{limit}"
        else:
            text = f"Training run {snap.run_id}: preparing the data…"
        st.progress(snap.progress, text=escape_markdown(text))
        st.caption("The answer comes as soon as the training ends; meanwhile, draw away.")

    progress()


# ------------------------------------------------------------------ the input


def input_ui() -> str:
    """Draw or upload (kept in the URL)."""
    if "draw_input" not in st.session_state:
        linked = st.query_params.get(INPUT_PARAM)
        st.session_state["draw_input"] = linked if linked in INPUTS else "draw"
    if st.session_state["draw_input"] not in INPUTS:  # a click on the chosen one unselects it: keep it chosen
        st.session_state["draw_input"] = "draw"
    st.session_state["draw_input"] = st.session_state["draw_input"]  # kept while another page is shown
    choice = st.segmented_control("Input", list(INPUTS), key="draw_input", format_func=INPUTS.get,
                                  label_visibility="collapsed") or "draw"
    if st.query_params.get(INPUT_PARAM) != choice:
        st.query_params[INPUT_PARAM] = choice
    return choice


def canvas_ui() -> bytes | None:
    """The canvas; the PNG of what is drawn on it, or None while it is empty."""
    # Above the canvas: its toolbar (undo, redo, clear) shows over this line while the mouse is on the canvas.
    st.caption("Draw one digit, as large as the box. Point at the box for undo, redo and clear.")
    result = st_canvas(stroke_width=drawing.PEN_WIDTH, stroke_color="#000000", background_color="#ffffff",
                       height=drawing.CANVAS_SIZE, width=drawing.CANVAS_SIZE, drawing_mode="freedraw",
                       return_image_data=True, key="draw_canvas")
    objects = (result.json_data or {}).get("objects") or []
    return result.image_bytes if objects else None


def upload_ui() -> UploadedFile | None:
    """The file uploader: a picture or a recording, within the limits."""
    budget = max(limits().upload_image_bytes, limits().event_file_bytes)
    return st.file_uploader(
        "A PNG or JPEG picture of one digit, or an N-MNIST .bin recording", type=UPLOAD_TYPES, key="draw_upload",
        max_upload_size=max(1, -(-budget // 2**20)),
        help=f"pictures up to {format_bytes(limits().upload_image_bytes)}, recordings up to "
             f"{format_bytes(limits().event_file_bytes)}",
    )


def image_ui(image: np.ndarray) -> None:
    """The 28 x 28 digit the camera watches, each pixel a visible square."""
    st.image(np.kron(image, np.ones((ZOOM, ZOOM), np.uint8)), width=28 * ZOOM)
    st.caption("What the event camera watches: 28 × 28, framed as MNIST digits are (20 × 20 box, centre of mass "
               "in the middle)")


def vote_ui(answer: Answer) -> None:
    """The vote: the digit, how sure, how many spikes, and a sentence."""
    vote = answer.vote
    with st.container(horizontal=True, gap="medium"):
        st.metric("predicted", "–" if vote.predicted is None else vote.predicted, width="content")
        st.metric("confidence", f"{vote.confidence:.0%}", help="the winning neuron's share of all output spikes",
                  width="content")
        st.metric("output spikes", vote.total, width="content")
    st.markdown(escape_markdown(vote.explain()))


def events_ui(answer: Answer, digest: str, events: np.ndarray) -> None:
    """The spike counts growing, the three saccade images side by side (two rows where the page is narrow), the 3D
    events below."""
    cloud, saccades, counts = draw_figures(digest, events, answer.spikes)
    with st.container(horizontal=True, gap="medium"):  # wraps onto two rows where both do not fit
        with st.container(width=CHART_WIDTH):
            st.plotly_chart(counts, width="stretch", key="draw_counts")
            st.caption("The output neurons' spike counts over the recording's time steps: press ▶ to watch them "
                       "count.")
        with st.container(width=CHART_WIDTH):
            st.plotly_chart(saccades, width="stretch", key="draw_saccades")
            st.caption("The three saccades, each a third of the recording, its events summed per pixel: ON "
                       "(brighter) red, OFF (darker) blue.")
    st.plotly_chart(cloud, width="stretch", key="draw_cloud")


def refuse(exc: Exception) -> None:
    """One clear message for input that cannot be used (nothing else is drawn)."""
    if isinstance(exc, LimitExceeded):
        text = f"Too large: {exc}."
    elif isinstance(exc, NMNISTFormatError):
        text = f"This is not a readable N-MNIST recording: {exc.problem}."
    else:
        text = f"This cannot be used: {exc}."
    st.error(escape_markdown(text, limit=600), icon=ERROR_ICON)


# ------------------------------------------------------------------ the page


st.title("Draw a digit")
warm_up_simulator()
reg = registry(str(default_runs_root()))
runs_root = str(reg.store.root)
last_job = reg.current()
if last_job is not None and not last_job.active and not run_choices(runs_root):
    run_choices.clear()  # a training that ended within the cache's few seconds: its run answers now
run = run_ui(run_choices(runs_root))  # above the box, as on the other pages: the sidebar cut its label
if run is None:
    no_network_ui(reg)
config, config_from = drawing.simulation_config(source.root)
config_key = json.dumps(config.to_dict(), sort_keys=True)
write_query_params("sel_data")

top = st.container(horizontal=True, gap="large")
left, right = top.container(width=drawing.CANVAS_SIZE + 10), top.container(width="stretch")
with left:
    mode = input_ui()
    png = upload = None
    if mode == "draw":
        png = canvas_ui()
    else:
        upload = upload_ui()
if run is None:
    right.caption("The answer appears here once a network has been trained.")
    st.stop()
try:
    draw_network(runs_root, run.run_id, run.checkpoint_stamp)  # loaded before the first stroke, or refused here
except NetworkError as exc:
    right.error(escape_markdown(f"Run {run.run_id} cannot answer: {exc.problem}. Choose another network.", limit=600),
                icon=ERROR_ICON)
    st.stop()

stamp = run.checkpoint_stamp
image = None
if mode == "draw":
    if png is None:
        right.info("Draw a digit in the box: the answer comes when you lift the mouse.")
        st.stop()
    digest = digest_of(png)
    try:
        seen = see_canvas(runs_root, run.run_id, stamp, config_key, digest, png, config)
    except DrawingError as exc:
        with right:
            refuse(exc)
        st.stop()
    image, events, answer = seen.image, seen.events, seen.answer
    source_line = f"Recorded by the simulated camera with {config_from}."
else:
    if upload is None:
        right.info("Upload a picture of a digit (dark on light or light on dark) or an N-MNIST .bin recording.")
        st.stop()
    data = upload.getvalue()
    digest = digest_of(data)
    try:
        if upload.name.lower().endswith(drawing.RECORDING_SUFFIX):
            events, answer = see_recording(runs_root, run.run_id, stamp, digest, data)
            source_line = f"The recording {upload.name} ({len(events):,} events), as it is: no simulation."
        else:
            seen = see_picture(runs_root, run.run_id, stamp, config_key, digest, data, config)
            image, events, answer = seen.image, seen.events, seen.answer
            source_line = f"The picture {upload.name}, recorded by the simulated camera with {config_from}."
    except (DrawingError, LimitExceeded, NMNISTFormatError) as exc:
        with right:
            refuse(exc)
        st.stop()

with right:
    vote_ui(answer)
    if (note := draw_network(runs_root, run.run_id, stamp).population_note()) is not None:
        st.caption(note)
    if image is not None:
        image_ui(image)
    st.caption(escape_markdown(source_line + f" Answered by run {run.run_id}.", limit=600))
events_ui(answer, digest, events)
