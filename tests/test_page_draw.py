"""The Draw page through the app's entry point (AppTest): a drawing, a picture and a recording answered; an empty
canvas, a file that is not a picture, a picture over the limit, a damaged recording and a missing network each told
apart with nothing computed; one click trains a network, in the Training page's registry.

The canvas is a Streamlit component: AppTest sets its state as the browser sends it after a stroke (the canvas's
objects and its PNG). Runs are written directly (test_page_spike_counter.write_run: a network that always votes
for one digit), except where the test is the quick training itself.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apphelpers import metrics, open_with_home, page_text, write_run
from core import drawing
from core.events import encode_nmnist
from core.images import load_bundled_mnist
from helpers import random_events, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = "pages/draw.py"
TIMEOUT = 120


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A data home of its own: the tiny default set; runs are written by each test."""
    home = tmp_path / "home"
    write_tiny_dataset(home / "simulated")
    return home


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return load_bundled_mnist(0, 1)[0][0]  # a 7


def open_page(home: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    """A new session (a new browser opening a link) on the Draw page, with ``params`` in its URL."""
    return open_with_home(PAGE, home, monkeypatch, TIMEOUT, **params)


def png(pixels: np.ndarray, mode: str | None = None, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=format)
    return buffer.getvalue()


def draw(at: AppTest, rgba: np.ndarray, strokes: int = 1) -> AppTest:
    """What the browser sends when a stroke ends: the canvas's objects and its picture as a PNG data URL."""
    url = "data:image/png;base64," + base64.b64encode(png(rgba, "RGBA")).decode()
    objects = [{"type": "path", "path": [["M", 0, 0]]} for _ in range(strokes)]
    at.session_state["draw_canvas"] = {"drawing": {"raw": {"objects": objects, "background": "#ffffff"}, "data": url},
                                       "backgroundFit": None}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "application/octet-stream") -> AppTest:
    if at.session_state["draw_input"] != "upload":
        at.button_group(key="draw_input").set_value("upload").run()
    at.get("file_uploader")[0].set_value((name, data, mime))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote, as its markdown source, unescaped."""
    return page_text(at).replace("\\", "")


def computed(at: AppTest) -> bool:
    """Whether the page shows an answer (any metric or chart)."""
    return bool(at.metric) or bool(at.get("plotly_chart")) or bool(at.get("image"))


def with_run(home: Path, votes_for: int = 3, **kwargs) -> str:
    return write_run(home, "finished", 0.9, time.time() - 60, votes_for=votes_for, **kwargs)


# ---------------------------------------------------------------- answers


@pytest.mark.slow
def test_a_drawing_is_framed_recorded_and_answered(home: Path, monkeypatch: pytest.MonkeyPatch, digit) -> None:
    run_id = with_run(home, votes_for=3)
    at = open_page(home, monkeypatch)
    assert not computed(at) and "Draw a digit in the box" in texts(at)  # the empty canvas: an instruction
    assert at.query_params["run"] == run_id and at.query_params["input"] == "draw"
    draw(at, drawing.mouse_drawing(digit))
    assert metrics(at) == {"predicted": "3", "confidence": "100%", "output spikes": metrics(at)["output spikes"]}
    assert int(metrics(at)["output spikes"]) > 0
    written = texts(at)
    assert "Output neuron 3 spiked" in written and "no other neuron spiked" in written
    assert f"Answered by run {run_id}" in written and "Recorded by the simulated camera" in written
    assert len(at.get("plotly_chart")) == 3  # the spike counts, the 3D events, the three saccade images
    assert len(at.get("image")) == 1  # the 28 x 28 digit the camera watches


@pytest.mark.slow
def test_the_link_names_the_network_and_an_unknown_one_falls_back_with_a_warning(
        home: Path, monkeypatch: pytest.MonkeyPatch, digit) -> None:
    best = write_run(home, "finished", 0.95, time.time() - 600, votes_for=1)
    other = write_run(home, "finished", 0.5, time.time() - 60, votes_for=8)
    at = open_page(home, monkeypatch, run=other)
    assert at.selectbox(key="draw_run").value == other
    assert metrics(draw(at, drawing.mouse_drawing(digit)))["predicted"] == "8"
    at = open_page(home, monkeypatch, run="no-such-run")
    assert at.selectbox(key="draw_run").value == best and at.query_params["run"] == best
    assert "The link names run no-such-run, which cannot answer here" in texts(at)
    assert metrics(draw(at, drawing.mouse_drawing(digit)))["predicted"] == "1"


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
@pytest.mark.slow
def test_an_uploaded_picture_is_answered(home: Path, monkeypatch: pytest.MonkeyPatch, digit, format: str) -> None:
    with_run(home, votes_for=5)
    at = open_page(home, monkeypatch, input="upload")
    assert not computed(at) and "Upload a picture of a digit" in texts(at)
    paper = 255 - np.asarray(Image.fromarray(digit).resize((200, 200)))  # dark ink on white
    upload(at, f"digit.{format.lower()}", png(paper, format=format))
    assert metrics(at)["predicted"] == "5" and len(at.get("image")) == 1
    assert "The picture digit." in texts(at)


@pytest.mark.slow
def test_an_uploaded_recording_is_answered_without_simulation(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_run(home, votes_for=6)
    at = open_page(home, monkeypatch)
    events = random_events(4000, 7, duration_us=300_000, around=(17, 17), spread=8)
    upload(at, "00042.bin", encode_nmnist(events))
    assert metrics(at)["predicted"] == "6"
    assert "The recording 00042.bin (4,000 events), as it is: no simulation." in texts(at)
    assert not at.get("image")  # no drawing, no framed image
    assert len(at.get("plotly_chart")) == 3


# ---------------------------------------------------------------- refusals: a message, nothing computed


def test_an_empty_or_blank_canvas_computes_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_run(home)
    at = open_page(home, monkeypatch)
    blank = np.zeros((drawing.CANVAS_SIZE, drawing.CANVAS_SIZE, 4), np.uint8)
    draw(at, blank, strokes=0)  # strokes undone: the canvas sends no objects
    assert not computed(at) and "Draw a digit in the box" in texts(at)
    blank[..., :] = 255  # an object that left no ink (a white stroke on the white ground)
    draw(at, blank)
    assert not computed(at) and "This cannot be used: there is nothing drawn." in texts(at)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("notes.png", b"these are notes, not a picture", "This cannot be used: the file is not a PNG or JPEG picture."),
    ("photo.jpg", "truncated jpeg", "This cannot be used: the picture cannot be decoded (image file is truncated"),
    ("00001.bin", bytes(7), "This is not a readable N-MNIST recording: truncated: 7 bytes"),
    ("00002.bin", bytes([200, 3, 0, 0, 1]), "This is not a readable N-MNIST recording: event 0 at (x=200, y=3)"),
    ("00003.bin", b"", "This is not a readable N-MNIST recording: empty file (0 bytes)."),
], ids=["text named png", "broken jpeg", "truncated bin", "bin off the sensor", "empty bin"])
@pytest.mark.slow
def test_a_bad_file_is_refused_with_a_reason(home: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes | str,
                                             message: str) -> None:
    if data == "truncated jpeg":  # a real JPEG's first 400 bytes
        data = png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), format="JPEG")[:400]
    with_run(home)
    at = upload(open_page(home, monkeypatch), name, data)
    assert not computed(at)
    assert message in texts(at), texts(at)


def test_a_picture_over_the_limit_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch, digit) -> None:
    with_run(home)
    monkeypatch.setenv("NMNIST_LIMIT_UPLOAD_IMAGE_BYTES", "2000")
    noisy = np.random.default_rng(0).integers(0, 255, (120, 120), dtype=np.uint8)  # ~14 kB as PNG
    at = upload(open_page(home, monkeypatch), "big.png", png(noisy))
    assert not computed(at)
    assert "Too large: this picture needs" in texts(at) and "the limit is 2.0 kB" in texts(at)


def test_a_recording_that_would_make_too_many_frames_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_run(home)
    events = random_events(500, 3, duration_us=8_000_000)  # 8 s: 267 frames of 30 ms
    monkeypatch.setenv("NMNIST_LIMIT_SAMPLE_FRAMES_BYTES", "100000")
    at = upload(open_page(home, monkeypatch), "long.bin", encode_nmnist(events))
    assert not computed(at) and "Too large:" in texts(at) and "frames" in texts(at)


# ---------------------------------------------------------------- no network yet


def test_without_a_network_the_page_offers_a_quick_training_and_computes_nothing(
        home: Path, monkeypatch: pytest.MonkeyPatch, digit) -> None:
    at = open_page(home, monkeypatch)
    assert "No trained network yet" in texts(at)
    assert at.button(key="draw_train").label == "Train a network now"
    draw(at, drawing.mouse_drawing(digit))
    assert not computed(at) and "The answer appears here once a network has been trained." in texts(at)
    upload(at, "00001.bin", encode_nmnist(random_events(100, 1)))
    assert not computed(at)


def test_one_click_trains_the_quick_preset_and_its_network_then_answers(
        home: Path, monkeypatch: pytest.MonkeyPatch, digit) -> None:
    from core.training import config as training_config

    quick = training_config.PRESETS["quick"]  # one iteration: the test is the click, not the training
    monkeypatch.setitem(training_config.PRESETS, "quick", dataclasses.replace(quick, max_iters=1, eval_every=1))
    at = open_page(home, monkeypatch)
    at.button(key="draw_train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = list((home / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "config.json").is_file()
    assert at.get("progress") and "Training run " + runs[0].name in at.get("progress")[0].proto.text.replace("\\", "")
    deadline = time.monotonic() + 300
    # the job ends (status set) before it removes its RUNNING marker, which is written at its start
    while not (runs[0] / "results.json").is_file() or (runs[0] / "RUNNING").exists():
        assert time.monotonic() < deadline, "the one-click training did not end within 300 s"
        time.sleep(0.5)
    at.run()  # what the progress fragment's next tick does once the job has ended
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="draw_run").value == runs[0].name
    draw(at, drawing.mouse_drawing(digit))
    assert "predicted" in metrics(at)


def test_every_page_gets_the_one_training_registry_and_run_list() -> None:
    """One training at a time whichever page starts it: the registry, run list and evaluations in progress are
    defined once (pages/runs.py), and no page defines its own."""
    own = ("registry", "run_store", "run_choices", "evaluation_jobs", "load_failures", "listed_runs", "url_choice")
    for page in sorted((REPO / "pages").glob("*.py")):
        if page.name == "runs.py":
            continue
        defined = {n.name for n in ast.parse(page.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert not defined & set(own), (page.name, defined & set(own))


@pytest.mark.slow
def test_the_input_is_in_the_link_and_a_click_on_the_chosen_one_keeps_it(home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with_run(home)
    at = open_page(home, monkeypatch, input="upload")
    assert at.button_group(key="draw_input").value == "upload" and at.get("file_uploader")
    at.button_group(key="draw_input").set_value(None).run()  # a click on the chosen option unselects it
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["draw_input"] == "draw" and at.query_params["input"] == "draw"
    at = open_page(home, monkeypatch, input="<script>")  # a link with no such input: drawing
    assert at.button_group(key="draw_input").value == "draw"
