"""The Events page (issue 9): every choice in the URL, the class filter, views beside their settings, the figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import metrics, ok
from core import figures
from core.data import NMNISTFolder
from core.events import OVERFLOW_Y, encode_nmnist, make_events, read_nmnist
from helpers import random_events, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
TABS = ["Event image", "3D point cloud", "x-t and y-t", "Event rate", "Playback", "Raw events", "Statistics"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("events-page")
    write_tiny_dataset(home / "simulated")  # Train: 3 of each digit, Test: 2
    return home


def events_page(home: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    at.switch_page("pages/events.py")
    return ok(at.run())


def preloads(at: AppTest) -> list:
    """The page's scripts that load Streamlit's plotly chart script (see pages.events.preload_plotly)."""
    return [h for h in at.get("html") if re.search(r'import\(new URL\("PlotlyChart\.[\w-]+\.js"', h.proto.body)]


def open_tab(at: AppTest) -> str:
    """The one tab whose view was drawn (only the open tab is computed)."""
    drawn = [tab.label for tab in at.tabs  # a closed tab holds nothing but its own setting (a slider), if any
             if any(type(c).__name__ != "SelectSlider" for c in tab.children.values())]
    assert len(drawn) == 1, drawn
    return drawn[0]


def tab_keys(at: AppTest, label: str) -> list[str]:
    tab = next(t for t in at.tabs if t.label == label)
    return [c.key for c in tab.children.values() if getattr(c, "key", None)]


# ------------------------------------------------------------------ bug 3: every choice in the URL


@pytest.mark.parametrize("tab", TABS)
@pytest.mark.slow
def test_a_link_opens_the_tab_it_names(home: Path, monkeypatch: pytest.MonkeyPatch, tab: str) -> None:
    at = events_page(home, monkeypatch, view=tab)
    assert at.session_state["view"] == tab
    assert open_tab(at) == tab


def test_a_link_reproduces_sample_tab_and_slider_values(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = events_page(home, monkeypatch, split="Test", digit="6", sample="1", view="Event rate", bin_ms="5",
                     frame_ms="20")
    ds = NMNISTFolder(home / "simulated", "Test")
    index = int(ds.indices_of(6)[1])  # the second six of Test
    assert metrics(at)["label"] == "6" and metrics(at)["events"] == f"{len(read_nmnist(ds.files[index])):,}"
    assert at.select_slider(key="bin_ms").value == 5 and at.select_slider(key="frame_ms").value == 20
    assert open_tab(at) == "Event rate"
    rate = json.loads(at.get("plotly_chart")[0].proto.spec)
    x = rate["data"][0]["x"]
    centres = np.frombuffer(__import__("base64").b64decode(x["bdata"]), dtype=x["dtype"]) if isinstance(x, dict) else x
    assert np.diff(centres)[0] == pytest.approx(5.0)  # 5 ms bins


@pytest.mark.slow
def test_the_sample_counts_within_the_class_filter(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sample 2 with class 7 is the third seven (it was the split's sample 2, a 0, then sample 21 with a caption)."""
    at = events_page(home, monkeypatch)
    at.selectbox(key="sel_digit").select("7").run()
    assert at.number_input(key="sel_sample").value == 0 and metrics(at)["label"] == "7"
    ok(at.number_input(key="sel_sample").set_value(2).run())
    assert metrics(at)["label"] == "7"
    ds = NMNISTFolder(home / "simulated", "Train")
    third = int(ds.indices_of(7)[2])
    assert any(f"Train recording {third}" in c.value for c in at.caption)
    assert "of the 3 7s in Train" in at.number_input(key="sel_sample").label
    assert at.number_input(key="sel_sample").max == 2
    assert at.query_params["sample"] in ("2", ["2"]) and at.query_params["digit"] in ("7", ["7"])
    # another class starts at its first sample; the random pick stays within the class
    at.selectbox(key="sel_digit").select("4").run()
    assert at.number_input(key="sel_sample").value == 0 and metrics(at)["label"] == "4"
    for _ in range(3):
        at.button(key="random_sample").click().run()
        assert metrics(at)["label"] == "4" and 0 <= at.number_input(key="sel_sample").value <= 2


# ------------------------------------------------------------------ the sliders beside their views


def test_each_slider_sits_in_the_tab_it_affects(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = events_page(home, monkeypatch)
    assert "bin_ms" in tab_keys(at, "Event rate") and "frame_ms" in tab_keys(at, "Playback")
    assert not any(key in ("bin_ms", "frame_ms") for t in TABS if t not in ("Event rate", "Playback")
                   for key in tab_keys(at, t))
    assert not [s for s in at.select_slider if s.key in ("events_rate_bin", "events_window")]  # the old, shared row


def test_only_the_open_tab_is_computed(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = events_page(home, monkeypatch)
    assert len(at.get("image")) == 1  # the default tab: the event image
    assert not at.get("plotly_chart") and len(preloads(at)) == 1  # a script that loads plotly's, after the image
    at.run()
    assert len(at.get("image")) == 1 and not preloads(at)  # once a session
    assert not at.get("download_button") and not at.dataframe
    at = events_page(home, monkeypatch, view="Raw events")
    assert at.dataframe and at.get("download_button") and not at.get("plotly_chart") and not at.get("image")


# ------------------------------------------------------------------ the figures


def _sample(seed: int = 0) -> np.ndarray:
    return random_events(4000, seed, duration_us=310_000, full_span=True)


def test_the_cloud_shows_the_whole_recording_upright_and_unmirrored() -> None:
    """Bug 8: about 0-200 of 310 ms were visible, axis labels cut. Orthographic, the whole time range, x to the right."""
    fig = figures.event_cloud_figure(_sample())
    scene = fig.layout.scene
    assert scene.xaxis.title.text == "time (ms)" and list(scene.xaxis.range) == [0.0, 310.0]
    assert list(scene.yaxis.range) == [34, 0] and list(scene.zaxis.range) == [34, 0]
    assert scene.camera.projection.type == "orthographic"
    eye = scene.camera.eye
    assert eye.x < 0 and eye.y < 0 and eye.z > 0  # in front of time 0, on the x = 34 side, above: x grows to the right
    assert scene.aspectratio.x > 2 * scene.aspectratio.y  # time gets the room
    assert fig.layout.legend.orientation == "h"  # not over the scene


def test_on_off_images_have_their_counts_and_a_colour_scale_each() -> None:
    from helpers import picture_panel

    events = _sample(1)
    picture = figures.event_image(events)
    counts = figures.accumulate(events)
    lim = int(np.abs(counts[1] - counts[0]).max())
    expected = ((counts[1], ((0, "#ffffff"), (int(counts[1].max()), figures.ON_COLOR))),
                (counts[0], ((0, "#ffffff"), (int(counts[0].max()), figures.OFF_COLOR))),
                (counts[1] - counts[0], ((-lim, figures.OFF_COLOR), (0, "#ffffff"), (lim, figures.ON_COLOR))))
    assert picture.stops == [stops for _, stops in expected]  # white where nothing, the app's polarity colours
    for i, (values, stops) in enumerate(expected):
        shown = picture_panel(picture, i)
        np.testing.assert_array_equal(shown, figures.ramp_rgb(values, stops))  # row 0 on top, square pixels
        if i < 2:  # ON and OFF: white where no event
            assert (shown[values == 0] == 255).all()
    hot = np.unravel_index(np.argmax(counts[1]), counts[1].shape)
    assert tuple(picture_panel(picture, 0)[hot]) == (0xD6, 0x27, 0x28)  # the most ON events: ON red


def test_the_event_image_is_one_png_whose_axes_and_colour_bars_are_drawn_in() -> None:
    """A picture: the first view needs no chart script in the browser. Its axes, titles and colour bars are pixels
    (their ink is checked here: grey text left of and under each panel, a colour ramp under it)."""
    import io

    from PIL import Image

    picture = figures.event_image(_sample(2))
    image = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB")).astype(int)
    assert picture.png[:8] == b"\x89PNG\r\n\x1a\n" and len(picture.boxes) == 3
    side = 34 * picture.scale
    for (left, top), stops in zip(picture.boxes, picture.stops):
        ink = (image.sum(axis=2) < 600)
        assert ink[top:top + side, left - 5 * picture.scale:left].any()  # y ticks
        assert ink[top + side:top + side + 4 * picture.scale, left:left + side].any()  # x ticks
        assert ink[:top, left:left + side].any()  # the title
        below = image[top + side + 9 * picture.scale + 2, left + picture.scale:left + side - picture.scale]
        assert tuple(below[0]) == tuple(figures.ramp_rgb(np.array([stops[0][0]]), stops)[0])  # the colour bar's low end
        assert tuple(below[-1]) == tuple(figures.ramp_rgb(np.array([stops[-1][0]]), stops)[0])  # and its high end


def test_the_x_t_and_y_t_projections_sum_the_events() -> None:
    events = _sample(2)
    boundaries = [105_000, 210_000]
    fig = figures.event_projection_figure(events, 2000, boundaries)
    xt, yt = (np.asarray(t.z, dtype=np.int64) for t in fig.data)
    sign = np.where(events["p"] > 0, 1, -1)
    assert xt.shape == (34, 310_000 // 2000 + 1)
    np.testing.assert_array_equal(xt.sum(axis=1), np.bincount(events["x"], sign, minlength=34).astype(np.int64))
    np.testing.assert_array_equal(yt.sum(axis=1), np.bincount(events["y"], sign, minlength=34).astype(np.int64))
    first = (events["t"] < 2000)
    np.testing.assert_array_equal(xt[:, 0], np.bincount(events["x"][first], sign[first], minlength=34).astype(np.int64))
    assert len(fig.layout.shapes) == 2 * len(boundaries)  # the saccade boundaries, on both rows
    assert fig.layout.yaxis2.range[0] > fig.layout.yaxis2.range[1]  # y-t: row 0 on top


def test_the_projection_tab_shows_the_saccades(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = events_page(home, monkeypatch, view="x-t and y-t")
    assert [c.key for c in at.get("plotly_chart")] == ["events_projection"]


# ------------------------------------------------------------------ hostile recordings


@pytest.mark.slow
def test_a_recording_of_hours_is_refused_by_the_timed_views_not_drawn(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overflow markers stretch a small file over hours: the rate, x-t and playback views would need millions of
    bins (gigabytes); they say so instead. The cloud and the images still draw."""
    root = write_tiny_dataset(tmp_path / "long", {"Train": 1, "Test": 1})
    (root / "simulation.json").unlink()
    record = encode_nmnist(make_events([1], [2], [0], [1]))
    marker = bytes([0, OVERFLOW_Y, 0, 0, 0])
    (root / "NMNIST" / "Train" / "0" / "00001.bin").write_bytes(record + marker * 400_000 + record)  # 2 MB, 55 min
    for tab in ("Event rate", "x-t and y-t", "Playback"):
        at = events_page(home, monkeypatch, data=str(root), view=tab)
        assert any("more than the" in w.value for w in at.warning), tab
        assert not at.get("plotly_chart")
    for tab, kind, count in (("3D point cloud", "plotly_chart", 1), ("Event image", "image", 1)):
        at = events_page(home, monkeypatch, data=str(root), view=tab)
        assert len(at.get(kind)) == count, tab


def test_no_traceback_for_a_recording_that_cannot_be_read(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_dataset(tmp_path / "bad", {"Train": 1, "Test": 1})
    (root / "simulation.json").unlink()
    (root / "NMNIST" / "Train" / "0" / "00001.bin").write_bytes(b"\x01\x02\x03")
    at = events_page(home, monkeypatch, data=str(root))
    assert any("cannot be read" in e.value and "truncated" in e.value for e in at.error)
    assert re.search(r"\\\.bin|00001", " ".join(e.value for e in at.error))


# ------------------------------------------------------------------ issue 9, speed: a cold server's first view

FIRST_VIEW_SCRIPT = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.switch_page("pages/events.py")
at.run()
assert not at.exception, [e.value for e in at.exception]
assert len(at.get("image")) == 1 and not at.get("plotly_chart") and "PlotlyChart." in at.get("html")[0].proto.body
print(" ".join(m for m in ("pandas", "pyarrow", "plotly.express", "torch", "streamlit.emojis") if m in sys.modules))
"""


@pytest.mark.slow  # a child process
def test_a_cold_first_events_view_imports_only_what_it_draws(home: Path) -> None:
    """A cold server's first Events view (4.1 s to its plots against 3 s) imported pandas and plotly.express (0.6 s
    of CPU, for the raw table and the statistics tabs), torch (1.5 s, for the kernels' warm-up, then started in the
    page's script) and Streamlit's emoji catalog (a 5,000-emoji regex, 0.3 to 1 s, for the page icon)."""
    done = subprocess.run([sys.executable, "-c", FIRST_VIEW_SCRIPT, str(REPO / "app.py")], cwd=REPO, timeout=300,
                          env=dict(os.environ, NMNIST_DASHBOARD_HOME=str(home)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
