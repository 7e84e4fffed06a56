"""Home and the app shell (issue 9): the data-set chooser, the one link format, the first view, a clean server log."""

from __future__ import annotations

import multiprocessing
import os
import re
import runpy
import sys
import tomllib
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apphelpers import ok, param, plain
from helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
REAL, SIMULATED = "Real N-MNIST in a folder", "Simulated N-MNIST (default, offline)"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home-page")
    write_tiny_dataset(home / "simulated")
    return home


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-layout folder (no simulation marker): 2 Train and 1 Test recording a digit."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("real") / "nmnist", {"Train": 2, "Test": 1}, seed=5)
    (root / "simulation.json").unlink()
    return root


def app(home: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for name, value in query.items():
        at.query_params[name] = value
    return at


def in_use(at: AppTest) -> list[str]:
    return [plain(s.value) for s in at.success if "In use" in s.value]


# ------------------------------------------------------------------ bug 10: the data-set chooser


@pytest.mark.slow
def test_the_typed_folder_survives_a_switch_to_simulated_and_back(
    home: Path, real: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(app(home, monkeypatch).run())
    at.radio(key="home_kind").set_value(REAL).run()
    at.text_input(key="home_folder").input(str(real)).run()
    assert at.session_state["sel_data"] == str(real)
    ok(at.radio(key="home_kind").set_value(SIMULATED).run())
    assert at.session_state["sel_data"] == "simulated"
    ok(at.radio(key="home_kind").set_value(REAL).run())
    assert at.text_input(key="home_folder").value == str(real)  # was "" before
    assert at.session_state["sel_data"] == str(real) and any(str(real) in s for s in in_use(at))


def test_real_with_an_empty_folder_does_not_say_simulated_is_in_use(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(app(home, monkeypatch).run())
    assert in_use(at)
    ok(at.radio(key="home_kind").set_value(REAL).run())
    assert not in_use(at)  # it said "In use: Simulated N-MNIST" under the empty folder box
    assert any("Type the folder" in i.value and "Simulated" in i.value for i in at.info)


@pytest.mark.parametrize("suffix", ["", "/NMNIST", "/NMNIST/"])
@pytest.mark.slow
def test_root_and_root_nmnist_are_both_accepted(
    home: Path, real: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    at = ok(app(home, monkeypatch).run())
    at.radio(key="home_kind").set_value(REAL).run()
    ok(at.text_input(key="home_folder").input(str(real) + suffix).run())
    assert not at.error, [e.value for e in at.error]  # ROOT/NMNIST suggested ROOT/NMNIST/NMNIST before
    assert at.session_state["sel_data"] == str(real) and param(at, "data") == str(real)
    assert any(f"N-MNIST ({real})" in s for s in in_use(at))


# ------------------------------------------------------------------ bug 4: one link format


@pytest.mark.slow
def test_the_readme_link_form_is_an_alias_of_data(home: Path, real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(app(home, monkeypatch, source="nmnist", root=str(real)).run())
    assert at.session_state["sel_data"] == str(real)  # ignored before: the simulated set was shown
    assert param(at, "data") == str(real) and param(at, "root") is None and param(at, "source") is None
    assert any(str(real) in s for s in in_use(at))
    at = ok(app(home, monkeypatch, source="simulated").run())
    assert at.session_state["sel_data"] == "simulated"


@pytest.mark.parametrize("page", ["pages/home.py", "pages/events.py", "pages/transforms.py"])
def test_an_unknown_folder_in_the_link_says_so(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    nope = tmp_path / "nope"
    at = app(home, monkeypatch, data=str(nope))
    at.switch_page(page)
    ok(at.run())
    said = [plain(m.value) for m in [*at.error, *at.warning]]
    assert any(f"{nope} is not a folder" in s for s in said), said  # it silently showed the simulated set
    assert param(at, "data") == str(nope)  # the link still reproduces the same view (and the same message)


# ------------------------------------------------------------------ the first view


def test_home_opens_on_one_event_image_per_digit_and_says_what_each_page_is_for(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(app(home, monkeypatch).run())
    images = at.get("image")
    assert len(images) == 1 and images[0].proto.imgs[0].url.endswith(".png")  # a PNG as drawn, not a JPEG
    assert "0 to 9" in images[0].proto.imgs[0].alt
    assert not at.get("plotly_chart")  # Home's first view needs none of plotly's 4.7 MB script
    links = [link.proto.label for link in at.get("page_link")]
    menu = re.findall(r'st\.Page\("pages/(?!home)\w+\.py", title="([^"]+)"', (REPO / "app.py").read_text())
    assert links == [f"**{title}**" for title in menu]  # every page of the menu, in its order
    said = [c.value for c in at.caption]
    for what in ("3D cloud", "Tonic pipeline", "spiking CNN", "count spikes", "draw a digit"):
        assert any(what in line for line in said), said


def test_gallery_shows_the_first_saccade_of_each_digit() -> None:
    import numpy as np

    from core import figures
    from helpers import picture_panel, random_events

    recordings = {d: random_events(500 + d, d, duration_us=315_000) for d in (3, 1, 0, 2, 4, 5, 6, 7, 8, 9)}
    gallery = figures.digit_gallery(recordings)
    (stops,) = set(gallery.stops)  # one colour scale for all ten
    lim = stops[-1][0]
    assert [c for _, c in stops] == [c for _, c in figures.POLARITY_SCALE] and stops[0][0] == -lim  # symmetric
    diffs = []
    for i, d in enumerate(range(10)):  # in digit order
        events = recordings[d]
        first = events[events["t"] < events["t"].min() + figures.SACCADE_US]
        counts = figures.accumulate(first)
        diffs.append(counts[1] - counts[0])
        np.testing.assert_array_equal(picture_panel(gallery, i), figures.ramp_rgb(diffs[-1], stops))
    nonzero = np.abs(np.concatenate([z[z != 0] for z in diffs]))
    assert 1 <= lim <= nonzero.max()  # the 99th percentile: a hot pixel does not wash the images out
    red, white, blue = figures.ramp_rgb(np.array([lim, 0, -lim]), stops)
    assert [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in (red, white, blue)] == [figures.ON_COLOR, "#ffffff",
                                                                               figures.OFF_COLOR]


def test_polarity_colours_match_the_plotly_scale() -> None:
    """The gallery's colours are the polarity heatmaps' (plotly's linear rgb interpolation of POLARITY_SCALE)."""
    import numpy as np
    from plotly.colors import sample_colorscale

    from core import figures

    values = np.linspace(-7.0, 7.0, 29)
    expected = [tuple(int(round(float(c))) for c in rgb[4:-1].split(","))
                for rgb in sample_colorscale(figures.POLARITY_SCALE, list((values + 7.0) / 14.0))]
    got = [tuple(int(c) for c in rgb) for rgb in figures.ramp_rgb(values, figures.polarity_stops(7.0))]
    assert all(max(abs(a - b) for a, b in zip(g, e)) <= 1 for g, e in zip(got, expected)), (got, expected)


# ------------------------------------------------------------------ bugs 12, 13, 14: the app shell


def test_no_page_icon_is_fetched_from_outside() -> None:
    """A :material/...: page icon is a URL on fonts.gstatic.com; an emoji is drawn by the browser."""
    source = (REPO / "app.py").read_text()
    page_icon = re.search(r"page_icon=([^,)]+)", source).group(1)
    assert ":material/" not in page_icon


def test_the_page_icon_is_an_inline_svg_that_needs_no_emoji_catalog() -> None:
    """An emoji page_icon (any non-ASCII string) made Streamlit compile its 5,000-emoji regex: 0.3 to 1 s of a cold
    server's first page. The icon is an SVG data URL, drawn by the browser, fetched from nowhere."""
    from streamlit.commands.page_config import _get_favicon_string

    icon = runpy.run_path(str(REPO / "app.py"), run_name="app")["PAGE_ICON"]
    assert icon.isascii()
    assert _get_favicon_string(icon).startswith("data:image/svg+xml;base64,")


def test_the_toolbar_has_no_deploy_button() -> None:
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"


def test_no_full_garbage_collection_after_every_run() -> None:
    """Streamlit's default gc.collect(2) after each script run cost 0.2 to 0.7 s of every interaction (torch, numba
    and plotly tracked); the browser hears that a run has ended only after it. pages.common freezes the libraries'
    objects after the kernels' warm-up instead."""
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert "gc.freeze()" in (REPO / "pages" / "common.py").read_text()


@pytest.mark.slow
def test_worker_processes_do_not_run_the_app(home: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """Streamlit runs app.py as __main__; a spawned or forkserver worker (the saccade simulator's) imports __main__
    again as __mp_main__. Without the guard the worker ran the whole app in bare mode and logged "Session state does
    not function..." and "missing ScriptRunContext" warnings into the server log."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(home))
    monkeypatch.chdir(REPO)
    main = types.ModuleType("__main__")
    main.__file__ = str(REPO / "app.py")  # what Streamlit's script runner leaves in sys.modules["__main__"]
    monkeypatch.setitem(sys.modules, "__main__", main)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(os.getpid)
    err = capfd.readouterr().err
    assert "Session state does not function" not in err and "missing ScriptRunContext" not in err, err[-2000:]


def test_the_first_views_pictures_reach_the_browser_as_drawn() -> None:
    """Streamlit resamples (bilinear: blurred pixels) a picture wider than its content width, and re-encodes one
    whose format differs: Home's gallery and the Events image are sent byte for byte as drawn."""
    from streamlit.elements.lib.image_utils import _ensure_image_size_and_format
    from streamlit.elements.lib.layout_utils import LayoutConfig

    from core import figures
    from helpers import random_events

    recordings = {d: random_events(600 + d, d, duration_us=315_000) for d in range(10)}
    for picture in (figures.digit_gallery(recordings), figures.event_image(recordings[3])):
        assert _ensure_image_size_and_format(picture.png, LayoutConfig(width="stretch"), "PNG") == picture.png
