"""Transforms: build a Tonic pipeline step by step and see, at once, what it does to the selected sample.

The loop of a person tuning by hand: change a value on the left, see its effect on
the right within a second. Each step is a card with only the fields that apply
(ToFrame shows the fields of its one chosen slicing), in the field's units. A
problem is marked on the step that has it, and the right keeps what still holds:
the recording before the pipeline and the Tonic code of the steps before the
faulty one. Work is estimated before it runs (``core.transforms.preview``
refuses a step past ``limits().sample_frames_bytes``), and results are kept in
a cache bounded by bytes (small summaries and figures, never whole frame tensors).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import figures
from core.events import SENSOR_SIZE
from core.limits import LimitExceeded, format_bytes, limits
from core.text import escape_markdown
from core.transforms import (
    SLICINGS,
    TRANSFORMS,
    TUTORIAL_JSON,
    ByteCache,
    Param,
    Pipeline,
    Preview,
    StepTooLarge,
    ToFrame,
    TransformSpecError,
    params_of,
    parse_steps,
    preview,
    spec_from_dict,
    with_slicing,
)
from pages.common import init_selection, require_data, sample_ui

TUTORIAL_BATCH = 128  # tutorial 7's batch size, for the "in training" estimate
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds below 2**32
# The frames animation's width: about square with its slider under it; on the full width of a wide window plotly
# would centre a 250 px image between white bands (its height sets the image's size). A narrower column shrinks it.
FRAMES_WIDTH_PX = 560
MAX_DRAWN_SIDE = 256  # a sensor wider or taller (after Downsample, or a CenterCrop of 60000 x 1) is not drawn
JS_SAFE_INTEGER = 2**53 - 1  # a number input holds no larger integer
SLICING_HELP = "How ToFrame cuts the recording into frames; only that method's fields are shown.  \n" + "  \n".join(
    f"**{name}**: {s.label} ({s.unit})" for name, s in SLICINGS.items())

init_selection()
source = require_data()


# ------------------------------------------------------------------ what the link asks for


def _code(text: object, limit: int = 80) -> str:
    """Outside text as an inline code span (markdown shows it literally), on one line and cut at ``limit``."""
    value = " ".join(str(text).splitlines())
    if len(value) > limit:
        value = value[:limit] + "…"
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", value)), default=0))
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _say(exc: Exception) -> str:
    """An error about a spec or a budget, as markdown: the field in code, the rest escaped."""
    if isinstance(exc, StepTooLarge):
        rest = str(exc).removeprefix(exc.estimate.setting)
        return f"{_code(exc.estimate.setting)}{escape_markdown(rest)}"
    if isinstance(exc, TransformSpecError):
        return f"{_code(exc.field)} {escape_markdown(exc.problem)}"
    return escape_markdown(exc)


def _steps_from_url() -> tuple[list[dict[str, Any]], str | None]:
    """The steps the link asks for, or the tutorial's with a sentence saying why the link's were not usable."""
    raw = st.query_params.get("pipeline")
    if raw is None:
        return [dict(s) for s in TUTORIAL_JSON], None
    try:
        return [dict(s) for s in parse_steps(raw)], None
    except TransformSpecError as exc:
        return [dict(s) for s in TUTORIAL_JSON], f"The link's {_say(exc)}."


def _seed_from_url() -> tuple[int, str | None]:
    raw = st.query_params.get("seed")
    if raw is None:
        return 0, None
    text = str(raw).strip()
    if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_SEED:
        return int(text), None
    return 0, f"The link's {_code('seed')} must be a whole number from 0 to {MAX_SEED:,}; got {_code(text, 40)}, so it is 0."


if "tf_steps" not in st.session_state:
    # each step keeps a stable id so that its widgets keep their keys when steps move
    steps_, problem_ = _steps_from_url()
    st.session_state["tf_steps"] = [{"id": i, **s} for i, s in enumerate(steps_)]
    st.session_state["tf_next_id"] = len(steps_)
    st.session_state["tf_url_problem"] = (problem_, [dict(s) for s in steps_]) if problem_ else None
    seed_, seed_problem_ = _seed_from_url()
    st.session_state["tf_seed"] = seed_
    st.session_state["tf_seed_problem"] = seed_problem_
st.session_state["tf_seed"] = st.session_state["tf_seed"]  # keep the widget's value across pages


def plain_steps() -> list[dict[str, Any]]:
    """The pipeline as JSON steps (without the widget ids)."""
    return [{k: v for k, v in s.items() if k != "id"} for s in st.session_state["tf_steps"]]


# ------------------------------------------------------------------ editing


def _index_of(step_id: int) -> int | None:
    return next((i for i, s in enumerate(st.session_state["tf_steps"]) if s["id"] == step_id), None)


def _move(i: int, delta: int) -> None:
    steps = st.session_state["tf_steps"]
    j = i + delta
    if 0 <= i < len(steps) and 0 <= j < len(steps):
        steps[i], steps[j] = steps[j], steps[i]


def _remove(i: int) -> None:
    if 0 <= i < len(st.session_state["tf_steps"]):
        del st.session_state["tf_steps"][i]


def _makes_frames(step: dict[str, Any]) -> bool:
    cls = TRANSFORMS.get(step.get("name")) if isinstance(step.get("name"), str) else None
    return cls is not None and cls.produces_frames


def _add() -> None:
    """Add the chosen step before a final frame step (a frame step replaces it), else at the end."""
    name = st.session_state["tf_add_name"]
    new = {"id": st.session_state["tf_next_id"], "name": name}
    if name == "ToFrame":
        new = {"id": new["id"], **with_slicing({}, "time_window")}
    st.session_state["tf_next_id"] += 1
    steps = st.session_state["tf_steps"]
    if steps and _makes_frames(steps[-1]):
        if TRANSFORMS[name].produces_frames:
            steps[-1] = new
        else:
            steps.insert(len(steps) - 1, new)
    else:
        steps.append(new)


def _reset() -> None:
    st.session_state["tf_url_problem"] = None
    st.session_state["tf_steps"] = [{"id": st.session_state["tf_next_id"] + i, **s} for i, s in enumerate(TUTORIAL_JSON)]
    st.session_state["tf_next_id"] += len(TUTORIAL_JSON)


def _switch_slicing(step_id: int) -> None:
    i = _index_of(step_id)
    if i is None:
        return
    step = st.session_state["tf_steps"][i]
    key = f"tf_{step_id}_slicing"
    method = st.session_state[key]
    if method is None:  # cleared: the step keeps its slicing, and the box shows it again
        st.session_state[key] = next((m for m in SLICINGS if step.get(m) is not None), None)
        return
    st.session_state["tf_steps"][i] = {"id": step_id, **with_slicing(step, method)}


def _usable_number(value: Any, kind: str) -> bool:
    """Whether a number input can show ``value`` (else the raw JSON goes in a text field, for the check to name)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value):
        return False
    if kind == "integer":
        return float(value).is_integer() and abs(value) <= JS_SAFE_INTEGER
    return True


def _parse_text(text: str) -> Any:
    """A typed value: JSON where it parses (within bounds), else the text itself (the spec's check says what is wrong)."""
    if not text.strip():
        return None
    if len(text) > 1000 or text.count("[") + text.count("{") > 8:
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _json_text(value: Any) -> str:
    try:
        return "" if value is None else json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def param_widget(step_id: int, param: Param, value: Any, unit: str, extra: bool = False) -> Any:
    """A widget for one parameter, chosen by its kind; returns the value typed (None where left empty).

    ``extra`` marks a parameter that does not apply (given by a link): it shows as
    a clearable text field, so it can be seen and removed.
    """
    key = f"tf_{step_id}_{param.name}"
    name = param.name  # a field of our own spec classes (a link's unknown names are shown by step_ui, escaped)
    label = f"{name} ({unit})" if unit else name
    if extra:
        return _parse_text(st.text_input(f"{label}: does not apply here, clear it", value=_json_text(value),
                                         key=key + "_extra"))
    if param.kind == "flag" and isinstance(value, bool):
        return st.checkbox(label, value=value, key=key)
    if param.kind in ("real", "integer") and _usable_number(value, param.kind):
        integer = param.kind == "integer"
        typed = None if value is None else (int(value) if integer else float(value))
        number = dict(step=1 if integer else 1.0, format="%d" if integer else "%.10g", key=key)
        if param.optional:  # empty = off: created empty (so it can be cleared), its value put in state first
            if key not in st.session_state:
                st.session_state[key] = typed
            # what an empty field means, short enough to show whole in the narrow field of a 1000 px window
            empty = {"start_time": "first event", "end_time": "last event"}.get(param.name, "empty: off")
            return st.number_input(label, value=None, placeholder=empty, **number)
        return st.number_input(label, value=typed, **number)
    if param.kind == "pair" and (value is None or _usable_pair(value)):
        hint = "a number or a JSON pair" + (", empty = off" if param.optional else "")
        return _parse_text(st.text_input(f"{label}: {hint}", value=_json_text(value), key=key))
    # a value of the wrong type from a link: its JSON, for the check below to name and the person to fix
    return _parse_text(st.text_input(label, value=_json_text(value), key=key + "_raw"))


def _usable_pair(value: Any) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)


@dataclass
class StepView:
    """What the editor drew for one step: slots to put its messages in once the whole pipeline is checked."""

    alert: Any  # under the step's fields
    fields: dict[str, Any] = field(default_factory=dict)  # parameter -> the slot right under its widget
    spec: Any = None  # the checked spec, where the step is valid on its own
    error: Exception | None = None


def _card_header(i: int, step: dict[str, Any], n: int, doc: str) -> None:
    head, up, down, remove = st.columns([7, 1, 1, 1], vertical_alignment="center", gap="small")
    name = step["name"] if isinstance(step["name"], str) else _json_text(step["name"])
    head.markdown(f"**{i + 1}. {escape_markdown(name, 60)}**")
    up.button("", icon=":material/arrow_upward:", key=f"tf_up_{step['id']}", on_click=_move, args=(i, -1),
              disabled=i == 0, help="move up")
    down.button("", icon=":material/arrow_downward:", key=f"tf_down_{step['id']}", on_click=_move, args=(i, 1),
                disabled=i == n - 1, help="move down")
    remove.button("", icon=":material/delete:", key=f"tf_rm_{step['id']}", on_click=_remove, args=(i,),
                  help="remove this step")
    if doc:
        st.caption(doc)


def _shown_params(cls: type, step: dict[str, Any]) -> tuple[list[tuple[Param, str, bool]], str | None]:
    """(parameter, unit, extra) to draw for a step, and ToFrame's slicing (None for other steps)."""
    params = {p.name: p for p in params_of(cls)}
    if cls is not ToFrame:
        return [(p, p.unit, False) for p in params.values()], None
    method = next((m for m in SLICINGS if step.get(m) is not None), None)
    applies = SLICINGS[method].fields if method else ()
    shown = []
    for name in applies:
        unit = SLICINGS[method].overlap_unit if name == "overlap" else params[name].unit
        param = dataclasses.replace(params[name], optional=False) if name == method else params[name]
        shown.append((param, unit, False))  # the chosen slicing's own field cannot be left empty
    for name in [n for n in params if n not in applies]:
        if step.get(name) is not None and _same(step[name], params[name].default):
            del step[name]  # a default that does not apply changes nothing: dropped
        elif step.get(name) is not None:  # set by a link, not used by this slicing: shown, to be cleared
            shown.append((params[name], params[name].unit, True))
    return shown, method


def step_ui(i: int, step: dict[str, Any], n: int) -> StepView:
    """One step's card: its name, move/remove buttons, the fields that apply and slots for its messages."""
    name = step.get("name")
    cls = TRANSFORMS.get(name) if isinstance(name, str) else None
    doc = cls.__doc__.splitlines()[0] if cls is not None and cls.__doc__ else ""
    _card_header(i, step, n, doc)
    if cls is None:
        view = StepView(alert=st.empty())
        try:
            spec_from_dict({k: v for k, v in step.items() if k != "id"}, i)
        except TransformSpecError as exc:
            view.error = exc
        return view
    shown, method = _shown_params(cls, step)
    fields: dict[str, Any] = {}
    if cls is ToFrame:
        st.selectbox("Slicing", list(SLICINGS), key=f"tf_{step['id']}_slicing", on_change=_switch_slicing,
                     index=list(SLICINGS).index(method) if method else None, args=(step["id"],),
                     placeholder="choose how to cut frames", help=SLICING_HELP)
    unknown = [k for k in step if k not in ("id", "name") and k not in {p.name for p in params_of(cls)}]
    # numbers two by two; a checkbox on a line of its own (its label would be cut in half a card)
    shown.sort(key=lambda item: item[0].kind == "flag" and not item[2])
    n_numbers = sum(1 for p, _, extra in shown if p.kind != "flag" or extra) + len(unknown)
    columns = st.columns(2) if n_numbers > 1 else [st.container()]
    for k, (param, unit, extra) in enumerate(shown):
        with columns[k % len(columns)] if (param.kind != "flag" or extra) else st.container():
            current = step.get(param.name, param.default)
            new = param_widget(step["id"], param, current, unit, extra)
            if param.kind == "real" and isinstance(new, float) and new.is_integer() and abs(new) < 2**53:
                new = int(new)  # 10000, as the tutorial writes it (the frames are the same)
            if extra:
                if new is None:
                    step.pop(param.name, None)
                else:
                    step[param.name] = new
            elif new is None or _same(new, param.default):
                step.pop(param.name, None)
                if new is None and param.default is not None:
                    step[param.name] = None
            else:
                step[param.name] = new
            fields[param.name] = st.empty()  # the message goes right under its widget
    for k, name_ in enumerate(unknown, start=len(shown)):
        with columns[k % len(columns)]:
            text = st.text_input(f"{escape_markdown(name_, 40)}: not a parameter of {cls.name}, clear it",
                                 value=_json_text(step[name_]), key=f"tf_{step['id']}_unknown_{k}")
            if not text.strip():
                step.pop(name_, None)
            fields[name_] = st.empty()
    view = StepView(alert=st.empty(), fields=fields)
    try:
        view.spec = spec_from_dict({k: v for k, v in step.items() if k != "id"}, i)
    except TransformSpecError as exc:
        view.error = exc
    return view


def _same(value: Any, default: Any) -> bool:
    """Whether a widget's value is the parameter's default (then the step leaves it out, as tonic's code does)."""
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def _mark(view: StepView, exc: Exception) -> None:
    """Put an error message on its step: under the named field where there is one, else under the step."""
    field_name = getattr(exc, "field", "") or ""
    name = field_name.split(".", 1)[1] if "." in field_name else ""
    name = name.split("[", 1)[0]
    target = view.fields.get(name) if name else None
    (target if target is not None else view.alert).error(_say(exc), icon=":material/error:")


@dataclass
class Checked:
    """The editor's outcome: the pipeline (None while a step has a problem), its valid beginning and the seed."""

    pipeline: Pipeline | None
    valid: Pipeline  # the steps before the first faulty one
    faulty: int | None  # index of the first faulty step
    views: list[StepView]
    seed: int


def pipeline_ui() -> Checked:
    """The pipeline editor: a card per step, Add / Tutorial, the seed; returns what it checked."""
    problem = st.session_state.get("tf_url_problem")
    if problem and plain_steps() == problem[1]:
        st.warning(problem[0] + " Showing the tutorial's pipeline instead.", icon=":material/warning:")
    if st.session_state.get("tf_seed_problem") and st.session_state["tf_seed"] == 0:
        st.warning(st.session_state["tf_seed_problem"], icon=":material/warning:")
    steps = st.session_state["tf_steps"]
    views = []
    for i, step in enumerate(steps):
        with st.container(border=True):
            views.append(step_ui(i, step, len(steps)))
    st.selectbox("Add a step", list(TRANSFORMS), key="tf_add_name",
                 help="inserted before the final frame step (a frame step replaces it)")
    left, right = st.columns(2)
    left.button("Add", key="tf_add", icon=":material/add:", on_click=_add, width="stretch")
    right.button("Tutorial", key="tf_reset", icon=":material/restart_alt:", on_click=_reset, width="stretch",
                 help="reset to the tutorial's Denoise + ToFrame")
    seed = st.number_input("Seed of the random steps", min_value=0, max_value=MAX_SEED, step=1, key="tf_seed")
    st.query_params["seed"] = str(seed)
    st.query_params["pipeline"] = json.dumps(plain_steps(), separators=(",", ":"))
    return check(views, int(seed))


def check(views: list[StepView], seed: int) -> Checked:
    """The pipeline from the steps that are valid on their own; marks the first step that fails in its place."""
    faulty = next((i for i, v in enumerate(views) if v.error is not None), None)
    for view in views:
        if view.error is not None:
            _mark(view, view.error)
    specs = [v.spec for v in views[: faulty if faulty is not None else len(views)]]
    try:  # every N-MNIST source has the 34 x 34 sensor
        valid = Pipeline(tuple(specs), SENSOR_SIZE)
    except TransformSpecError as exc:  # steps valid alone that do not fit together: mark where it breaks
        where = exc.step if exc.step is not None else len(specs) - 1
        _mark(views[where], exc)
        faulty = where
        valid = _longest_valid(specs[:where])
    return Checked(valid if faulty is None else None, valid, faulty, views, seed)


def _longest_valid(specs: list[Any]) -> Pipeline:
    for k in range(len(specs), -1, -1):
        try:
            return Pipeline(tuple(specs[:k]), SENSOR_SIZE)
        except TransformSpecError:
            continue
    return Pipeline((), SENSOR_SIZE)


# ------------------------------------------------------------------ results (bounded by bytes)


@st.cache_resource(show_spinner=False)
def page_cache() -> ByteCache:
    """Previews and figures of this page, for every session: a quarter of the pages' byte budget."""
    return ByteCache(limits().page_cache_bytes // 4)


def _figure_bytes(*arrays: np.ndarray, frames: int = 0) -> int:
    return sum(int(a.nbytes) for a in arrays) + 20_000 + 2_000 * frames


def cached_preview(pipeline: Pipeline, sample_key: str, seed: int, events: np.ndarray) -> Preview:
    key = ("preview", pipeline.key, sample_key, seed if pipeline.is_random else None)
    return page_cache().get_or_make(key, lambda: _with_size(preview(pipeline, events, seed)))


def _with_size(p: Preview) -> tuple[Preview, int]:
    return p, p.nbytes


def _bin_titles(events: np.ndarray, origin: float, n: int = 3) -> list[str]:
    """What each of n equal time bins covers (as tonic's n_time_bins cuts them), in ms from ``origin``."""
    if not len(events):
        return ["no events"] * n
    t0, t1 = float(events["t"][0]), float(events["t"][-1])
    window = (t1 - t0) // n
    return [f"{(t0 - origin + k * window) / 1000:.0f}–{(t0 - origin + (k + 1) * window) / 1000:.0f} ms" for k in range(n)]


def grids_picture(key: tuple, rows: list[tuple[str, np.ndarray, tuple[int, int, int]]]) -> bytes | None:
    """The recording before (and after the event steps) in three time bins each, ON red, OFF blue, on one scale (PNG).

    None where a row cannot be drawn: a sensor too large to draw, or events off
    the sensor (SpatialJitter unclipped, at the end of the pipeline).
    """
    if any(max(size[0], size[1]) > MAX_DRAWN_SIDE for _, _, size in rows):
        return None

    def make() -> tuple[bytes | None, int]:
        drawn = []
        origin = float(rows[0][1]["t"][0]) if len(rows[0][1]) else 0.0  # times from the recording's first event
        try:
            for name, events, size in rows:
                drawn.append((name, figures.event_grid_frames(events, size), _bin_titles(events, origin)))
        except (ValueError, IndexError):
            return None, 1
        png = figures.event_grids_image(drawn).png
        return png, len(png)

    return page_cache().get_or_make(("grids", *key), make)


def count_figure(key: tuple, before: np.ndarray, after: np.ndarray) -> go.Figure:
    return page_cache().get_or_make(
        ("count", *key), lambda: (figures.event_count_figure(before, after), _figure_bytes())
    )


def opening_frame(activity: np.ndarray) -> int:
    """The first frame with at least half the activity of the busiest: the animation opens on something to see."""
    if not len(activity) or activity.max() <= 0:
        return 0
    return int(np.flatnonzero(activity >= activity.max() / 2)[0])


def animation_figure(key: tuple, p: Preview) -> go.Figure | None:
    if not len(p.shown):
        return None

    def make() -> tuple[go.Figure, int]:
        shown = p.shown
        if shown.shape[1] != 2:  # one channel (a voxel grid): shown as ON
            shown = np.concatenate([np.zeros_like(shown[:, :1]), shown[:, :1]], axis=1)
        labels = [str(i) for i in range(0, p.shape[0], p.every)][: len(shown)]
        start = opening_frame(p.activity[:: p.every][: len(shown)])
        total = p.shape[0]
        title = f"Output frames ({total:,}" + (f"; 1 in {p.every} shown)" if p.every > 1 else ")")
        fig = figures.frames_figure(shown, labels, title=title, start=start)
        return fig, _figure_bytes(shown, frames=len(shown))

    return page_cache().get_or_make(("animation", *key), make)


def metrics_ui(n_before: int, n_after: int | None) -> None:
    left, right = st.columns(2)
    left.metric("events before", f"{n_before:,}")
    if n_after is not None:
        removed = n_before - n_after
        delta = f"-{removed:,} ({removed / max(1, n_before):.1%})" if removed > 0 else None
        right.metric("events after", f"{n_after:,}", delta=delta, delta_color="off",
                     help="events left by the event steps (those a frame step receives)")


def frames_ui(p: Preview, key: tuple) -> None:
    """The frames: their count and memory as metrics, the shape in a caption, the training batch in words, the animation."""
    t, c, h, w = p.shape
    left, right = st.columns(2)
    left.metric("frames (T)", f"{t:,}")
    right.metric("memory", format_bytes(p.frames_nbytes), help=f"{p.dtype} frames of this sample, as tonic returns them")
    st.caption(f"Output shape (T, C, H, W): **({t}, {c}, {h}, {w})**, {p.dtype}.")
    batch = p.frames_nbytes // p.dtype.itemsize * 4 * TUTORIAL_BATCH
    budget = limits().training_batch_bytes
    verdict = ("within" if batch <= budget else "**over**") + f" the {format_bytes(budget)} budget of one training batch"
    st.caption(f"In training, as float32 in a batch of {TUTORIAL_BATCH}, frames like these take about "
               f"{format_bytes(batch)}: {verdict}.")
    fig = animation_figure(key, p)
    if fig is None:
        st.info(f"Frames of {w:,} × {h:,} pixels are too large to draw here.")
    else:
        st.plotly_chart(fig, width=FRAMES_WIDTH_PX, key="tf_frames")


def results_ui(checked: Checked, sample_key: str, events: np.ndarray) -> tuple[Preview, tuple] | None:
    """The events before and after, in numbers and pictures; returns the frames to show (with their cache key)
    where the pipeline makes frames, for :func:`frames_ui` under both columns, where they have room."""
    pipeline = checked.pipeline
    if checked.faulty is not None:
        step = st.session_state["tf_steps"][checked.faulty]
        name = step["name"] if isinstance(step["name"], str) else _json_text(step["name"])
        st.warning(f"Step {checked.faulty + 1} ({escape_markdown(name, 60)}) has a problem, marked on the left. "
                   "Shown meanwhile: the recording before the pipeline, and the code of the steps before it.",
                   icon=":material/warning:")
    result: Preview | None = None
    if pipeline is not None:
        seed = checked.seed if pipeline.is_random else None
        try:
            result = cached_preview(pipeline, sample_key, checked.seed, events)
        except StepTooLarge as exc:
            _mark(checked.views[exc.step], exc)
            st.warning(f"Not computed: step {exc.step + 1} would need {format_bytes(exc.needed_bytes)} for this sample, "
                       f"over the limit of {format_bytes(exc.limit_bytes)} (marked on the left).", icon=":material/memory:")
        except (LimitExceeded, ValueError, IndexError, TypeError, OverflowError, MemoryError) as exc:
            st.error(f"The pipeline failed on this sample: {escape_markdown(exc)}", icon=":material/error:")
        key = (pipeline.key, sample_key, seed)
    metrics_ui(len(events), None if result is None else len(result.after))
    rows = [("before", events, SENSOR_SIZE)]
    if result is not None:
        event_size = pipeline.sensor_sizes[-2] if pipeline.is_frame else pipeline.output_sensor_size
        rows.append(("after", result.after, event_size))
    grids = grids_picture(key if result is not None else ("raw", sample_key), rows)
    if grids is None:  # the after row: the sensor before cannot be too large
        rows = rows[:1]
        grids = grids_picture(("raw", sample_key), rows)
        st.info("The events after the steps cannot be drawn here: their sensor is too large, or they lie off it.")
    if grids is not None:
        st.caption("The recording in three equal time bins, before the pipeline" +
                   (" (top) and after its event steps (bottom)." if len(rows) > 1 else "."))
        with st.container(key="tf_grids"):
            st.image(grids, width="stretch", output_format="PNG")  # as it is: "auto" would send a blurred JPEG
    if result is None:
        return None
    st.plotly_chart(count_figure(key, events, result.after), width="stretch", key="tf_counts")
    if not pipeline.is_frame:
        st.info("The pipeline ends in events; add ToFrame (or ToVoxelGrid / ToTimesurface) to make frames for training.")
    if pipeline.is_random:
        st.caption(f"Random steps drawn with seed {checked.seed}.")
    return (result, key) if pipeline.is_frame else None


def code_ui(checked: Checked) -> None:
    st.subheader("The same pipeline in Tonic")
    if checked.pipeline is not None:
        st.code(checked.pipeline.to_code(), language="python", wrap_lines=True)
        return
    if checked.valid.steps:
        st.caption(f"Steps 1–{len(checked.valid.steps)}, before the step with a problem:")
        st.code(checked.valid.to_code(), language="python", wrap_lines=True)
    else:
        st.caption("No code yet: the first step has a problem.")


# ------------------------------------------------------------------ page

st.title("Transforms")
picked = sample_ui(source)
if picked is None:
    st.stop()
split, index, events, label = picked
sample_key = f"{source.key}:{split}/{index}"

editor, results = st.columns([5, 6], gap="medium")
with editor:
    st.subheader("Pipeline")
    checked = pipeline_ui()
with results:
    st.subheader("Result")
    st.caption(f"{split} sample {index}, digit {label}")
    frames = results_ui(checked, sample_key, events)
if frames is not None:  # under both columns: at 1000 px the result column left the animation 120 px wide
    st.subheader("Frames")
    frames_ui(*frames)
code_ui(checked)
st.session_state["tf_pipeline_json"] = json.dumps(plain_steps())
