"""The Transforms page through the app's entry point (AppTest): issue 9's Transforms bugs and confusions, issue 10's links.

Each test stands for a case the issues list and failed before the page was fixed:
ToFrame's one slicing choice, values short enough for st.metric, units, Add before
the frame step, an error that keeps what still holds and marks its step, the polarity
colours, the opening frame, events over time, the memory budget, and crafted links.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import markup_from_input, metrics, rss_bytes, walk
from core import figures
from core import transforms as T
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/transforms.py"
TIMEOUT = 120
ISSUE_LINK = '[{"name":"Denoise","filter_time":10000},{"name":"ToFrame","n_time_bins":20}]'


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("transforms-home")
    write_tiny_dataset(home / "simulated")
    return home


@pytest.fixture()
def open_page(home: Path, monkeypatch: pytest.MonkeyPatch):
    """A new visitor on the Transforms page, through a link with the given query; run once."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)

    def open_(query: dict[str, str] | None = None) -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        at.switch_page(PAGE)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


# ------------------------------------------------------------------ reading the page


def plain(text: str) -> str:
    """Markdown source as read: backslash escapes and code-span backticks removed."""
    return re.sub(r"\\(.)", r"\1", text).replace("`", "").replace("**", "")


def captions(at: AppTest) -> str:
    return "\n".join(plain(c.value) for c in at.caption)


def said(at: AppTest, *kinds: str) -> str:
    return "\n".join(plain(e.value) for kind in kinds for e in getattr(at, kind))


def code(at: AppTest) -> str:
    return at.code[0].value if at.code else ""


def url_steps(at: AppTest) -> list[dict[str, Any]]:
    value = at.query_params["pipeline"]
    return json.loads(value[0] if isinstance(value, list) else value)


def cards(at: AppTest) -> list[Any]:
    """The step cards of the editor (the bordered containers of the left column), in order."""
    editor = at.columns[0]
    found = []
    for child in editor.children.values():
        heads = [n.value for n in walk(child) if getattr(n, "type", "") == "markdown" and n.value.startswith("**")]
        if heads and re.match(r"\*\*\d+\. ", heads[0]):
            found.append(child)
    return found


def card_errors(at: AppTest) -> list[list[str]]:
    return [[plain(e.value) for e in walk(card) if type(e).__name__ == "Error"] for card in cards(at)]


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def chart(at: AppTest, title: str) -> dict[str, Any]:
    """The plotly figure (as JSON) whose title starts with ``title``."""
    for spec in charts(at):
        text = (spec.get("layout", {}).get("title") or {}).get("text", "") or ""
        if text.startswith(title):
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def grid_rows(at: AppTest) -> list[str]:
    """The rows of the before / after picture (one image on the page), as its caption names them."""
    assert len(at.get("image")) == 1, len(at.get("image"))
    (caption,) = [c for c in captions(at).splitlines() if c.startswith("The recording in three equal time bins")]
    return ["before", "after"] if "after its event steps" in caption else ["before"]


def array(value: Any) -> np.ndarray:
    """A plotly array: a list, or a typed array ``{"dtype": ..., "bdata": ...}``."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        shape = value.get("shape")
        if shape:
            dims = shape if isinstance(shape, list) else [int(d) for d in str(shape).split(",")]
            data = data.reshape(dims)
        return data
    return np.asarray(value, dtype=float)


# ------------------------------------------------------------------ issue 9, bug 1: ToFrame's slicing


@pytest.mark.slow
def test_toframe_offers_one_slicing_and_only_its_fields(open_page) -> None:
    at = open_page()
    assert at.selectbox(key="tf_1_slicing").value == "time_window"
    keys = {w.key for w in [*at.number_input, *at.checkbox, *at.text_input]}
    assert {"tf_1_time_window", "tf_1_overlap", "tf_1_include_incomplete", "tf_1_start_time", "tf_1_end_time"} <= keys
    assert not {"tf_1_event_count", "tf_1_n_time_bins", "tf_1_n_event_bins"} & keys

    at.selectbox(key="tf_1_slicing").select("n_time_bins").run()
    assert not at.exception and not at.error, said(at, "error")
    keys = {w.key for w in [*at.number_input, *at.checkbox, *at.text_input]}
    assert {"tf_1_n_time_bins", "tf_1_overlap"} <= keys
    assert not {"tf_1_time_window", "tf_1_include_incomplete", "tf_1_start_time", "tf_1_end_time"} & keys
    assert "ToFrame(sensor_size=sensor_size, n_time_bins=20)" in code(at)
    assert "(20, 2, 34, 34)" in captions(at)
    assert url_steps(at)[-1] == {"name": "ToFrame", "n_time_bins": 20}

    at.number_input(key="tf_1_n_time_bins").set_value(7).run()
    assert "(7, 2, 34, 34)" in captions(at) and not at.error

    at.selectbox(key="tf_1_slicing").select("event_count").run()
    assert not at.error, said(at, "error")
    assert "ToFrame(sensor_size=sensor_size, event_count=500)" in code(at)
    assert "tf_1_include_incomplete" in {w.key for w in at.checkbox}

    at.selectbox(key="tf_1_slicing").select("n_event_bins").run()
    at.number_input(key="tf_1_n_event_bins").set_value(9).run()
    assert not at.error, said(at, "error")
    assert "(9, 2, 34, 34)" in captions(at)

    at.selectbox(key="tf_1_slicing").select("time_window").run()
    assert not at.error and "ToFrame(sensor_size=sensor_size, time_window=1000)" in code(at)
    at.selectbox(key="tf_1_slicing").set_value(None).run()  # cleared: the step keeps its slicing
    assert not at.exception and not at.error and at.selectbox(key="tf_1_slicing").value == "time_window"


@pytest.mark.slow
def test_add_toframe_then_any_slicing(open_page) -> None:
    at = open_page()
    at.button(key="tf_rm_1").click().run()  # remove the tutorial's ToFrame
    at.selectbox(key="tf_add_name").select("ToFrame").run()
    at.button(key="tf_add").click().run()
    assert not at.exception and not at.error, said(at, "error")
    assert url_steps(at)[-1] == {"name": "ToFrame", "time_window": 1000}
    for method, shape in (("n_time_bins", "(20, 2, 34, 34)"), ("n_event_bins", "(20, 2, 34, 34)"), ("event_count", ", 2, 34, 34)")):
        next(s for s in at.selectbox if str(s.key).endswith("_slicing")).select(method).run()
        assert not at.error, (method, said(at, "error"))
        assert shape in captions(at), (method, captions(at))


def test_the_issue_link_shows_the_shape_whole(open_page) -> None:
    at = open_page({"pipeline": ISSUE_LINK})
    assert not at.error and not at.warning, said(at, "error", "warning")
    assert "Output shape (T, C, H, W): (20, 2, 34, 34), int16." in captions(at)
    assert at.selectbox(key="tf_1_slicing").value == "n_time_bins"
    assert at.number_input(key="tf_1_n_time_bins").value == 20


def test_a_parameter_that_does_not_apply_writes_nothing_stray(open_page) -> None:
    """A link's ToFrame parameter that the chosen slicing does not use is shown, to be cleared. Its bookkeeping was
    one bare conditional expression, which Streamlit's magic wrote to the page: a stray `None` under the card."""
    link = json.dumps([{"name": "ToFrame", "n_time_bins": 20, "include_incomplete": True}])
    at = open_page({"pipeline": link})
    assert [t.label for t in at.text_input] == ["include_incomplete: does not apply here, clear it"]
    stray = [m.value for m in at.markdown if m.value.strip(" `") in ("None", "True", "False")]
    assert stray == [], stray
    at.text_input(key="tf_0_include_incomplete_extra").set_value("").run()  # cleared: gone from the link
    assert "include_incomplete" not in url_steps(at)[0]
    assert [m.value for m in at.markdown if m.value.strip(" `") in ("None", "True", "False")] == []


# ------------------------------------------------------------------ issue 9, bug 2: values short enough for st.metric


def test_metric_values_are_short_and_the_shape_is_a_caption(open_page) -> None:
    at = open_page()
    values = metrics(at)
    assert set(values) == {"events before", "events after", "frames (T)", "memory"}
    for label, value in values.items():
        assert len(value) <= 9 and "(" not in value, (label, value)
    assert re.search(r"Output shape \(T, C, H, W\): \(\d+, 2, 34, 34\), int16\.", captions(at))
    assert values["events before"] == f"{1500:,}"


@pytest.mark.slow
def test_training_batch_figure_says_whether_it_fits_the_budget(open_page, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page()
    assert "within the 6.0 GB budget of one training batch" in captions(at)
    monkeypatch.setenv("NMNIST_LIMIT_TRAINING_BATCH_BYTES", str(10**6))
    at = open_page({"pipeline": '[{"name":"ToFrame","time_window":1001}]'})
    assert "over the 976.6 kB budget of one training batch" in captions(at)
    assert not any("batch of 128" in m for m in metrics(at))


# ------------------------------------------------------------------ issue 9, Transforms confusions


def test_fields_say_their_units(open_page) -> None:
    at = open_page()
    labels = {w.key: plain(w.label) for w in at.number_input}
    assert labels["tf_0_filter_time"] == "filter_time (µs)"
    assert labels["tf_1_time_window"] == "time_window (µs)"
    assert labels["tf_1_overlap"] == "overlap (µs)"
    assert labels["tf_1_start_time"].startswith("start_time (µs)")
    at.selectbox(key="tf_1_slicing").select("n_time_bins").run()
    assert plain(at.number_input(key="tf_1_overlap").label) == "overlap (fraction of a bin)"


def test_add_inserts_before_the_frame_step(open_page) -> None:
    at = open_page()
    at.selectbox(key="tf_add_name").select("DropEvent").run()
    at.button(key="tf_add").click().run()
    assert not at.error, said(at, "error")
    assert [s["name"] for s in url_steps(at)] == ["Denoise", "DropEvent", "ToFrame"]
    assert code(at).index("DropEvent") < code(at).index("ToFrame")
    at.selectbox(key="tf_add_name").select("ToVoxelGrid").run()
    at.button(key="tf_add").click().run()  # a frame step replaces the final one
    assert not at.error, said(at, "error")
    assert [s["name"] for s in url_steps(at)] == ["Denoise", "DropEvent", "ToVoxelGrid"]


def test_an_error_keeps_what_holds_and_marks_its_step(open_page) -> None:
    at = open_page()
    at.number_input(key="tf_1_time_window").set_value(-5.0).run()
    assert not at.exception
    marked = card_errors(at)
    assert marked[0] == [] and any("ToFrame.time_window must be > 0" in e for e in marked[1]), marked
    # what still holds: the recording before the pipeline, and the code of the valid steps
    assert metrics(at)["events before"] == f"{1500:,}"
    assert grid_rows(at) == ["before"]
    assert "transforms.Denoise(filter_time=10000)" in code(at) and "ToFrame" not in code(at)
    assert "Steps 1–1" in captions(at)
    assert "Step 2 (ToFrame) has a problem" in said(at, "warning")


def test_steps_that_do_not_fit_together_mark_the_step(open_page) -> None:
    at = open_page({"pipeline": '[{"name":"Denoise"},{"name":"ToFrame","time_window":1000},{"name":"DropEvent"}]'})
    marked = card_errors(at)
    assert marked[0] == [] and marked[2] == [] and any("must be the last step" in e for e in marked[1]), marked
    assert "transforms.Denoise(filter_time=10000)" in code(at) and "ToFrame" not in code(at)


def test_event_grids_are_one_picture_and_the_animation_uses_the_polarity_colours(open_page) -> None:
    at = open_page()
    assert grid_rows(at) == ["before", "after"]  # the picture itself: tests/test_figures.py
    assert not any("coloraxis" in spec.get("layout", {}) for spec in charts(at))  # no chart of the grids
    animation = chart(at, "Output frames")
    assert animation["data"][0]["colorscale"][0][1] == figures.OFF_COLOR
    assert animation["layout"]["xaxis"]["title"]["text"] == "x (pixel)"


@pytest.mark.parametrize("pipeline", [None, '[{"name":"ToFrame","time_window":10000,"start_time":-50000}]'])
@pytest.mark.slow
def test_the_animation_opens_on_a_busy_frame(open_page, pipeline: str | None) -> None:
    at = open_page({"pipeline": pipeline} if pipeline else None)  # the second: its first five frames are empty
    spec = chart(at, "Output frames")
    start = spec["layout"]["sliders"][0]["active"]
    frames = [np.abs(array(f["data"][0]["z"])).sum() for f in spec["frames"]]
    assert frames[start] > 0 and frames[start] >= max(frames) / 2
    assert all(f < max(frames) / 2 for f in frames[:start])  # the first such frame
    np.testing.assert_array_equal(array(spec["data"][0]["z"]), array(spec["frames"][start]["data"][0]["z"]))


@pytest.mark.slow
def test_events_over_time_before_and_after(open_page) -> None:
    at = open_page()
    spec = chart(at, "Events over time")
    before, after = spec["data"]
    assert before["name"] == "before (1,500)" and after["name"] == f"after ({metrics(at)['events after']})"
    removed = 1500 - int(metrics(at)["events after"].replace(",", ""))
    assert spec["layout"]["title"]["text"] == f"Events over time: {removed:,} removed"
    width_ms = array(before["x"])[1] - array(before["x"])[0]
    assert array(before["y"]).sum() * width_ms == pytest.approx(1500)


# ------------------------------------------------------------------ issue 10, item 1: memory by link


def test_a_link_past_the_memory_budget_is_refused_naming_field_and_estimate(open_page, monkeypatch) -> None:
    def no_work(*args: object) -> None:
        raise AssertionError("the frames were computed")

    monkeypatch.setattr(T.ToFrame, "apply", no_work)
    at = open_page({"pipeline": '[{"name":"ToFrame","n_time_bins":100000}]'})
    marked = card_errors(at)
    assert marked[0] == ["n_time_bins=100000 needs 442.5 MB for this sample (100,000 frames of 2 × 34 × 34 int16); "
                         "the limit is 256.0 MB"], marked
    assert "Not computed" in said(at, "warning")
    assert metrics(at) == {"events before": f"{1500:,}"}  # the recording before the pipeline is still shown
    assert grid_rows(at) == ["before"]


def test_the_budget_is_the_limits_one(open_page, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_LIMIT_SAMPLE_FRAMES_BYTES", "100000")
    at = open_page({"pipeline": '[{"name":"ToFrame","time_window":999}]'})
    assert any("time_window=999 needs" in e and "the limit is 97.7 kB" in e for e in card_errors(at)[0]), card_errors(at)


@pytest.mark.slow
def test_distinct_large_links_do_not_pile_up_in_memory(open_page) -> None:
    """Each link's frames (185 MB, under the budget) are computed, summarised and let go: memory does not pile up."""
    open_page({"pipeline": '[{"name":"ToFrame","n_time_bins":39999}]'})  # the page's imports and kernels, once
    start = rss_bytes()
    for k in range(4):
        at = open_page({"pipeline": f'[{{"name":"ToFrame","n_time_bins":{40_000 + k}}}]'})
        assert f"({40_000 + k:,}".replace(",", "") in captions(at).replace(",", "")
    growth = rss_bytes() - start
    assert growth < 250 * 2**20, f"resident memory grew by {growth / 2**20:.0f} MB"


# ------------------------------------------------------------------ issue 10, items 4 and 5: crafted links


def test_a_step_named_like_a_link_renders_as_text(open_page) -> None:
    query = {"pipeline": '[{"name":"[Click](https://evil.example/x)"},{"name":"ToFrame","time_window":1000}]'}
    at = open_page(query)
    assert not markup_from_input(at, query), markup_from_input(at, query)
    heads = [n.value for n in walk(cards(at)[0]) if getattr(n, "type", "") == "markdown"]
    assert heads[0] == "**1. \\[Click\\]\\(https\\://evil\\.example/x\\)**"
    assert any("is not a supported transform" in e for e in card_errors(at)[0])


@pytest.mark.parametrize(
    ("pipeline", "step", "message"),
    [
        pytest.param('[{"name":[1]}]', 0, "transforms[0].name [1] is not a supported transform", id="name-not-a-string"),
        pytest.param('[{"name":"Denoise","filter_time":"abc"}]', 0, "Denoise.filter_time must be a number, got 'abc'",
                     id="filter_time-abc"),
        pytest.param('[{"name":"Denoise","filter_time":1e400}]', 0, "Denoise.filter_time must be finite, got inf",
                     id="filter_time-1e400"),
        pytest.param('[{"name":"Denoise","filter_time":10000},{"name":"ToFrame","time_window":1e-9}]', 1,
                     "time_window=1e-09 needs", id="time_window-1e-9"),
        pytest.param('[{"name":"ToFrame","n_time_bins":1e400}]', 0, "ToFrame.n_time_bins must be an integer, got inf",
                     id="bins-1e400"),
        pytest.param('[{"name":"Denoise"},{"name":"Nope"}]', 1, "transforms[1].name 'Nope' is not a supported transform",
                     id="unknown-step"),
        pytest.param('[{"name":"ToFrame","time_window":1000,"n_time_bins":10}]', 0, "ToFrame needs exactly one of",
                     id="two-slicings"),
        pytest.param('[{"name":"Denoise","bogus":1}]', 0, "Denoise.bogus is not a parameter of Denoise", id="unknown-field"),
    ],
)
def test_crafted_steps_are_marked_on_their_step(open_page, pipeline: str, step: int, message: str) -> None:
    at = open_page({"pipeline": pipeline})
    marked = card_errors(at)
    assert any(message in e for e in marked[step]), marked
    assert all(not errors for k, errors in enumerate(marked) if k != step), marked
    assert metrics(at)["events before"] == f"{1500:,}"


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        pytest.param("[" * 3000 + "]" * 3000, "The link's pipeline is nested 3,000 levels deep", id="3000-brackets"),
        pytest.param("not json", "The link's pipeline is not valid JSON", id="invalid-json"),
        pytest.param('{"name":"Denoise"}', "The link's pipeline must be a list of steps", id="not-a-list"),
        pytest.param("[null]", "The link's pipeline[0] must be an object", id="not-an-object"),
    ],
)
def test_an_unusable_pipeline_link_says_so_and_what_it_shows(open_page, pipeline: str, message: str) -> None:
    at = open_page({"pipeline": pipeline})
    warning = said(at, "warning")
    assert message in warning and "Showing the tutorial's pipeline instead." in warning, warning
    assert [s["name"] for s in url_steps(at)] == ["Denoise", "ToFrame"]
    at.button(key="tf_rm_0").click().run()  # once edited, the note goes
    assert "Showing the tutorial's pipeline" not in said(at, "warning")


@pytest.mark.slow
def test_a_huge_seed_is_named_and_replaced(open_page) -> None:
    at = open_page({"seed": "99999999999999999999999"})
    assert "The link's seed must be a whole number from 0 to 4,294,967,295" in said(at, "warning")
    assert at.number_input(key="tf_seed").value == 0
    at = open_page({"seed": "17", "pipeline": '[{"name":"DropEvent","p":0.5},{"name":"ToFrame","n_time_bins":3}]'})
    assert at.number_input(key="tf_seed").value == 17 and "seed 17" in captions(at)


def test_a_wrong_value_from_a_link_can_be_fixed_on_the_page(open_page) -> None:
    at = open_page({"pipeline": '[{"name":"Denoise","filter_time":"abc"},{"name":"ToFrame","time_window":1000}]'})
    box = next(t for t in at.text_input if str(t.key).startswith("tf_0_filter_time"))
    box.input("5000").run()
    assert not at.error, said(at, "error")
    assert "transforms.Denoise(filter_time=5000)" in code(at)
    at.run()  # from now on the value is a number: a number field shows it
    assert at.number_input(key="tf_0_filter_time").value == 5000


# ------------------------------------------------------------------ the editor as before (moved from test_app.py)


@pytest.mark.slow
def test_transforms_page_edits_the_pipeline(open_page) -> None:
    at = open_page()
    assert "transforms.Denoise(filter_time=10000)" in code(at)
    assert "transforms.ToFrame(sensor_size=sensor_size, time_window=1000" in code(at)
    assert re.search(r"\(\d+, 2, 34, 34\)", captions(at))  # the shape: a caption now, not a metric
    # a parameter that makes no sense: a message next to it, no stack trace
    at.number_input(key="tf_1_time_window").set_value(-5.0).run()
    assert not at.exception
    assert any("ToFrame.time_window" in e.value for e in at.error)
    at.number_input(key="tf_1_time_window").set_value(10000.0).run()
    assert not at.error
    assert "time_window=10000" in code(at)
    # add a step (it goes before ToFrame), move it first, remove the Denoise
    at.selectbox(key="tf_add_name").select("DropEvent").run()
    at.button(key="tf_add").click().run()
    assert not at.exception
    at.button(key="tf_up_2").click().run()
    at.button(key="tf_rm_0").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Denoise" not in code(at) and code(at).index("DropEvent") < code(at).index("ToFrame")
    assert [s["name"] for s in url_steps(at)] == ["DropEvent", "ToFrame"]
    # ToFrame not last: the pipeline-level check explains it
    at.button(key="tf_up_1").click().run()
    assert not at.exception
    assert any("must be the last step" in e.value for e in at.error)


@pytest.mark.parametrize("pipeline", ['[{"name":"Downsample","spatial_factor":8}]',  # a 272 x 272 sensor
                                      '[{"name":"CenterCrop","size":[60000,1]}]'])  # a 60000 x 1 one (a 180,000 px picture)
def test_events_after_that_cannot_be_drawn_leave_the_before_row_and_say_so(open_page, pipeline: str) -> None:
    at = open_page({"pipeline": pipeline})
    assert grid_rows(at) == ["before"]  # the caption names only the row drawn
    assert "cannot be drawn here" in said(at, "info")
