"""Training: configure, estimate, launch a background job, watch it live, compare past runs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import streamlit as st

from core import figures
from core.model import RESET_MECHANISMS, SURROGATES
from core.runs import RunStore, default_runs_root
from core.training import (
    LOSSES,
    PRESETS,
    ConfigError,
    JobBusyError,
    JobRegistry,
    JobSnapshot,
    TrainConfig,
    TrainingJob,
    estimate_iteration_seconds,
)
from pages.common import DEFAULT_DATA, init_selection, require_data

init_selection()
source = require_data()
st.session_state.setdefault("train_preset", "quick")
st.session_state.setdefault("train_estimate", None)
st.session_state.setdefault("train_errors", {})
st.session_state.setdefault("train_message", None)


@st.cache_resource(show_spinner=False)
def registry(runs_root: str) -> JobRegistry:
    """One registry per server (all sessions): it refuses a second training while one runs."""
    return JobRegistry(RunStore(runs_root))


@st.cache_data(show_spinner="Timing one training step on a few samples…", max_entries=32)
def estimate(config: TrainConfig) -> float:
    return estimate_iteration_seconds(config)


def data_fields() -> dict[str, Any]:
    """The data part of a config: the source chosen on Home."""
    if st.session_state["sel_data"] == DEFAULT_DATA:
        return dict(data_root=None, data_kind="auto")
    return dict(data_root=str(source.root), data_kind=source.kind)


def config_ui(base: TrainConfig) -> tuple[dict[str, Any], bool, bool]:
    """The form: model and training fields (defaults from the preset); returns (fields, estimate?, start?)."""
    p = st.session_state["train_preset"]
    errors: dict[str, str] = st.session_state["train_errors"]

    def note(field: str) -> None:
        if field in errors:
            st.error(errors[field], icon=":material/error:")

    m = base.model
    with st.form(key=f"train_form_{p}"):
        st.markdown("**Model** (the tutorial's 12C5-MP2-32C5-MP2-800FC10 with Leaky neurons)")
        c = st.columns(4)
        with c[0]:
            beta = st.number_input("beta (membrane decay)", value=float(m.beta), step=0.05, format="%.3f", key=f"f_{p}_beta")
            note("model.beta")
        with c[1]:
            threshold = st.number_input("threshold", value=float(m.threshold), step=0.1, key=f"f_{p}_threshold")
            note("model.threshold")
        with c[2]:
            surrogate = st.selectbox("surrogate gradient", list(SURROGATES), index=list(SURROGATES).index(m.surrogate),
                                     key=f"f_{p}_surrogate")
        with c[3]:
            reset = st.selectbox("reset", list(RESET_MECHANISMS), index=list(RESET_MECHANISMS).index(m.reset_mechanism),
                                 key=f"f_{p}_reset")
        c = st.columns(4)
        learn_beta = c[0].checkbox("learn beta", value=m.learn_beta, key=f"f_{p}_learn_beta")
        learn_threshold = c[1].checkbox("learn threshold", value=m.learn_threshold, key=f"f_{p}_learn_threshold")

        st.markdown("**Training**")
        c = st.columns(4)
        with c[0]:
            batch_size = st.number_input("batch size", value=base.batch_size, step=1, key=f"f_{p}_batch")
            note("batch_size")
        with c[1]:
            lr = st.number_input("learning rate (Adam)", value=base.lr, step=1e-3, format="%.4f", key=f"f_{p}_lr")
            note("lr")
        with c[2]:
            max_iters = st.number_input("iterations", value=base.max_iters, step=1, key=f"f_{p}_iters")
            note("max_iters")
        with c[3]:
            max_seconds = st.number_input("time limit (s, 0 = none)", value=float(base.max_seconds or 0.0), step=10.0,
                                          key=f"f_{p}_seconds")
            note("max_seconds")
        c = st.columns(4)
        with c[0]:
            loss = st.selectbox("loss", list(LOSSES), index=list(LOSSES).index(base.loss), key=f"f_{p}_loss")
        with c[1]:
            correct_rate = st.number_input("correct rate (mse_count)", value=base.correct_rate, step=0.05, key=f"f_{p}_cr")
            note("correct_rate")
        with c[2]:
            incorrect_rate = st.number_input("incorrect rate (mse_count)", value=base.incorrect_rate, step=0.05,
                                             key=f"f_{p}_ir")
            note("incorrect_rate")
        with c[3]:
            rotation = st.number_input("random rotation (± degrees)", value=base.augment_rotation, step=1.0, key=f"f_{p}_rot")
            note("augment_rotation")
        c = st.columns(4)
        with c[0]:
            eval_every = st.number_input("test every N iterations (0 = at the end)", value=base.eval_every, step=1,
                                         key=f"f_{p}_eval_every")
            note("eval_every")
        with c[1]:
            eval_samples = st.number_input("test samples (0 = all)", value=int(base.eval_samples or 0), step=1,
                                           key=f"f_{p}_eval_samples")
            note("eval_samples")
        with c[2]:
            seed = st.number_input("seed", value=base.seed, step=1, key=f"f_{p}_seed")
            note("seed")
        st.session_state.setdefault(f"f_{p}_transform", json.dumps(json.loads(base.transform)))
        transform = st.text_area("transform (JSON, ending in ToFrame; the Transforms page builds one)",
                                 key=f"f_{p}_transform", height=68)
        note("transform")
        note("data_root")
        note("model")
        b = st.columns([2, 2, 3])
        do_estimate = b[0].form_submit_button("Estimate time per iteration")
        do_start = b[1].form_submit_button("Start training", type="primary")
    fields = dict(
        model=dict(beta=beta, threshold=threshold, surrogate=surrogate, reset_mechanism=reset,
                   learn_beta=learn_beta, learn_threshold=learn_threshold),
        batch_size=int(batch_size), lr=float(lr), max_iters=int(max_iters),
        max_seconds=float(max_seconds) or None, loss=loss, correct_rate=float(correct_rate),
        incorrect_rate=float(incorrect_rate), augment_rotation=float(rotation), eval_every=int(eval_every),
        eval_samples=int(eval_samples) or None, seed=int(seed), transform=transform,
    )
    return fields, do_estimate, do_start


def make_config(base: TrainConfig, fields: dict[str, Any]) -> TrainConfig | None:
    """The config from the form, or None with the error stored under its field (shown next to the widget)."""
    fields = dict(fields)
    model_fields = fields.pop("model")
    try:
        try:
            model = dataclasses.replace(base.model, **model_fields)
        except ValueError as exc:  # ModelConfigError names the field
            field = getattr(exc, "field", "model")
            raise ConfigError(f"model.{field}" if field != "model" else field, getattr(exc, "problem", str(exc))) from None
        config = dataclasses.replace(base, model=model, **fields, **data_fields())
    except ConfigError as exc:
        st.session_state["train_errors"] = {exc.field: str(exc)}
        return None
    st.session_state["train_errors"] = {}
    return config


def histories_of(snap: JobSnapshot) -> dict[str, dict[str, list[float]]]:
    return {snap.run_id: dict(
        iteration=[r.iteration for r in snap.iterations], loss=[r.loss for r in snap.iterations],
        accuracy=[r.accuracy for r in snap.iterations], test_iteration=[e.iteration for e in snap.evals],
        test_accuracy=[e.accuracy for e in snap.evals],
    )}


def draw_job(job: TrainingJob) -> None:
    """The job's progress, live charts and stop button; polls while the job runs, then draws results."""
    snap = job.snapshot()
    st.subheader(f"Run {snap.run_id}")
    c = st.columns(5)
    c[0].metric("status", snap.status)
    c[1].metric("iteration", f"{snap.iteration} / {snap.max_iters}")
    c[2].metric("loss", f"{snap.iterations[-1].loss:.4f}" if snap.iterations else "–")
    c[3].metric("minibatch accuracy", f"{snap.iterations[-1].accuracy:.1%}" if snap.iterations else "–")
    eta = snap.eta_seconds
    c[4].metric("ETA", "–" if eta is None else f"{eta:.0f} s", help="remaining time at the recent pace")
    if snap.prepare is not None and snap.status == "preparing":
        frac = snap.prepare.done / snap.prepare.total if snap.prepare.total else 0.0
        st.progress(frac, text=f"preparing {snap.prepare.split} frames: {snap.prepare.done}/{snap.prepare.total}")
    else:
        st.progress(snap.progress, text=f"{snap.progress:.0%} · {snap.train_seconds:.0f} s of training")
    if not snap.done:
        st.button("Stop training", key="train_stop", icon=":material/stop_circle:", on_click=job.stop, type="secondary")
    if snap.iterations:
        st.plotly_chart(figures.training_curves_figure(histories_of(snap)), width="stretch", key="train_live")
    if snap.error:
        st.error(f"The run stopped: {snap.error}")
    elif snap.reason and snap.done:
        st.caption(f"Ended: {snap.reason}")
    if snap.done:
        result_ui(snap)
    with st.expander("Log"):
        st.code("\n".join(snap.log[-200:]) or "(empty)", language=None)


def result_ui(snap: JobSnapshot) -> None:
    last = snap.last_eval
    if last is None:
        st.info("No test evaluation was made.")
        return
    st.markdown(f"**Test accuracy {last.accuracy:.1%}** on {last.samples} samples after {last.iteration} iterations")
    left, right = st.columns(2)
    left.plotly_chart(figures.confusion_matrix_figure(last.confusion), width="stretch", key="train_confusion")
    per_class = {str(k): (v if v is not None else float("nan")) for k, v in enumerate(last.per_class_accuracy)}
    right.bar_chart(per_class, height=400, x_label="digit", y_label="test accuracy")


def job_view(job: TrainingJob) -> None:
    """A fragment that reruns every second while the job is active, and not at all once it has ended."""
    active = job.active

    @st.fragment(run_every=1.0 if active else None)
    def live() -> None:
        draw_job(job)
        if active and not job.active:
            st.rerun()  # redraw the whole page without polling

    live()


# ------------------------------------------------------------------ page

st.title("Training")
reg = registry(str(default_runs_root()))
left, right = st.columns([1, 3], vertical_alignment="bottom")
preset_name = left.selectbox("Preset", list(PRESETS), key="train_preset",
                             help="tutorial: the tutorial's exact settings; quick: learns within a minute on a CPU")
right.caption(f"Data: {source.label} (change it on Home). One training at a time runs on this machine.")
base = PRESETS[preset_name]
built = st.session_state.get("tf_pipeline_json")
if built and json.loads(built) and json.loads(built)[-1].get("name") == "ToFrame":
    def use_built() -> None:
        st.session_state[f"f_{preset_name}_transform"] = built

    st.button("Use the pipeline from the Transforms page", key="train_use_pipeline", on_click=use_built,
              icon=":material/input:", help=built)
fields, do_estimate, do_start = config_ui(base)
if do_estimate or do_start:
    config = make_config(base, fields)
    if config is None:
        st.rerun()  # show the message next to its widget
    if do_estimate:
        try:
            st.session_state["train_estimate"] = (estimate(config), config.batch_size)
        except (ConfigError, ValueError, RuntimeError) as exc:
            st.session_state["train_estimate"] = None
            st.error(f"Cannot estimate: {exc}")
    if do_start:
        try:
            job = reg.submit(config)
            st.session_state["train_run"] = job.run_id
            st.session_state["train_message"] = None
        except JobBusyError as exc:
            st.session_state["train_message"] = str(exc)
        except ConfigError as exc:
            st.session_state["train_errors"] = {exc.field: str(exc)}
            st.rerun()
if st.session_state["train_estimate"] is not None:
    seconds, batch = st.session_state["train_estimate"]
    st.info(f"Estimated time per iteration: **{seconds:.2f} s** (batch {batch}, measured on this machine)", icon=":material/timer:")
if st.session_state["train_message"]:
    st.warning(st.session_state["train_message"], icon=":material/traffic:")

job = reg.current()
if job is not None:
    job_view(job)

st.divider()
st.subheader("Past runs")
runs = reg.store.list_runs()
if not runs:
    st.caption("No runs yet.")
else:
    rows = [dict(run=r.run_id, preset=r.preset, status=r.status, iterations=r.iterations, seconds=round(r.seconds, 1),
                 test_accuracy=r.test_accuracy, checkpoint=r.has_checkpoint) for r in runs]
    st.dataframe(rows, width="stretch", hide_index=True, key="train_runs",
                 column_config={"test_accuracy": st.column_config.NumberColumn(format="percent")})
    chosen = st.multiselect("Compare runs", [r.run_id for r in runs], default=[r.run_id for r in runs[:3]],
                            key="train_compare")
    if chosen:
        curves = reg.store.compare(chosen)
        histories = {c.label: dict(iteration=list(c.iteration), loss=list(c.loss), accuracy=list(c.accuracy),
                                   test_iteration=list(c.eval_iteration), test_accuracy=list(c.test_accuracy))
                     for c in curves}
        st.plotly_chart(figures.training_curves_figure(histories), width="stretch", key="train_compare_chart")
