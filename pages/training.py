"""Training: a new run's settings, the run shown (live while it trains), past runs compared, runs tested on other data.

The run shown and the preset are in the URL (``?run=<run id>&preset=quick``), so a copied
link shows the same run. While a run trains, its live view is at the top and the settings
form is folded; the past runs and their comparison follow it live. The form shows the
essentials first and only the fields that apply to the loss chosen; the rest is folded, the
architecture (channels, kernel size, pooling, output neurons a class) in a part of its own. A run's network downloads as
its checkpoint and, where NIR can express it, as a .nir file (else the page says why not).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from core import figures
from core.data import default_source
from core.evaluate import EvaluationError, EvaluationResult, evaluate, saved_evaluations
from core.export import ExportError, check_nir_config, nir_bytes
from core.jobs import ProgressJob
from core.limits import format_bytes, limits
from core.metrics import format_count
from core.model import FRAME_SHAPE, ModelConfig, ModelConfigError
from core.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    RUN_ID_PATTERN,
    CheckpointError,
    RunInfo,
    RunNotFoundError,
    default_runs_root,
    load_checkpoint,
    load_model,
    transform_summary,
)
from core.text import escape_markdown
from core.training import (
    PRESETS,
    ConfigError,
    JobBusyError,
    JobSnapshot,
    Setting,
    StorageError,
    TrainConfig,
    TrainingJob,
    check_data,
    describe_ending,
    estimate_iteration_seconds,
    form_settings,
    with_settings,
)
from core.training.config import (
    TYPICAL_EVENTS,
    TYPICAL_SPAN_US,
    batch_memory,
    network_notation,
    parameter_count,
    time_steps,
)
from pages.common import DEFAULT_DATA, init_selection, require_data, write_query_params
from pages.runs import evaluation_jobs, registry

if TYPE_CHECKING:
    import plotly.graph_objects as go

COLUMNS = 3  # form fields a row: at 1000 px a number field and its label stay whole
NO_RUN = ""  # the run chooser's "none shown"
ERROR_ICON = "⚠️"
# Again after 0.4 and 1.2 s: on a busy machine the page above the live view may still be settling at the first try.
SCROLL_TO_TOP = """<script>
const toTop = () => {
  for (const doc of [document, window.parent && window.parent.document]) {
    const main = doc && doc.querySelector('[data-testid="stMain"]');
    if (main) { main.scrollTo({top: 0, behavior: "smooth"}); }
  }
  window.scrollTo({top: 0, behavior: "smooth"});
};
toTop(); setTimeout(toTop, 400); setTimeout(toTop, 1200);
</script>"""

init_selection()
source = require_data()


# ------------------------------------------------------------------ server-wide resources


@st.cache_data(show_spinner="Timing one training step on a few samples…", max_entries=32)
def estimate(config: TrainConfig) -> float:
    return estimate_iteration_seconds(config)


reg = registry(str(default_runs_root()))
store = reg.store


# ------------------------------------------------------------------ state: from the URL on a session's first run


def _url_preset() -> str:
    value = st.query_params.get("preset")
    return value if value in PRESETS else "quick"


def _url_run() -> str | None:
    value = st.query_params.get("run")
    if value is None:
        return None
    if not RUN_ID_PATTERN.match(value) or len(value) > 200:
        st.session_state["train_message"] = ("warning", "The link's run name is not a run folder name; no run is shown.")
        return None
    return value


if "train_preset" not in st.session_state:  # a session's first run (or back from another page): the link's choices
    st.session_state["train_preset"] = _url_preset()
if "train_shown" not in st.session_state:
    st.session_state["train_shown"] = _url_run()
st.session_state.setdefault("train_errors", {})
st.session_state.setdefault("train_message", None)
st.session_state.setdefault("train_estimate", None)
st.session_state.setdefault("train_compare", [])
st.session_state.setdefault("train_compare_seen", [])


def preset_name() -> str:
    return st.session_state["train_preset"]


def base_config(p: str) -> TrainConfig:
    """The preset's settings, or a run's whose settings were loaded into the form (fields not on the form too)."""
    loaded = st.session_state.get("train_loaded")
    if loaded is not None and loaded["preset"] == p:
        return loaded["config"]
    return PRESETS[p]


def widget_key(p: str, setting: Setting) -> str:
    return f"f_{p}_{setting.form.key}"


def data_fields() -> dict[str, Any]:
    """The data part of a config: the source chosen on Home."""
    if st.session_state["sel_data"] == DEFAULT_DATA:
        return dict(data_root=None, data_kind="auto")
    return dict(data_root=str(source.root), data_kind=source.kind)


# ------------------------------------------------------------------ the form's actions (callbacks: they run first)


def _set_errors(field: str, problem: str) -> None:
    """Keep a refusal for the field it names, as ``field: problem`` (the problem may quote outside text: escaped)."""
    name = re.sub(r"[^A-Za-z0-9_.\[\]]", "", str(field))[:60]
    message = f"{name}: {escape_markdown(problem, limit=600)}"
    st.session_state["train_errors"] = {"preset": preset_name(), "field": field, "message": message}


def config_from_form(check: bool = True) -> TrainConfig | None:
    """The config the form holds (``check``: checked against its data); None with the error kept under its field."""
    p = preset_name()
    base = base_config(p)
    loss = st.session_state.get(f"f_{p}_loss", base.loss)
    values = {}
    try:
        for setting in form_settings():
            key = widget_key(p, setting)
            if setting.form.applies(loss) and key in st.session_state:
                values[setting.path] = setting.from_widget(st.session_state[key])
        config = with_settings(base, {**values, **data_fields()})
        if check:
            check_data(config)
    except ConfigError as exc:
        _set_errors(exc.field, exc.problem)
        return None
    st.session_state["train_errors"] = {}
    return config


def on_estimate() -> None:
    config = config_from_form()
    st.session_state["train_estimate"] = None if config is None else ("pending", config)


def on_start() -> None:
    """Start a run from the form: its live view goes to the top, the form folds, the run joins the comparison."""
    st.session_state["train_message"] = None
    config = config_from_form(check=False)  # submit checks it against its data
    if config is None:
        return
    try:
        job = reg.submit(config)
    except JobBusyError as exc:
        st.session_state["train_message"] = ("warning", str(exc))
        return
    except ConfigError as exc:
        _set_errors(exc.field, exc.problem)
        return
    except StorageError as exc:
        st.session_state["train_message"] = ("error", f"Cannot start: {exc}")
        return
    st.session_state["train_run"] = job.run_id
    st.session_state["train_scroll_top"] = True  # the Start button may sit far down the page
    show_run(job.run_id)
    st.session_state["train_compare"] = [job.run_id, *st.session_state["train_compare"]]


def show_run(run_id: str | None) -> None:
    st.session_state["train_shown"] = run_id
    st.session_state["train_show"] = run_id or NO_RUN


def on_preset_change() -> None:
    """A field error belongs to the preset whose form made it: switching presets drops it (and a loaded run)."""
    st.session_state["train_errors"] = {}
    st.session_state.pop("train_loaded", None)


def load_settings(run_id: str) -> None:
    """Put a run's settings back into the form: its preset, every field, its data; fields not on the form too."""
    record = store.load_run(run_id)
    try:
        config = TrainConfig.from_dict(record.config)
    except (ValueError, TypeError) as exc:
        st.session_state["train_message"] = ("error", f"The settings of run {run_id} cannot be read: {exc}")
        return
    p = config.preset if config.preset in PRESETS else preset_name()
    st.session_state["train_preset"] = p
    st.session_state["train_loaded"] = {"preset": p, "config": config, "run": run_id}
    for setting in form_settings():
        st.session_state[widget_key(p, setting)] = setting.widget_value(config)
    st.session_state["sel_data"] = DEFAULT_DATA if config.data_root is None else config.data_root
    st.session_state["train_errors"] = {}
    st.session_state["train_message"] = ("info", f"The settings of run {run_id} are in the form below.")


def delete_run(run_id: str) -> None:
    try:
        store.delete_run(run_id)
    except (RuntimeError, RunNotFoundError, OSError) as exc:
        st.session_state["train_message"] = ("error", f"Run {run_id} was not deleted: {exc}")
        return
    reg.forget(run_id)
    if st.session_state.get("train_shown") == run_id:
        show_run(None)
    st.session_state["train_compare"] = [r for r in st.session_state["train_compare"] if r != run_id]
    st.session_state["train_message"] = ("info", f"Run {run_id} was deleted.")


def use_built(pipeline: str) -> None:
    st.session_state[f"f_{preset_name()}_transform"] = pipeline


# ------------------------------------------------------------------ the form


def setting_ui(setting: Setting, base: TrainConfig, key: str) -> None:
    """One widget for one setting, made from its description (its value is read from session state on submit)."""
    hint = setting.form
    value = setting.widget_value(base)
    st.session_state.setdefault(key, value)
    if setting.choices:
        options = list(setting.choices)
        if st.session_state[key] not in options:
            st.session_state[key] = value
        st.selectbox(hint.label, options, key=key, help=hint.help)
    elif setting.kind is bool:
        st.checkbox(hint.label, key=key, help=hint.help)
    elif setting.kind is tuple:  # "12, 32": one field for the pair
        st.text_input(hint.label, key=key, help=hint.help)
    elif setting.kind is str:
        st.text_area(hint.label, key=key, height=68, help=hint.help)
    else:
        st.number_input(hint.label, step=hint.step, format=hint.format, key=key, help=hint.help)


def note(field: str) -> None:
    """The form's error under its field (only for the preset whose form made it)."""
    errors = st.session_state["train_errors"]
    if errors.get("field") == field and errors.get("preset") == preset_name():
        st.error(errors["message"], icon=ERROR_ICON)


def grid(settings: list[Setting], base: TrainConfig, p: str, notes: bool = True) -> None:
    """Settings in rows of ``COLUMNS``, each with its error under it (``notes``)."""
    for start in range(0, len(settings), COLUMNS):
        for column, setting in zip(st.columns(COLUMNS), settings[start : start + COLUMNS]):
            with column:
                setting_ui(setting, base, widget_key(p, setting))
                if notes:
                    note(setting.path)


def new_run_ui() -> None:
    """Preset and loss (they decide which fields apply), then the form: essentials, the rest folded, the buttons."""
    top = st.columns([1, 1, 2], vertical_alignment="bottom")
    top[0].selectbox("Preset", list(PRESETS), key="train_preset", on_change=on_preset_change,
                     help="tutorial: the tutorial's exact settings; quick: learns within a minute on a CPU; "
                     "long: five minutes, augmented, twenty output neurons a class, for a network that reads real N-MNIST")
    p = preset_name()
    base = base_config(p)
    settings = list(form_settings())
    loss_setting = next(s for s in settings if s.path == "loss")
    with top[1]:
        setting_ui(loss_setting, base, widget_key(p, loss_setting))
    loss = st.session_state[widget_key(p, loss_setting)]
    loaded = st.session_state.get("train_loaded")
    if loaded is not None and loaded["preset"] == p:
        top[2].caption(f"Settings of run {escape_markdown(loaded['run'])}; data: {escape_markdown(source.label)}")
    else:
        top[2].caption(f"Data: {escape_markdown(source.label)} (change it on Home)")
    note("loss")
    built = st.session_state.get("tf_pipeline_json")
    if isinstance(built, str) and len(built) < 20_000 and _ends_in_frames(built):
        st.button("Use the pipeline from the Transforms page", key="train_use_pipeline", on_click=use_built,
                  args=(built,), help="puts it in the transform field under More settings")
    applicable = [s for s in settings if s is not loss_setting and s.form.applies(loss)]
    essentials = [s for s in applicable if s.form.essential]
    architecture = [s for s in applicable if s.form.part == "architecture"]
    more = [s for s in applicable if not s.form.essential and not s.form.part]
    with st.form(key=f"train_form_{p}", border=False):
        grid(essentials, base, p)
        with st.expander("Architecture: channels, kernel size, pooling, output neurons"):
            grid(architecture, base, p, notes=False)
            st.caption(architecture_caption(p, base))
        with st.expander("More settings: the neurons, optimiser, augmentation, tests, seed, transform"):
            grid([s for s in more if not _is_text(s)], base, p, notes=False)
            for setting in (s for s in more if _is_text(s)):
                setting_ui(setting, base, widget_key(p, setting))
        errors = st.session_state["train_errors"]
        if errors.get("preset") == p and errors.get("field") not in {s.path for s in essentials} | {"loss"}:
            # a folded field, or one not on the form (the data, the memory of a batch)
            field = errors.get("field")
            where = ("Architecture → " if field in {s.path for s in architecture}
                     else "More settings → " if field in {s.path for s in more} else "")
            st.error(where + errors["message"], icon=ERROR_ICON)
        b = st.columns(2)
        b[0].form_submit_button("Estimate time per iteration", on_click=on_estimate, width="stretch")
        b[1].form_submit_button("Start training", type="primary", on_click=on_start, width="stretch")


def architecture_caption(p: str, base: TrainConfig) -> str:
    """The network the architecture fields make (as last submitted: a form's fields count when it is sent)."""
    values = {}
    for setting in form_settings():
        key = widget_key(p, setting)
        if setting.form.part == "architecture" and key in st.session_state:
            values[setting.path] = st.session_state[key]
    try:
        model = with_settings(base, {k: by_path(k).from_widget(v) for k, v in values.items()}).model
    except ConfigError:
        model = base.model
    side1 = FRAME_SHAPE[1] - model.kernel_size + 1
    return (f"{network_notation(model)}: feature maps of {side1}, {side1 // 2}, {side1 // 2 - model.kernel_size + 1} "
            f"and {model.feature_size} pixels a side, {parameter_count(model):,} parameters. \"Estimate time per "
            "iteration\" measures the time and memory of the settings in the form.")


def by_path(path: str) -> Setting:
    return next(s for s in form_settings() if s.path == path)


def _is_text(setting: Setting) -> bool:
    return setting.kind is str and not setting.choices


def _ends_in_frames(pipeline: str) -> bool:
    try:
        steps = json.loads(pipeline)
    except (ValueError, RecursionError):
        return False
    return isinstance(steps, list) and bool(steps) and isinstance(steps[-1], dict) and steps[-1].get("name") == "ToFrame"


def estimate_ui() -> None:
    pending = st.session_state["train_estimate"]
    if pending is None:
        return
    if pending[0] == "pending":
        try:
            st.session_state["train_estimate"] = pending = ("done", estimate(pending[1]), pending[1])
        except (ConfigError, ValueError, RuntimeError) as exc:
            st.session_state["train_estimate"] = None
            st.error(f"Cannot estimate: {escape_markdown(exc, limit=600)}", icon=ERROR_ICON)
            return
    _, seconds, config = pending
    memory = batch_memory(config, time_steps(config, TYPICAL_SPAN_US, TYPICAL_EVENTS))
    whole = f"about {_duration(seconds * config.max_iters)} for {config.max_iters:,} iterations"
    if config.max_seconds is not None and seconds * config.max_iters > config.max_seconds:
        whole += f", so the time limit ({_duration(config.max_seconds)}) ends it first"
    st.info(f"Estimated time per iteration: **{seconds:.2f} s** (batch {config.batch_size}, measured on this machine): "
            f"{whole}. One batch holds about **{format_bytes(memory.total)}** ({memory.engine} engine, limit "
            f"{format_bytes(limits().training_batch_bytes)}). The network: {network_notation(config.model)}, "
            f"{parameter_count(config.model):,} parameters.", icon="⏱️")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------ a run: live or from its folder


def histories(snap_iterations: list[dict[str, float]], evals: list[dict[str, float]]) -> dict[str, list[float]]:
    measured = [e for e in evals if e.get("activation_sparsity") is not None]  # tests with NeuroBench's metrics
    ops = [e.get("synaptic_operations") or {} for e in measured]
    return dict(
        iteration=[r["iteration"] for r in snap_iterations], loss=[r["loss"] for r in snap_iterations],
        accuracy=[r["accuracy"] for r in snap_iterations], test_iteration=[e["iteration"] for e in evals],
        test_accuracy=[e["accuracy"] for e in evals],
        metrics_iteration=[e["iteration"] for e in measured],
        activation_sparsity=[e["activation_sparsity"] for e in measured],
        effective_acs=[o.get("Effective_ACs") for o in ops], effective_macs=[o.get("Effective_MACs") for o in ops],
        metrics_samples=[e.get("metrics_samples") for e in measured],
        metrics_time_steps=[e.get("metrics_time_steps") for e in measured],
        metrics_seconds=[e.get("metrics_seconds") for e in measured],
        footprint_bytes=[e.get("footprint_bytes") for e in measured],
        connection_sparsity=[e.get("connection_sparsity") for e in measured],
    )


def curves_ui(run_id: str, history: dict[str, list[float]], key: str) -> None:
    if not history["iteration"]:
        return
    raw = st.session_state.get("train_raw", False)
    fig = figures.training_curves_figure({run_id: history}, raw=raw, chance=0.1)
    st.plotly_chart(fig, width="stretch", key=key)
    neurobench_metrics_ui(history)


def neurobench_metrics_ui(history: dict[str, list[float]]) -> None:
    """NeuroBench's metrics at each test, beside the test accuracy: activation sparsity and synaptic operations."""
    if not history.get("metrics_iteration"):
        return
    left, right = st.columns(2)
    # short labels: in half a 1000 px window longer ones were cut ("activation sparsity (t", "effecti")
    left.line_chart({"iteration": history["metrics_iteration"], "activation sparsity": history["activation_sparsity"]},
                    x="iteration", y="activation sparsity", y_label="activation sparsity", height=220)
    right.line_chart({"iteration": history["metrics_iteration"], "ACs": history["effective_acs"],
                      "MACs": history["effective_macs"]},
                     x="iteration", y=["ACs", "MACs"], y_label="operations / sample", height=220)
    samples, steps = history["metrics_samples"][-1], history["metrics_time_steps"][-1]
    footprint, connections = history["footprint_bytes"][-1], history["connection_sparsity"][-1]
    st.caption(
        f"NeuroBench metrics at each test, measured on {samples} of the test samples ({steps} time steps; a subset, "
        f"to keep tests fast: {history['metrics_seconds'][-1]:.1f} s the last time), with the tutorial's "
        f"step-by-step loop. Activation sparsity: the share of neuron outputs with no spike. Operations: NeuroBench's "
        f"effective synaptic operations per sample, accumulates (ACs: inputs of 0 or 1, spikes) and "
        f"multiply-accumulates (MACs: a layer's operations at a step where its input holds event counts above 1). "
        f"Footprint {footprint / 1000:.1f} kB, connection sparsity {connections:.1%}."
    )


def phase_text(snap: JobSnapshot) -> tuple[float, str]:
    """The progress bar of the phase the job is in: preparing, training or testing, in words."""
    if snap.testing is not None:
        t = snap.testing
        what = "final test" if snap.status in ("testing", "stopping") else "test"
        return (t.done / t.total if t.total else 0.0), f"{what}: {t.done:,} of {t.total:,} samples"
    if snap.status == "testing" or (snap.status == "stopping" and snap.reason and snap.evals
                                    and snap.evals[-1].iteration == snap.iteration):
        return 1.0, "saving the weights and the results…"
    if snap.status in ("queued", "preparing") or (snap.status == "stopping" and not snap.iterations):
        p = snap.prepare
        if p is None:
            return 0.0, "starting…"
        what = "generating the default data" if p.split == "generate" else f"preparing {p.split} frames"
        return (p.done / p.total if p.total else 0.0), f"{what}: {p.done:,} of {p.total:,}"
    limit = snap.config.max_seconds
    bound = f" of {limit:g} s" if limit else ""
    return snap.progress, f"training: {snap.iteration:,} of {snap.max_iters:,} iterations · {snap.elapsed:.0f} s{bound}"


def job_metrics(snap: JobSnapshot) -> None:
    last, test = (snap.iterations[-1] if snap.iterations else None), snap.last_eval
    row = st.columns(3)
    row[0].metric("status", snap.status)
    row[1].metric("iteration", f"{snap.iteration} / {snap.max_iters}")
    eta = snap.eta_seconds
    row[2].metric("time left", "–" if snap.done else ("–" if eta is None else f"{eta:.0f} s"),
                  help="to the end of the run, the final test included, at the recent pace")
    row = st.columns(3)
    row[0].metric("loss", f"{last.loss:.4f}" if last else "–", help="the last minibatch's")
    row[1].metric("minibatch accuracy", f"{last.accuracy:.1%}" if last else "–")
    row[2].metric("test accuracy", f"{test.accuracy:.1%}" if test else "–",
                  help=f"on {test.samples:,} test samples after {test.iteration:,} iterations" if test else None)


def draw_job(job: TrainingJob, part: str = "all") -> None:
    """A job's progress, phase, metrics, stop button (``part`` "status"), its charts (``"charts"``), and once it has
    ended its results; ``"all"`` draws everything at once."""
    snap = job.snapshot()
    if part in ("all", "status"):
        st.subheader(f"Run {snap.run_id}")
        fraction, text = phase_text(snap)
        if not snap.done:
            left, right = st.columns([5, 2], vertical_alignment="center")
            left.progress(min(1.0, max(0.0, fraction)), text=text)
            right.button("Stop training", key="train_stop", on_click=job.stop, type="secondary", width="stretch",
                         help="stop training: it ends the step in hand, tests and saves; press again to skip the test")
        else:
            ending_ui(snap.status, snap.ending or "")
        job_metrics(snap)
        data_caption(snap.data, snap.config)
    if part in ("all", "charts"):
        curves_ui(snap.run_id, histories([r.__dict__ for r in snap.iterations], [e.__dict__ for e in snap.evals]),
                  "train_live")
    if part == "all" and snap.done:
        last = snap.last_eval
        test_results_ui(None if last is None else last.__dict__)
        run_actions(snap.run_id, Path(snap.run_dir))
    if part in ("all", "charts"):
        with st.expander("Log"):
            st.code("\n".join(snap.log[-200:]) or "(empty)", language=None)


# How often the live parts redraw while a run trains. A browser on the same 2-core machine redrawing the past
# runs and the comparison chart every 2 s halved the quick preset's iterations in 60 s (101 against 228 without
# them): the numbers come often, the table and the charts less.
LIVE_STATUS_SECONDS = 2.0  # the progress bar and the numbers (every second cost the quick preset half its steps)
LIVE_CHART_SECONDS = 5.0  # the run's curves
LIVE_RUNS_SECONDS = 10.0  # the past runs table (the running run's iterations and status)
LIVE_COMPARE_SECONDS = 30.0  # the comparison chart (a run started here joins it at once: Start redraws the page)
# In the final test and the saves, a status redraw first waits up to this long for the run's end, so that "finished"
# shows the moment it comes instead of up to LIVE_STATUS_SECONDS later (a click then waits as long: only Stop's
# second press, which skips the test, means anything in that phase).
FINAL_PHASE_WAIT_SECONDS = LIVE_STATUS_SECONDS - 0.25


def job_view(job: TrainingJob) -> None:
    """While the job is active, fragments that redraw it (numbers every second, charts less often); once it has
    ended, the page draws it."""
    if not job.active:
        draw_job(job)  # not a fragment: its buttons (load settings, delete) change the rest of the page
        return

    @st.fragment(run_every=LIVE_STATUS_SECONDS)
    def status() -> None:
        if job.status in ("testing", "stopping"):
            job.join(FINAL_PHASE_WAIT_SECONDS)
        draw_job(job, "status")
        if not job.active:
            st.rerun()  # the whole page: the results show, the form unfolds, the run list and chooser catch up

    @st.fragment(run_every=LIVE_CHART_SECONDS)
    def charts() -> None:
        draw_job(job, "charts")

    status()
    charts()


def ending_ui(status: str, text: str) -> None:
    box = {"finished": st.success, "stopped": st.info, "diverged": st.warning}.get(status, st.error)
    box(escape_markdown(text, limit=600))


def data_caption(data: dict[str, Any] | None, config: TrainConfig | dict[str, Any] | None) -> None:
    """What the run trained on and with: data kind, image source, folder, samples; lr, batch, loss, transform."""
    c = config.to_dict() if isinstance(config, TrainConfig) else (config or {})
    parts = []
    if data:
        kind = "simulated" if data.get("kind") == "simulated" else "real N-MNIST"
        source_of = f" from {data['source']}" if data.get("source") else ""
        parts.append(f"data: {kind}{source_of} in {data.get('root')}, {data.get('train_samples', '?')} train and "
                     f"{data.get('test_samples', '?')} test samples")
    parts.append(f"lr {c.get('lr')}, batch {c.get('batch_size')}, {c.get('loss')}")
    transform = transform_summary(c.get("transform"))
    if transform:
        parts.append(transform)
    st.caption(escape_markdown(" · ".join(parts), limit=600))


def test_results_ui(last: dict[str, Any] | None) -> None:
    """The last test: accuracy, confusion matrix, per-class accuracy (what of it a run folder holds soundly)."""
    if last is None:
        st.info("No test was made.")
        return
    samples = last.get("samples")
    on = f" on {samples:,} samples" if isinstance(samples, int) else ""
    st.markdown(f"**Test accuracy {last['accuracy']:.1%}**{on} after {int(last['iteration']):,} iterations")
    confusion_ui(last.get("confusion"), last.get("per_class_accuracy"), "train_confusion")


def _square_counts(confusion: Any) -> bool:
    """Whether ``confusion`` is a square table of whole numbers (a run folder's may be anything)."""
    return (isinstance(confusion, (list, tuple)) and 0 < len(confusion) <= 100
            and all(isinstance(row, (list, tuple)) and len(row) == len(confusion) for row in confusion)
            and all(isinstance(v, int) and not isinstance(v, bool) for row in confusion for v in row))


def confusion_ui(confusion: Any, per_class: Any, key: str) -> None:
    if not _square_counts(confusion):
        return
    left, right = st.columns(2)
    left.plotly_chart(figures.confusion_matrix_figure(confusion), width="stretch", key=key)
    per_class = per_class if isinstance(per_class, (list, tuple)) else ()
    values = {str(k): (float(v) if isinstance(v, (int, float)) else float("nan")) for k, v in enumerate(per_class)}
    right.bar_chart(values, height=400, x_label="digit", y_label="test accuracy")


def run_actions(run_id: str, run_dir: Path) -> None:
    """Load its settings into the form, download its checkpoint or its NIR file, delete it; test it on other data."""
    cols = st.columns(3)
    cols[0].button("Load its settings", key=f"train_load_{run_id}", on_click=load_settings, args=(run_id,),
                   width="stretch", help="into the form below (its data too), to change a value and start again")
    checkpoint = next((run_dir / f"{n}.pt" for n in ("best", "final") if (run_dir / f"{n}.pt").is_file()), None)
    if checkpoint is not None:
        try:
            data = checkpoint.read_bytes()
        except OSError:
            data = None
        if data is not None:
            cols[1].download_button("Download checkpoint", data, file_name=f"{run_id}-{checkpoint.name}",
                                    mime="application/octet-stream", key=f"train_download_{run_id}", on_click="ignore",
                                    width="stretch", help=f"{checkpoint.name}: torch.save of a dict of weights; "
                                                          "core.runs.load_checkpoint reads it")
    with cols[2].popover("Delete run", width="stretch"):
        st.write(f"Delete run {escape_markdown(run_id)} and its checkpoints for good?")
        st.button("Delete it", key=f"train_delete_{run_id}", on_click=delete_run, args=(run_id,), type="primary")
    if checkpoint is not None:
        nir_ui(run_id, checkpoint, cols[1])
        evaluate_ui(run_id, run_dir)


@st.cache_data(show_spinner="Writing the network in NIR and reading it back…", max_entries=8)
def nir_export(checkpoint: str, stamp: float) -> tuple[bytes | None, str | None]:
    """A checkpoint's network as a ``.nir`` file (``stamp``: its modification time), or why it cannot be (plain text)."""
    try:
        config = ModelConfig.from_dict(load_checkpoint(checkpoint)["model_config"])
        check_nir_config(config)  # refused by its settings before any work
        return nir_bytes(load_model(checkpoint)), None
    except ExportError as exc:
        return None, f"{exc.setting}: {exc.problem}"
    except (CheckpointError, ModelConfigError, KeyError, TypeError, ValueError, OSError) as exc:
        return None, f"its checkpoint does not load ({exc})"


def nir_ui(run_id: str, checkpoint: Path, where: Any) -> None:
    """Its network as a NIR file to download, or, where NIR cannot express it, why not."""
    try:
        stamp = checkpoint.stat().st_mtime
    except OSError:
        return
    data, problem = nir_export(str(checkpoint), stamp)
    if data is not None:  # under "Download checkpoint"
        where.download_button("Download NIR", data, file_name=f"{run_id}-{checkpoint.stem}.nir",
                              mime="application/x-hdf5", key=f"train_nir_{run_id}", on_click="ignore", width="stretch",
                              help="the network in the Neuromorphic Intermediate Representation (NIR 1.0, HDF5), "
                                   "written by snnTorch's export_to_nir and checked by reading it back")
    else:  # under the buttons, the width of the page
        st.caption(f"No NIR download: {escape_markdown(problem, limit=400)}")


def draw_stored(run_id: str) -> None:
    """A run from its folder (no job of this server holds it): its end, curves, tests; damaged parts said so."""
    try:
        record = store.load_run(run_id)
    except RunNotFoundError:
        st.warning(f"There is no run {escape_markdown(run_id)} in {escape_markdown(store.root)}.")
        return
    info = record.info
    st.subheader(f"Run {run_id}")
    if info.damaged:
        st.error(f"This run's folder is damaged: {escape_markdown(info.damaged, limit=400)}", icon=ERROR_ICON)
    elif info.status in ("running", "incomplete"):
        st.info("This run is being trained by another process." if info.status == "running"
                else "This run ended without its results (the process was killed?): what it saved is below.")
    else:
        error = (record.results or {}).get("error")
        ending_ui(info.status, describe_ending(info.status, info.reason, error if isinstance(error, str) else None,
                                               info.iterations))
    row = st.columns(3)
    row[0].metric("status", info.status)
    row[1].metric("iteration", f"{info.iterations} / {info.max_iters}" if info.max_iters else f"{info.iterations}")
    row[2].metric("test accuracy", f"{info.test_accuracy:.1%}" if info.test_accuracy is not None else "–")
    data_caption(record.data, record.config)
    curves_ui(run_id, histories(list(record.iterations), list(record.evals)), "train_stored")
    last = record.evals[-1] if record.evals else None
    if last is not None and info.status not in ("running",):
        test_results_ui(last)
    run_actions(run_id, info.path)
    with st.expander("Log"):
        st.code("\n".join(record.log[-200:]) or "(empty)", language=None)


# ------------------------------------------------------------------ testing a run on other data (core.evaluate)


def start_evaluation(run_id: str, run_dir: str) -> None:
    jobs = evaluation_jobs()
    running = jobs.get("job")
    if running is not None and running.running:
        st.session_state["train_eval_message"] = f"An evaluation is running (run {jobs['run']}): wait for it to end."
        return
    kind = st.session_state.get("train_eval_kind", "default")
    folder = (st.session_state.get("train_eval_folder") or "").strip()
    if kind == "folder" and not folder:
        st.session_state["train_eval_message"] = "Type the folder holding NMNIST/<split>/<digit>/*.bin first."
        return
    data = default_source().root if kind == "default" else Path(folder).expanduser()
    split = st.session_state.get("train_eval_split", "Test")
    samples = int(st.session_state.get("train_eval_samples", 1000) or 0) or None
    exclude = bool(st.session_state.get("train_eval_exclude", True))

    def work(progress: Any) -> EvaluationResult:
        return evaluate(run_dir, data, split, exclude_trained_images=exclude, max_samples=samples, progress=progress)

    jobs.update(run=run_id, job=ProgressJob(work, name=f"evaluate-{run_id}").start(), what=f"{data} {split}")
    st.session_state["train_eval_message"] = None


def evaluate_ui(run_id: str, run_dir: Path) -> None:
    """"Evaluate this run on…": a data source (the default simulated set or a folder), then its results, kept with the run."""
    saved = saved_evaluations(run_dir)
    jobs = evaluation_jobs()
    running = jobs.get("job") if jobs.get("run") == run_id else None
    with st.expander("Evaluate this run on other data", expanded=bool(saved) or running is not None):
        st.session_state.setdefault("train_eval_folder", "" if st.session_state["sel_data"] == DEFAULT_DATA
                                    else str(st.session_state["sel_data"]))
        cols = st.columns([2, 3])
        cols[0].radio("data", ["default", "folder"], key="train_eval_kind", horizontal=True,
                      format_func={"default": "the default simulated set", "folder": "a folder"}.get)
        if st.session_state.get("train_eval_kind") == "folder":  # fields that do not apply are hidden
            cols[1].text_input("folder (ROOT holding NMNIST/Train and NMNIST/Test)", key="train_eval_folder")
        cols = st.columns([2, 3])
        cols[0].radio("split", ["Test", "Train"], key="train_eval_split", horizontal=True)
        cols[1].number_input("samples (0 = all)", min_value=0, value=1000, step=100, key="train_eval_samples")
        st.checkbox("leave out recordings of images its data used (a fair test)", value=True, key="train_eval_exclude",
                    help="N-MNIST Test recording k is MNIST test image k-1, and the default set is simulated from "
                         "MNIST test images: a fair test leaves those out")
        st.button("Evaluate", key=f"train_eval_{run_id}", on_click=start_evaluation, args=(run_id, str(run_dir)),
                  disabled=running is not None and running.running)
        message = st.session_state.get("train_eval_message")
        if message:
            st.warning(escape_markdown(message, limit=400))
        if running is not None:
            evaluation_progress(running)
        if saved:
            rows = [dict(data=f"{r.data_kind}{f' from {r.data_source}' if r.data_source else ''} ({Path(r.data_root).name})",
                         split=r.split, samples=r.samples, left_out=r.excluded, accuracy=r.accuracy,
                         activation_sparsity=(r.metrics or {}).get("activation_sparsity"),
                         trained_on_it=r.same_data) for r in saved]
            st.dataframe(rows, hide_index=True, width="stretch", key=f"train_evals_{run_id}",
                         column_config={"accuracy": st.column_config.NumberColumn(format="percent"),
                                        "activation_sparsity": st.column_config.NumberColumn(
                                            "activation sparsity", format="percent")})
            latest = saved[0]
            st.markdown(f"**{latest.accuracy:.1%}** on {latest.samples:,} {escape_markdown(latest.split)} recordings of "
                        f"{escape_markdown(latest.data_root)}" + (" (the data it trained on)" if latest.same_data else ""))
            evaluation_metrics_ui(latest.metrics)
            confusion_ui(latest.confusion, latest.per_class_accuracy, f"train_eval_confusion_{run_id}")


def evaluation_metrics_ui(metrics: dict[str, Any] | None) -> None:
    """NeuroBench's metrics of a saved evaluation: a row of numbers, and a caption saying what they were measured on."""
    if not metrics or metrics.get("activation_sparsity") is None:
        st.caption("NeuroBench metrics: not measured for this evaluation.")
        return
    ops = metrics.get("synaptic_operations") or {}
    row = [*st.columns(3), *st.columns(3)[:2]]  # two rows: five in one row were cut to "86.…" at 1000 px
    row[0].metric("activation sparsity", f"{metrics['activation_sparsity']:.1%}",
                  help="NeuroBench: the share of neuron outputs (all spiking layers, steps, samples) with no spike")
    row[1].metric("ACs / sample", format_count(ops.get("Effective_ACs")),
                  help="NeuroBench's effective accumulates: those a sample's spikes cause in the Conv2d and Linear "
                       "layers")
    row[2].metric("MACs / sample", format_count(ops.get("Effective_MACs")),
                  help="NeuroBench's effective multiply-accumulates: a layer's operations at a step where its input "
                       "holds event counts above 1")
    row[3].metric("footprint", f"{metrics['footprint_bytes'] / 1000:.1f} kB",
                  help="NeuroBench: the bytes of the network's parameters and buffers")
    row[4].metric("connection sparsity", f"{metrics['connection_sparsity']:.1%}",
                  help="NeuroBench: the share of zero weights in the Conv2d and Linear layers")
    st.caption(f"NeuroBench metrics on {metrics.get('metrics_samples')} of these recordings, evenly spread "
               f"({metrics.get('metrics_time_steps')} time steps), measured with the tutorial's step-by-step loop; "
               f"a dense network would do {format_count(ops.get('Dense'))} operations per sample.")


def evaluation_progress(job: ProgressJob) -> None:
    @st.fragment(run_every=1.0 if job.running else None)
    def draw() -> None:
        state = job.snapshot()
        if state.error is not None:
            problem = state.error.split(": ", 1)[-1] if state.error.startswith(EvaluationError.__name__) else state.error
            st.error(f"The evaluation failed: {escape_markdown(problem, limit=600)}", icon=ERROR_ICON)
            return
        if state.running:
            st.progress(state.fraction, text=f"evaluating: {state.done:,} of {state.total:,} recordings")
        elif job.result is not None and not st.session_state.get(f"train_eval_seen_{id(job)}"):
            st.session_state[f"train_eval_seen_{id(job)}"] = True
            st.rerun()

    draw()


# ------------------------------------------------------------------ past runs (live while a run trains)


def past_runs_ui() -> None:
    """The run list and the comparison; while a run trains both follow it (the chart less often: see LIVE_*)."""
    active = reg.active() is not None

    @st.fragment(run_every=LIVE_RUNS_SECONDS if active else None)
    def table() -> None:
        runs = store.list_runs()
        st.subheader("Past runs")
        if not runs:
            st.caption("No runs yet.")
            return
        current = reg.active()
        rows = []
        for r in runs:
            status, iterations = r.status, r.iterations
            if current is not None and current.run_id == r.run_id:  # the live job knows more than its folder
                snap = current.snapshot()
                status, iterations = snap.status, snap.iteration
            rows.append(dict(run=r.run_id, status=status, data=r.data_label, samples=r.train_samples, lr=r.lr,
                             batch=r.batch_size, loss=r.loss, transform=r.transform, iterations=iterations,
                             seconds=round(r.seconds, 1), test_accuracy=r.test_accuracy, problem=r.damaged))
        st.dataframe(rows, width="stretch", hide_index=True, key="train_runs",
                     column_config={"test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
                                    "samples": st.column_config.NumberColumn("train samples"),
                                    "lr": st.column_config.NumberColumn("learning rate", format="%g")})
        if active and reg.active() is None:
            st.rerun()  # the run has ended: the whole page

    @st.fragment(run_every=LIVE_COMPARE_SECONDS if active else None)
    def comparison() -> None:
        runs = store.list_runs()
        if runs:
            compare_ui(runs)

    table()
    comparison()


def run_stamp(run_dir: Path) -> tuple[tuple[int, int] | None, ...]:
    """The state of a run's files that its curves and label are read from: (mtime, size) of each, None if missing."""
    stamps = []
    for name in (CONFIG_FILE, METRICS_FILE, RESULTS_FILE):
        try:
            stat = (run_dir / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


@st.cache_resource(show_spinner=False, max_entries=16)  # see pages.common.FIGURE_CACHE
def comparison_figure(root: str, run_ids: tuple[str, ...], stamps: tuple[Any, ...], raw: bool) -> go.Figure:
    """The comparison chart of ``run_ids`` as their files stand (``stamps``): built once, not on every rerun of the
    page (a preset switch, a form field) where it took 0.3 to 0.5 s of the script."""
    curves = store.compare(list(run_ids))
    return figures.compare_runs_figure(
        [dict(label=c.label, loss_name=c.loss_name, iteration=c.iteration, loss=c.loss, accuracy=c.accuracy,
              test_iteration=c.eval_iteration, test_accuracy=c.test_accuracy) for c in curves],
        raw=raw, chance=0.1,
    )


def compare_ui(runs: list[RunInfo]) -> None:
    """Compare runs like with like: accuracies across all, losses per loss function; new runs join at once."""
    ids = [r.run_id for r in runs]
    seen = set(st.session_state["train_compare_seen"])
    chosen = [r for r in st.session_state["train_compare"] if r in ids]
    if not seen:  # a session's first look: the three newest
        chosen = chosen or ids[:3]
    else:  # a run started or stopped since (here or in another session) joins the comparison
        chosen = [r for r in ids if r not in seen] + chosen
    st.session_state["train_compare_seen"] = ids
    st.session_state["train_compare"] = list(dict.fromkeys(chosen))
    picked = st.multiselect("Compare runs", ids, key="train_compare")
    if not picked:
        return
    figure = comparison_figure(str(store.root), tuple(picked), tuple(run_stamp(store.root / r) for r in picked),
                               st.session_state.get("train_raw", False))
    st.plotly_chart(figure, width="stretch", key="train_compare_chart")
    st.caption("Accuracies compare across runs. Losses compare only between runs of the same loss function "
               "(an mse_count loss is ~10 times a ce_rate one), so each loss function has its own panel.")


# ------------------------------------------------------------------ page

st.title("Training")
message = st.session_state["train_message"]
if message:
    kind, text = message
    {"warning": st.warning, "error": st.error, "info": st.info}[kind](escape_markdown(text, limit=800))
    st.session_state["train_message"] = None  # said once

runs = store.list_runs()
ids = [r.run_id for r in runs]
active = reg.active()
shown = st.session_state["train_shown"]
if shown is None:  # nothing chosen: the running job, else the last one this server ran
    current = reg.current()
    shown = current.run_id if current is not None and current.run_id in ids else None
if shown is not None and shown not in ids and reg.get(shown) is None:
    if st.query_params.get("run") == shown:
        st.warning(f"There is no run {escape_markdown(shown)} in {escape_markdown(store.root)}; none is shown.")
    shown = None
    st.session_state["train_shown"] = None
options = [NO_RUN, *ids] if shown is None or shown in ids else [NO_RUN, shown, *ids]
if st.session_state.get("train_show") != (shown or NO_RUN):
    st.session_state["train_show"] = shown or NO_RUN
top = st.columns([3, 1], vertical_alignment="bottom")
# the options read as the run ids alone: a label that changed as the run went on (its status, its accuracy)
# would leave the browser showing the old one
top[0].selectbox("Run shown", options, key="train_show", on_change=lambda: show_run(st.session_state["train_show"] or None),
                 format_func=lambda r: "–" if r == NO_RUN else r,
                 help="the run whose results are shown below; the URL names it, so a copied link shows it too")
top[1].toggle("raw values", key="train_raw", help="the training curves are smoothed; show the raw minibatch values too")
if shown:
    st.query_params["run"] = shown
elif "run" in st.query_params:
    del st.query_params["run"]
if st.query_params.get("preset") != preset_name():
    st.query_params["preset"] = preset_name()
write_query_params("sel_data")

if active is not None and active.run_id != shown:
    snap = active.snapshot()
    cols = st.columns([4, 1], vertical_alignment="center")
    cols[0].info(f"Run {escape_markdown(snap.run_id)} is training: {snap.iteration:,} of {snap.max_iters:,} iterations.")
    cols[1].button("Show it", key="train_show_active", on_click=show_run, args=(snap.run_id,), width="stretch")

if shown:
    job = reg.get(shown)
    if job is not None:
        job_view(job)
    else:
        draw_stored(shown)
else:
    st.caption("No run shown: start one below, or choose a past run.")

# While a run trains, its live view is what matters: the form folds under it (one click opens it). An
# expander only then, not one whose state the page sets: a new element each time, nothing to fall out of step.
with st.expander("New run", expanded=False) if active is not None else st.container(border=True):
    if active is None:
        st.markdown("**New run**")
    new_run_ui()
estimate_ui()

past_runs_ui()

# After Start, the live view is at the top of the page: bring it where the eye is, once (a fixed script, no input in it).
if st.session_state.pop("train_scroll_top", False):
    st.html(SCROLL_TO_TOP, unsafe_allow_javascript=True)
