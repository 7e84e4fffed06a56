"""core.drawing: a drawing or picture framed as MNIST frames its digits, checked against MNIST itself; uploads refused
with a reason; the vote in words; the loop from ink to answer is the simulator and the network, nothing else.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import drawing
from core.data import SIMULATION_MARKER
from core.drawing import DrawingError, Vote
from core.events import OVERFLOW_Y, NMNISTFormatError, encode_nmnist, make_events
from core.images import DIGIT_BOX, IMAGE_SIZE, load_bundled_mnist
from core.inference import load_network, run_sample
from core.limits import LimitExceeded
from core.model import build_model
from core.runs import RunStore, make_checkpoint
from core.saccade import SimulationConfig, simulate
from core.training import PRESETS
from helpers import random_events

MNIST_SHOWN = 100  # MNIST test images each reference test runs on


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return load_bundled_mnist(0, MNIST_SHOWN)


def png_bytes(pixels: np.ndarray, mode: str | None = None, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=format, **options)
    return buffer.getvalue()


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    values = image.astype(np.float64)
    total = values.sum()
    return float(values.sum(axis=1) @ np.arange(len(values))) / total, float(values.sum(axis=0) @ np.arange(values.shape[1])) / total


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """Height and width of the rows and columns that hold ink."""
    rows, cols = np.flatnonzero(image.max(axis=1)), np.flatnonzero(image.max(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def best_shifted_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of ``a`` with ``b`` moved by at most one pixel each way: centring by mass rounds to whole pixels."""
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = np.roll(b, (dy, dx), axis=(0, 1)).astype(np.float64)
            best = max(best, float(np.corrcoef(a.astype(np.float64).ravel(), moved.ravel())[0, 1]))
    return best


# ---------------------------------------------------------------- MNIST's framing, against MNIST


def test_an_mnist_digit_through_the_framing_is_itself(mnist) -> None:
    images, _ = mnist
    for image in images:
        np.testing.assert_array_equal(drawing.mnist_image(image / 255.0), image)


def test_an_mnist_digit_enlarged_and_moved_on_a_large_canvas_comes_back_close_to_itself(mnist) -> None:
    images, _ = mnist
    correlations = []
    for k, image in enumerate(images):
        big = np.asarray(Image.fromarray(image).resize((250, 250), Image.Resampling.BILINEAR), dtype=np.float64)
        canvas = np.zeros((400, 330))
        top, left = 20 + 3 * (k % 40), 10 + 2 * (k % 30)  # anywhere on the canvas
        canvas[top : top + 250, left : left + 250] = big / 255.0
        framed = drawing.mnist_image(canvas)
        assert framed.dtype == np.uint8 and framed.shape == (IMAGE_SIZE, IMAGE_SIZE)
        assert max(ink_box(framed)) in (DIGIT_BOX, DIGIT_BOX + 1)  # the 20 x 20 box (a spline's fade may add one)
        cy, cx = centre_of_mass(framed)
        assert abs(cy - IMAGE_SIZE / 2) <= 0.75 and abs(cx - IMAGE_SIZE / 2) <= 0.75
        correlations.append(best_shifted_correlation(framed, image))
    assert min(correlations) > 0.8, min(correlations)  # a thin stroke resampled twice loses most
    assert np.median(correlations) > 0.95, np.median(correlations)


@pytest.mark.slow
def test_a_mouse_drawing_of_an_mnist_digit_keeps_its_shape(mnist) -> None:
    images, _ = mnist
    correlations = []
    for image in images:
        rgba = drawing.mouse_drawing(image)
        assert rgba.shape == (drawing.CANVAS_SIZE, drawing.CANVAS_SIZE, 4)
        assert set(np.unique(rgba[..., 3])) <= {0, 255}  # a pen has no grey
        framed = drawing.mnist_image(drawing.canvas_ink(rgba))
        correlations.append(best_shifted_correlation(framed, image))
        assert (framed > 0).sum() >= (image >= 128).sum()  # thicker, never thinner
    assert np.median(correlations) > 0.85, np.median(correlations)


def test_a_small_drawing_is_enlarged_to_the_box_and_a_wide_one_keeps_its_aspect() -> None:
    small = np.zeros((280, 280))
    small[100:110, 130:134] = 1.0  # a short stroke, 10 x 4
    framed = drawing.mnist_image(small)
    assert ink_box(framed)[0] in (DIGIT_BOX, DIGIT_BOX + 1)
    wide = np.zeros((100, 300))
    wide[40:60, 20:280] = 1.0  # 20 x 260: a dash
    height, width = ink_box(drawing.mnist_image(wide))
    assert width == DIGIT_BOX and height <= 3


def test_nothing_drawn_is_refused() -> None:
    with pytest.raises(DrawingError, match="nothing drawn"):
        drawing.mnist_image(np.zeros((280, 280)))


# ---------------------------------------------------------------- ink from a canvas and from pictures


def test_canvas_ink_is_darkness_over_white() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)  # a black stroke
    rgba[0, 1] = (0, 0, 0, 0)  # transparent: paper
    rgba[0, 2] = (255, 255, 255, 255)  # the white ground
    rgba[1, 0] = (0, 0, 0, 128)  # a stroke's antialiased edge
    rgba[1, 1] = (255, 0, 0, 255)  # a red stroke: as dark as its luma
    ink = drawing.canvas_ink(rgba)
    np.testing.assert_allclose(ink[0], [1.0, 0.0, 0.0], atol=1e-6)
    assert ink[1, 0] == pytest.approx(128 / 255, abs=1e-6)
    assert ink[1, 1] == pytest.approx(1 - 0.299, abs=1e-3)
    with pytest.raises(DrawingError):
        drawing.canvas_ink(np.zeros((5, 5), np.uint8))


def test_the_canvas_png_is_read_and_an_outsized_one_refused(mnist) -> None:
    rgba = drawing.mouse_drawing(mnist[0][0])
    np.testing.assert_allclose(drawing.read_canvas(png_bytes(rgba, "RGBA")), drawing.canvas_ink(rgba))
    huge = np.zeros((drawing.CANVAS_SIZE * 5, 10, 4), np.uint8)
    with pytest.raises(DrawingError, match="a canvas is"):
        drawing.read_canvas(png_bytes(huge, "RGBA"))
    with pytest.raises(DrawingError, match="cannot be decoded"):
        drawing.read_canvas(b"data:not a png")


def photo(digit: np.ndarray, dark_ink: bool, size: int = 600, seed: int = 0) -> np.ndarray:
    """An MNIST digit as a grey photo of paper: noise and a shadow, the digit off-centre."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((300, 300), Image.Resampling.BILINEAR), dtype=np.float64) / 255
    page = np.full((size, size), 0.0)
    page[150:450, 200:500] = big
    shade = np.linspace(0, 0.1, size)[None, :]  # a shadow across the page
    if dark_ink:
        gray = 0.85 - 0.7 * page - shade + rng.normal(0, 0.03, page.shape)
    else:
        gray = 0.1 + 0.8 * page + shade + rng.normal(0, 0.03, page.shape)
    return np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dark_ink", [True, False], ids=["dark ink on paper", "light ink on black"])
@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_a_photo_of_a_digit_is_framed_as_the_digit(mnist, dark_ink: bool, format: str) -> None:
    image = mnist[0][3]
    data = png_bytes(photo(image, dark_ink), format=format, **({"quality": 85} if format == "JPEG" else {}))
    framed = drawing.mnist_image(drawing.read_picture(data))
    assert best_shifted_correlation(framed, image) > 0.85


def test_a_picture_with_transparency_is_laid_over_white(mnist) -> None:
    rgba = drawing.mouse_drawing(mnist[0][1])  # black strokes on transparent: what a drawing app exports
    framed = drawing.mnist_image(drawing.read_picture(png_bytes(rgba, "RGBA")))
    assert best_shifted_correlation(framed, mnist[0][1]) > 0.8


def test_a_blank_picture_has_no_ink() -> None:
    flat = np.full((200, 200), 200, np.uint8) + np.random.default_rng(0).integers(0, 8, (200, 200)).astype(np.uint8)
    ink = drawing.read_picture(png_bytes(flat))
    assert not ink.any()
    with pytest.raises(DrawingError):
        drawing.mnist_image(ink)


def test_uploads_that_are_not_pictures_or_too_large_are_refused() -> None:
    with pytest.raises(DrawingError, match="not a PNG or JPEG picture"):
        drawing.read_picture(b"%PDF-1.4 not a picture at all")
    with pytest.raises(DrawingError, match="not a PNG or JPEG picture"):
        drawing.read_picture(png_bytes(np.zeros((8, 8), np.uint8), format="GIF"))  # a picture, not one of ours
    with pytest.raises(DrawingError, match="empty"):
        drawing.read_picture(b"")
    truncated = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:200]
    with pytest.raises(DrawingError, match="cannot be decoded"):
        drawing.read_picture(truncated)
    with pytest.raises(LimitExceeded) as refused:
        drawing.read_picture(png_bytes(np.zeros((64, 64), np.uint8)), max_bytes=50)
    assert refused.value.field == "upload_image_bytes"
    bomb = png_bytes(np.zeros((7000, 7000), bool), "1")  # 49 megapixels in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(DrawingError, match="megapixels"):
        drawing.read_picture(bomb)


def test_the_upload_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_LIMIT_UPLOAD_IMAGE_BYTES", "100")
    with pytest.raises(LimitExceeded, match="the limit is 100 bytes"):
        drawing.read_picture(png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))


# ---------------------------------------------------------------- recordings


def test_an_uploaded_recording_is_its_events() -> None:
    events = random_events(3000, 1)
    np.testing.assert_array_equal(drawing.read_recording(encode_nmnist(events)), events)


def test_a_recording_out_of_time_order_is_sorted() -> None:
    events = random_events(50, 2)
    shuffled = events[::-1].copy()
    np.testing.assert_array_equal(drawing.read_recording(encode_nmnist(shuffled))["t"], np.sort(events["t"]))


def test_damaged_empty_and_oversized_recordings_are_refused() -> None:
    data = encode_nmnist(random_events(100, 3))
    with pytest.raises(NMNISTFormatError, match="truncated"):
        drawing.read_recording(data[:-2])
    with pytest.raises(NMNISTFormatError, match="empty"):
        drawing.read_recording(b"")
    with pytest.raises(NMNISTFormatError, match="outside the 34 x 34 sensor"):
        drawing.read_recording(bytes([200, 3, 0, 0, 1]))
    with pytest.raises(NMNISTFormatError, match="over the"):
        drawing.read_recording(data, max_bytes=100)
    only_markers = bytes([0, OVERFLOW_Y, 0, 0, 0]) * 3
    with pytest.raises(DrawingError, match="no events"):
        drawing.read_recording(only_markers)


# ---------------------------------------------------------------- the simulator's settings


def test_the_simulation_settings_are_the_data_sets(tmp_path: Path) -> None:
    config = SimulationConfig(contrast_threshold=0.25, noise_rate_hz=0.0)
    (tmp_path / SIMULATION_MARKER).write_text(json.dumps({"config": config.to_dict()}))
    found, where = drawing.simulation_config(tmp_path)
    assert found == config and str(tmp_path) in where
    real = tmp_path / "real"
    real.mkdir()
    assert drawing.simulation_config(real) == (SimulationConfig(), drawing.simulation_config(None)[1])
    (real / SIMULATION_MARKER).write_text(json.dumps({"config": {"no_such_field": 1}}))
    found, where = drawing.simulation_config(real)
    assert found == SimulationConfig() and "do not fit" in where


def test_a_drawing_is_recorded_by_the_simulator(mnist) -> None:
    config = SimulationConfig(noise_rate_hz=1.0)
    image = mnist[0][5]
    np.testing.assert_array_equal(drawing.recording(image, config), simulate(image, config, seed=drawing.SIMULATION_SEED))


# ---------------------------------------------------------------- the vote


def test_the_vote_in_numbers_and_words() -> None:
    vote = Vote((0, 2, 0, 6, 0, 0, 0, 0, 0, 0))
    assert vote.predicted == 3 and vote.total == 8 and vote.confidence == pytest.approx(0.75) and vote.runner_up == 1
    assert vote.explain() == "Output neuron 3 spiked 6 of 8 times (75%); the runner-up, 1, spiked 2 times."
    alone = Vote((0, 0, 4, 0, 0, 0, 0, 0, 0, 0))
    assert alone.confidence == 1.0 and alone.runner_up is None and "no other neuron spiked" in alone.explain()
    tie = Vote((0, 0, 0, 0, 3, 0, 0, 3, 0, 0))
    assert tie.predicted == 4 and tie.runner_up == 7 and "tied with 7: the lower label wins" in tie.explain()
    silent = Vote((0,) * 10)
    assert silent.predicted is None and silent.confidence == 0.0 and "no guess" in silent.explain()
    population = Vote((0, 2, 0, 26, 0, 0, 0, 0, 0, 0), population=10)  # a class's count sums its ten neurons' spikes
    assert population.explain().startswith("Class 3's 10 output neurons spiked 26 of 28 times (93%)")


@pytest.fixture()
def network(tmp_path: Path):
    """A quick-preset run with seeded random weights, loaded as the page loads it."""
    store = RunStore(tmp_path / "runs")
    run = store.create_run("quick")
    config = PRESETS["quick"]
    run.write_config(config.to_dict())
    torch.manual_seed(3)
    run.save_checkpoint("best", make_checkpoint(build_model(config.model), config.model, iteration=1,
                                                train_config=config))
    return load_network(store, run.run_id)


def test_the_loop_is_the_framing_the_simulator_and_the_network(mnist, network, one_torch_thread) -> None:
    image = mnist[0][7]
    ink = drawing.canvas_ink(drawing.mouse_drawing(image))
    seen = drawing.see_drawing(network, ink, SimulationConfig())
    np.testing.assert_array_equal(seen.image, drawing.mnist_image(ink))
    np.testing.assert_array_equal(seen.events, simulate(seen.image, SimulationConfig(), seed=drawing.SIMULATION_SEED))
    spk, mem = run_sample(network, seen.events)
    np.testing.assert_array_equal(seen.answer.spikes, spk)
    np.testing.assert_array_equal(seen.answer.membrane, mem)
    assert seen.answer.vote.counts == tuple(int(c) for c in spk.sum(axis=0))


def test_a_recording_whose_frames_are_over_the_budget_is_refused_before_the_network_runs(network) -> None:
    n = 1000
    hours = make_events(np.full(n, 5), np.full(n, 5), np.linspace(0, 3_600e6, n).astype(np.int64), np.ones(n, int))
    with pytest.raises(LimitExceeded, match="frames"):
        drawing.classify(network, hours)
    drawing.check_frames(network, hours, limit_bytes=2**40)  # within a larger budget: no refusal
