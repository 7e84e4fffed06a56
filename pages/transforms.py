"""Transforms: build a Tonic pipeline from the transform specs and see what it does to the selected sample."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import figures
from core.events import SENSOR_SIZE
from core.transforms import TRANSFORMS, TUTORIAL_JSON, Pipeline, TransformSpecError, from_json, spec_from_dict
from pages.common import init_selection, require_data, sample_ui

MAX_ANIMATION_FRAMES = 320  # longer outputs are shown every k-th frame (the tensor itself is not touched)

init_selection()
source = require_data()


def _steps_from_url() -> list[dict[str, Any]]:
    raw = st.query_params.get("pipeline")
    if raw:
        try:
            steps = json.loads(raw)
            if isinstance(steps, list) and all(isinstance(s, dict) and "name" in s for s in steps):
                return steps
        except json.JSONDecodeError:
            pass
    return [dict(s) for s in TUTORIAL_JSON]


if "tf_steps" not in st.session_state:
    # each step keeps a stable id so that its widgets keep their keys when steps move
    st.session_state["tf_steps"] = [{"id": i, **s} for i, s in enumerate(_steps_from_url())]
    st.session_state["tf_next_id"] = len(st.session_state["tf_steps"])
st.session_state.setdefault("tf_seed", int(st.query_params.get("seed", 0)) if str(st.query_params.get("seed", "0")).isdigit() else 0)
st.session_state["tf_seed"] = st.session_state["tf_seed"]


def plain_steps() -> list[dict[str, Any]]:
    """The pipeline as JSON steps (without the widget ids)."""
    return [{k: v for k, v in s.items() if k != "id"} for s in st.session_state["tf_steps"]]


# ------------------------------------------------------------------ editing


def _move(i: int, delta: int) -> None:
    steps = st.session_state["tf_steps"]
    j = i + delta
    if 0 <= j < len(steps):
        steps[i], steps[j] = steps[j], steps[i]


def _remove(i: int) -> None:
    del st.session_state["tf_steps"][i]


def _add() -> None:
    name = st.session_state["tf_add_name"]
    defaults = {}
    if name == "ToFrame":
        defaults = {"time_window": 1000}
    st.session_state["tf_steps"].append({"id": st.session_state["tf_next_id"], "name": name, **defaults})
    st.session_state["tf_next_id"] += 1


def _reset() -> None:
    st.session_state["tf_steps"] = [{"id": st.session_state["tf_next_id"] + i, **s} for i, s in enumerate(TUTORIAL_JSON)]
    st.session_state["tf_next_id"] += len(TUTORIAL_JSON)


def param_widget(step_id: int, field: dataclasses.Field, value: Any) -> Any:
    """A widget for one parameter, chosen by its type; returns the value typed (None where left empty)."""
    key = f"tf_{step_id}_{field.name}"
    kind = str(field.type)
    label = field.name
    if kind == "bool":
        return st.checkbox(label, value=bool(value), key=key)
    if "tuple" in kind:
        text = st.text_input(f"{label} (number or JSON pair)", value=json.dumps(value), key=key)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # the spec's check names the field and says what is wrong
    optional = "None" in kind
    if "float" in kind:
        value = None if value is None else float(value)
        step = 1.0 if value is None or abs(value) >= 1 else 0.05
        return st.number_input(label + (" (empty = off)" if optional else ""), value=value, step=step, key=key)
    if "int" in kind:
        value = None if value is None else int(value)
        return st.number_input(label + (" (empty = off)" if optional else ""), value=value, step=1, key=key)
    text = st.text_input(label, value=json.dumps(value), key=key)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def step_ui(i: int, step: dict[str, Any], n: int) -> str | None:
    """One step's parameters, move/remove buttons and its own error; returns the error (or None)."""
    cls = TRANSFORMS.get(step["name"])
    head, up, down, remove = st.columns([6, 1, 1, 1], vertical_alignment="center")
    head.markdown(f"**{i + 1}. {step['name']}**" + (f" — {cls.__doc__.splitlines()[0]}" if cls and cls.__doc__ else ""))
    up.button("", icon=":material/arrow_upward:", key=f"tf_up_{step['id']}", on_click=_move, args=(i, -1), disabled=i == 0, help="move up")
    down.button("", icon=":material/arrow_downward:", key=f"tf_down_{step['id']}", on_click=_move, args=(i, 1), disabled=i == n - 1, help="move down")
    remove.button("", icon=":material/delete:", key=f"tf_rm_{step['id']}", on_click=_remove, args=(i,), help="remove this step")
    if cls is None:
        return f"{step['name']} is not a supported transform"
    fields = dataclasses.fields(cls)
    columns = st.columns(max(1, min(2, len(fields))))
    errors: dict[str, Any] = {}
    for k, field in enumerate(fields):
        with columns[k % len(columns)]:
            current = step.get(field.name, field.default)
            new = param_widget(step["id"], field, current)
            if new is None or new == field.default:
                step.pop(field.name, None)
                if new is None and field.default is not None:
                    step[field.name] = None
            else:
                step[field.name] = new
            errors[field.name] = st.empty()  # the message goes right under its widget
    try:
        spec_from_dict({k: v for k, v in step.items() if k != "id"}, i)
    except TransformSpecError as exc:
        name = exc.field.split(".", 1)[1] if "." in exc.field else None
        target = errors.get(name) if name else None
        (target if target is not None else st).error(str(exc), icon=":material/error:")
        return str(exc)
    return None


def pipeline_ui() -> tuple[Pipeline | None, int]:
    """The pipeline editor; returns the built pipeline (None while a parameter is invalid) and the random seed."""
    steps = st.session_state["tf_steps"]
    problems = []
    for i, step in enumerate(steps):
        with st.container(border=True):
            error = step_ui(i, step, len(steps))
        if error:
            problems.append(error)
    left, mid, right = st.columns([3, 2, 2], vertical_alignment="bottom")
    left.selectbox("Add a step", list(TRANSFORMS), key="tf_add_name")
    mid.button("Add", key="tf_add", icon=":material/add:", on_click=_add, width="stretch")
    right.button("Tutorial", key="tf_reset", icon=":material/restart_alt:", on_click=_reset, width="stretch",
                 help="reset to the tutorial's Denoise + ToFrame")
    seed = st.number_input("Seed of the random steps", min_value=0, step=1, key="tf_seed")
    st.query_params["pipeline"] = json.dumps(plain_steps(), separators=(",", ":"))
    st.query_params["seed"] = str(seed)
    if problems:
        return None, int(seed)
    try:
        return from_json(plain_steps(), SENSOR_SIZE), int(seed)  # every N-MNIST source has the 34 x 34 sensor
    except TransformSpecError as exc:
        st.error(f"The steps do not fit together: {exc}", icon=":material/error:")
        return None, int(seed)


# ------------------------------------------------------------------ results (cached)


@st.cache_data(show_spinner=False, max_entries=64)
def run_pipeline(pipeline_key: str, sample_key: str, seed: int, _pipeline: Pipeline,
                 _events: np.ndarray) -> tuple[np.ndarray, Any]:
    """(events after the event steps, final output) for one sample."""
    event_steps = Pipeline(_pipeline.steps[:-1], _pipeline.sensor_size) if _pipeline.is_frame else _pipeline
    rng = np.random.RandomState(seed)
    after = event_steps(_events, rng=rng) if event_steps.steps else _events
    if not _pipeline.is_frame:
        return after, after
    output = _pipeline.frames(_events, seed=seed)
    return after, np.asarray(output)


@st.cache_resource(show_spinner=False, max_entries=64)  # see pages.common.FIGURE_CACHE
def grid_figure(pipeline_key: str, sample_key: str, seed: int, which: str, _events: np.ndarray,
                sensor_size: tuple[int, int, int]) -> go.Figure:
    frames = figures.event_grid_frames(_events, sensor_size) if len(_events) else np.zeros((3, 2, sensor_size[1], sensor_size[0]))
    return figures.event_grid_figure(frames, title=f"{which}: {len(_events):,} events")


@st.cache_resource(show_spinner=False, max_entries=32)  # see pages.common.FIGURE_CACHE
def animation_figure(pipeline_key: str, sample_key: str, seed: int, _frames: np.ndarray) -> go.Figure:
    frames = _frames if _frames.shape[1] == 2 else np.concatenate([np.zeros_like(_frames[:, :1]), _frames[:, :1]], axis=1)
    every = max(1, int(np.ceil(len(frames) / MAX_ANIMATION_FRAMES)))
    shown = frames[::every]
    labels = [str(i) for i in range(0, len(frames), every)]
    title = f"Output frames ({len(frames)}" + (f", every {every}th shown)" if every > 1 else ")")
    return figures.frames_figure(shown, labels, title=title)


# ------------------------------------------------------------------ page

st.title("Transforms")
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
sample_key = f"{source.key}:{split}/{index}"

editor, results = st.columns([5, 6], gap="large")
with editor:
    st.subheader("Pipeline")
    pipeline, seed = pipeline_ui()
with results:
    st.subheader(f"{split} sample {index} (digit {label})")
    if pipeline is None:
        st.info("Fix the parameter marked on the left to see the result.")
        st.stop()
    after, output = run_pipeline(pipeline.key, sample_key, seed, pipeline, events)
    kept = len(after)
    m = st.columns(3)
    m[0].metric("events before", f"{len(events):,}")
    m[1].metric("events kept", f"{kept:,}")
    m[2].metric("removed", f"{len(events) - kept:,}", delta=f"-{(len(events) - kept) / max(1, len(events)):.1%}",
                delta_color="off")
    st.plotly_chart(grid_figure("raw", sample_key, 0, "before", events, pipeline.sensor_size),
                    width="stretch", key="tf_grid_before")
    event_size = pipeline.sensor_sizes[-2] if pipeline.is_frame else pipeline.output_sensor_size
    st.plotly_chart(grid_figure(pipeline.key, sample_key, seed, "after", after, event_size),
                    width="stretch", key="tf_grid_after")
    if pipeline.is_frame:
        frames = output
        t, c, h, w = frames.shape
        as_float = t * c * h * w * 4
        m = st.columns([5, 3, 3])
        m[0].metric("tensor shape (T, C, H, W)", f"({t}, {c}, {h}, {w})")
        m[1].metric(f"memory ({frames.dtype})", f"{frames.nbytes / 1024:,.1f} KiB")
        m[2].metric("as float32, batch of 128", f"{as_float * 128 / 2**20:,.1f} MiB")
        st.plotly_chart(animation_figure(pipeline.key, sample_key, seed, frames), width="stretch",
                        key="tf_frames")
    else:
        st.info("The pipeline ends in events; add ToFrame (or ToVoxelGrid / ToTimesurface) to make frames for training.")
    if pipeline.is_random:
        st.caption(f"Random steps drawn with seed {seed}.")
st.subheader("The same pipeline in Tonic")
st.code(pipeline.to_code(), language="python")
st.session_state["tf_pipeline_json"] = json.dumps(plain_steps())
