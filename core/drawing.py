"""A digit a person draws or uploads, as the network sees it: an MNIST image, its saccade recording, the vote.

What the Draw page does, without Streamlit:

- :func:`canvas_ink` (a mouse drawing's RGBA pixels) or :func:`read_picture` (an uploaded PNG or
  JPEG) give the ink, a float array in 0..1 of any size;
- :func:`mnist_image` fits the ink MNIST's way (longer side 20 pixels, antialiased; centre of mass
  in the middle of 28 x 28, by :func:`core.images.center_digit`);
- :func:`recording` simulates the saccades over it with the data set's :class:`SimulationConfig`
  (:func:`simulation_config` reads its ``simulation.json``), or :func:`read_recording` decodes an
  uploaded N-MNIST ``.bin``;
- :func:`classify` runs a trained network on the events and says what it votes, and how surely.

:func:`mouse_drawing` turns an MNIST image into what a person drawing it with a mouse would hand
the page (binary strokes of a pen's width): the benchmark measures the pipeline on those.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data import read_simulation_info
from core.events import NMNISTFormatError, decode_nmnist, too_large
from core.images import DIGIT_BOX, IMAGE_SIZE, center_digit
from core.inference import Network, run_sample, voters
from core.limits import check_bytes, limits
from core.saccade import SimulationConfig, simulate

CANVAS_SIZE = 280  # the drawing canvas, in screen pixels: 10 x MNIST's 28
MAX_CANVAS_RATIO = 4  # a dense screen sends the canvas at its pixel ratio (2 on most laptops)
PEN_WIDTH = 20  # its pen: 2 MNIST pixels once a digit of the canvas's height is fitted to 20 pixels, as MNIST strokes
MAX_PICTURE_PIXELS = 40_000_000  # an uploaded picture's width x height: a phone photo is 12 to 48 MP; more is refused
PICTURE_WORKING_SIZE = 560  # pictures are decoded (JPEG) or reduced to about this longer side before anything else
INK_FLOOR = 0.25  # of a picture's ink contrast: below it is paper texture, shadow or JPEG noise, not ink
SPECK_FRACTION = 0.05  # a picture's blot of ink with less than this share of its largest blot's ink is dust
MIN_CONTRAST = 0.15  # a picture whose darkest ink differs less from its paper than this holds no digit
PICTURE_FORMATS = ("PNG", "JPEG")
RECORDING_SUFFIX = ".bin"
SACCADES = 3  # N-MNIST's saccades: the three sides of a triangle
SIMULATION_SEED = 0  # one drawing, one recording: the same strokes always give the same events


class DrawingError(ValueError):
    """Input the page cannot use (an empty canvas, a file that is not a picture or a recording); says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


# ---------------------------------------------------------------- ink: what was drawn, 0 (paper) to 1 (ink)


def canvas_ink(rgba: np.ndarray) -> np.ndarray:
    """The ink of a canvas's RGBA pixels ``(H, W, 4)`` uint8: dark strokes over a light or transparent ground.

    Each pixel is laid over white (a transparent canvas is paper), then its darkness is the ink.
    """
    pixels = np.asarray(rgba)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.size == 0:
        raise DrawingError(f"a canvas image is H x W x 4 (RGBA) pixels, got shape {pixels.shape}")
    rgb = pixels[..., :3].astype(np.float32) / 255.0
    alpha = pixels[..., 3].astype(np.float32) / 255.0 if pixels.shape[2] == 4 else np.ones(pixels.shape[:2], np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as PIL's convert("L")
    return np.clip(1.0 - (gray * alpha + (1.0 - alpha)), 0.0, 1.0)


def read_canvas(png: bytes) -> np.ndarray:
    """The ink of the canvas's PNG (what the browser sends after each stroke), checked before it is decoded.

    The canvas is :data:`CANVAS_SIZE` pixels square, times the screen's pixel ratio (up to 4);
    anything larger, or not a PNG, did not come from the canvas and raises :class:`DrawingError`.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png), formats=("PNG",)) as picture:
            if max(picture.size) > MAX_CANVAS_RATIO * CANVAS_SIZE:
                raise DrawingError(f"the canvas sent a {picture.size[0]} x {picture.size[1]} picture; a canvas is "
                                   f"{CANVAS_SIZE} x {CANVAS_SIZE} (up to {MAX_CANVAS_RATIO} x that on a dense screen)")
            rgba = np.asarray(picture.convert("RGBA"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DrawingError(f"the canvas's picture cannot be decoded ({_first_line(exc)})") from None
    return canvas_ink(rgba)


def picture_ink(gray: np.ndarray) -> np.ndarray:
    """The ink of a grayscale picture (0..255): dark ink on paper or light ink on black, told apart by the border.

    The paper's level is the median of the border pixels; ink is the difference from it,
    stretched so that the strongest ink (the 99.5th percentile, or half the maximum where
    that is higher) is 1, and cut below
    :data:`INK_FLOOR` (paper texture, shadows, JPEG noise) and rid of specks, so the digit's box
    is its own.
    All zero where nothing stands out from the paper by :data:`MIN_CONTRAST`.
    """
    values = np.asarray(gray, dtype=np.float32) / 255.0
    if values.ndim != 2 or values.size == 0:
        raise DrawingError(f"a picture is H x W gray levels, got shape {values.shape}")
    border = np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])
    paper = float(np.median(border))
    ink = (paper - values) if paper >= 0.5 else (values - paper)
    np.clip(ink, 0.0, None, out=ink)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        return np.zeros_like(ink)
    peak = max(float(np.percentile(ink, 99.5)), 0.5 * strongest)  # a thin digit on a large page: its own peak
    ink = np.clip((np.minimum(ink / peak, 1.0) - INK_FLOOR) / (1.0 - INK_FLOOR), 0.0, 1.0)
    return _without_specks(ink)


def _without_specks(ink: np.ndarray) -> np.ndarray:
    """``ink`` without the blots much smaller than its largest (dust, a JPEG block, the page's edge): they would
    widen the digit's box. A blot is kept where its ink is at least :data:`SPECK_FRACTION` of the largest's."""
    from scipy import ndimage

    labels, n = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return ink
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], mass >= SPECK_FRACTION * mass.max()])
    return np.where(keep[labels], ink, 0.0).astype(ink.dtype)


def read_picture(data: bytes, max_bytes: int | None = None) -> np.ndarray:
    """The ink of an uploaded PNG or JPEG (any size up to the limits), reduced to about 560 pixels on its longer side.

    Raises :class:`~core.limits.LimitExceeded` for a file over ``max_bytes`` (default:
    ``limits().upload_image_bytes``) and :class:`DrawingError` for anything that is not
    a PNG or JPEG picture, or one of more than :data:`MAX_PICTURE_PIXELS` pixels (checked
    from its header, before it is decoded). A transparent picture is laid over white.
    """
    from PIL import Image, UnidentifiedImageError

    limit = limits().upload_image_bytes if max_bytes is None else max_bytes
    check_bytes("upload_image_bytes", len(data), limit, "this picture")
    if not data:
        raise DrawingError("the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=PICTURE_FORMATS) as picture:
            width, height = picture.size
            if width * height > MAX_PICTURE_PIXELS:
                raise DrawingError(f"the picture is {width:,} x {height:,} pixels; the limit is "
                                   f"{MAX_PICTURE_PIXELS / 1e6:.0f} megapixels")
            if picture.format == "JPEG":
                picture.draft("L", (PICTURE_WORKING_SIZE, PICTURE_WORKING_SIZE))  # decode at 1/2 .. 1/8 scale
            picture.load()
            if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
                ground = Image.new("RGBA", picture.size, (255, 255, 255, 255))
                picture = Image.alpha_composite(ground, picture.convert("RGBA"))
            picture = picture.convert("L")
            if max(picture.size) > PICTURE_WORKING_SIZE:
                picture.thumbnail((PICTURE_WORKING_SIZE, PICTURE_WORKING_SIZE), Image.Resampling.BOX)
            gray = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise DrawingError("the file is not a PNG or JPEG picture") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # a truncated or damaged file: Pillow's own words
        raise DrawingError(f"the picture cannot be decoded ({_first_line(exc)})") from None
    return picture_ink(gray)


# ---------------------------------------------------------------- MNIST's framing


def mnist_image(ink: np.ndarray) -> np.ndarray:
    """Ink (any size, 0..1) as an MNIST digit: uint8 ``(28, 28)``, bright ink on black, 20 x 20 box, centred by mass.

    The ink's box is first scaled to 20 pixels on its longer side: reduced by area averaging
    (the antialiasing of MNIST's own reduction of NIST's binary scans; a plain spline would drop
    strokes between its samples), or enlarged bilinearly (a spline would ring past the box);
    :func:`core.images.center_digit` then finds it fitted (scale 1) and moves its centre of mass
    to the middle. Raises :class:`DrawingError` where there is no ink.
    """
    from PIL import Image

    ink = np.asarray(ink, dtype=np.float32)
    rows = np.flatnonzero(ink.max(axis=1) > 0) if ink.ndim == 2 else np.zeros(0)
    if rows.size == 0:
        raise DrawingError("there is nothing drawn")
    cols = np.flatnonzero(ink.max(axis=0) > 0)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    longer = max(crop.shape)
    if longer != DIGIT_BOX:
        size = (max(1, round(crop.shape[1] * DIGIT_BOX / longer)), max(1, round(crop.shape[0] * DIGIT_BOX / longer)))
        resample = Image.Resampling.BOX if longer > DIGIT_BOX else Image.Resampling.BILINEAR
        crop = np.asarray(Image.fromarray(crop, mode="F").resize(size, resample), dtype=np.float32)
        crop = np.clip(crop, 0.0, 1.0)
    field = center_digit(crop * 255.0, size=IMAGE_SIZE, box=DIGIT_BOX)
    image = np.clip(np.rint(field), 0, 255).astype(np.uint8)
    if not image.any():
        raise DrawingError("the drawing is too faint to see")
    return image


def mouse_drawing(image: np.ndarray, size: int = CANVAS_SIZE, thicken_px: int = 4) -> np.ndarray:
    """An MNIST digit as a person would draw it on the canvas: RGBA ``(size, size, 4)``, black opaque strokes.

    The digit is enlarged to the canvas (bilinear), binarised at half intensity (a pen has
    no grey) and thickened by ``thicken_px`` canvas pixels all round (a mouse pen's strokes
    are wider than MNIST's thin ones); everything else is transparent.
    """
    from PIL import Image
    from scipy import ndimage

    digit = np.asarray(image, dtype=np.uint8)
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    strokes = big >= 128
    if thicken_px > 0:
        r = int(thicken_px)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        strokes = ndimage.binary_dilation(strokes, structure=xx**2 + yy**2 <= r * r)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = np.where(strokes, 255, 0)
    return rgba


# ---------------------------------------------------------------- events


def simulation_config(root: str | os.PathLike[str] | None) -> tuple[SimulationConfig, str]:
    """The saccade simulator's settings a data set was made with (its ``simulation.json``), and where they came from.

    A folder without one (real N-MNIST), or with settings this version cannot read, gets the
    calibrated defaults (fitted to real recordings): the second value says which, in words.
    """
    info = read_simulation_info(root) if root is not None else None
    values = info.get("config") if info else None
    if isinstance(values, dict):
        try:
            return SimulationConfig.from_dict(values), f"the settings of the data set in {root}"
        except (TypeError, ValueError):
            return SimulationConfig(), f"the calibrated defaults (the settings in {root} do not fit this version)"
    return SimulationConfig(), "the calibrated defaults (fitted to real N-MNIST recordings)"


def recording(image: np.ndarray, config: SimulationConfig | None = None) -> np.ndarray:
    """The simulated N-MNIST recording of a 28 x 28 digit: three saccades, events sorted by time."""
    return simulate(image, config or SimulationConfig(), seed=SIMULATION_SEED)


def read_recording(data: bytes, max_bytes: int | None = None) -> np.ndarray:
    """The events of an uploaded N-MNIST ``.bin`` (sorted by time, as a recording's are).

    Raises :class:`~core.limits.LimitExceeded` over ``max_bytes`` (default: the event-file
    budget), :class:`~core.events.NMNISTFormatError` for a damaged file, and
    :class:`DrawingError` for one that holds no events.
    """
    limit = limits().event_file_bytes if max_bytes is None else max_bytes
    if len(data) > limit:
        raise NMNISTFormatError("the upload", too_large(len(data), limit))
    events = decode_nmnist(data, path="the upload")
    if len(events) == 0:
        raise DrawingError("the recording holds no events (only timestamp-overflow markers)")
    order = np.argsort(events["t"], kind="stable")
    return events if np.all(order[:-1] < order[1:]) else events[order]


def check_frames(network: Network, events: np.ndarray, limit_bytes: int | None = None) -> None:
    """Refuse (:class:`~core.limits.LimitExceeded`) a recording whose frames for ``network`` exceed the sample budget.

    A real recording lasts 0.3 s; a crafted one can last hours and make millions of frames.
    """
    from core.training import transform_steps
    from core.transforms import check_sizes, from_json

    pipeline = from_json(transform_steps(network.transform))
    duration = float(events["t"][-1] - events["t"][0]) if len(events) else 0.0
    limit = limits().sample_frames_bytes if limit_bytes is None else limit_bytes
    check_sizes(pipeline.size_estimates(len(events), duration), limit)


# ---------------------------------------------------------------- the network's vote


@dataclass(frozen=True)
class Vote:
    """What the output layer says about one recording: spike counts per class and the class that spiked most."""

    counts: tuple[int, ...]
    population: int = 1  # output neurons a class: each count is a class's neurons' spikes summed

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def predicted(self) -> int | None:
        """The output neuron with the most spikes (the lowest label on a tie, as training's argmax); None if none spiked."""
        return int(np.argmax(self.counts)) if self.total > 0 else None

    @property
    def confidence(self) -> float:
        """The winner's share of all output spikes (0 where none spiked): 1.0 when no other neuron spiked at all."""
        return self.counts[self.predicted] / self.total if self.predicted is not None else 0.0

    @property
    def runner_up(self) -> int | None:
        """The second most spiking class (None where fewer than two classes spiked)."""
        if self.predicted is None:
            return None
        others = [(c, -k) for k, c in enumerate(self.counts) if k != self.predicted and c > 0]
        return -max(others)[1] if others else None

    def explain(self) -> str:
        """The vote in a sentence (plain text, numbers only)."""
        if self.predicted is None:
            return "No output neuron spiked: the network makes no guess. Draw larger or bolder strokes."
        top = self.counts[self.predicted]
        text = f"{voters(self.predicted, self.population)} spiked {top} of {self.total} times ({self.confidence:.0%})"
        if self.runner_up is None:
            return text + "; no other neuron spiked."
        second = self.counts[self.runner_up]
        if second == top:
            return text + f", tied with {self.runner_up}: the lower label wins, as in training."
        return text + f"; the runner-up, {self.runner_up}, spiked {second} {'time' if second == 1 else 'times'}."


@dataclass(frozen=True)
class Answer:
    """A network's answer on one recording: the output spikes and membrane potentials ``(time, 10)``, and the vote."""

    spikes: np.ndarray
    membrane: np.ndarray
    vote: Vote


def classify(network: Network, events: np.ndarray) -> Answer:
    """Run ``network`` on one recording (its frames checked against the budget first)."""
    check_frames(network, events)
    spk, mem = run_sample(network, events)
    return Answer(spk, mem, Vote(tuple(int(c) for c in np.asarray(spk).sum(axis=0)), network.population))


@dataclass(frozen=True)
class Seen:
    """A drawing through the whole pipeline: the MNIST image, its recording and the network's answer."""

    image: np.ndarray  # uint8 (28, 28)
    events: np.ndarray
    answer: Answer


def see_drawing(network: Network, ink: np.ndarray, config: SimulationConfig | None = None) -> Seen:
    """Ink -> MNIST image -> simulated saccades -> the network's answer: the loop from a stroke to a guess."""
    image = mnist_image(ink)
    events = recording(image, config)
    return Seen(image, events, classify(network, events))


def answer_figures(events: np.ndarray, spikes: np.ndarray) -> tuple[Any, Any, Any]:
    """What the page draws of an answer: the 3D event cloud, the three saccade images and the spike-count animation.

    The saccade images split the recording's span in three equal parts: N-MNIST's saccades
    take 105 ms each, back to back.
    """
    from core import figures
    from core.inference import output_labels

    start, end = (int(events["t"][0]), int(events["t"][-1])) if len(events) else (0, 0)
    edges = np.linspace(start, end, SACCADES + 1) / 1000
    titles = [f"{a:,.0f}–{b:,.0f} ms" for a, b in zip(edges[:-1], edges[1:])]
    frames = figures.event_grid_frames(events, n_time_bins=SACCADES)
    return (figures.event_cloud_figure(events), figures.event_grid_figure(frames, subtitles=titles),
            figures.spike_count_figure(spikes, output_labels(np.asarray(spikes).shape[1])))


def warm_up() -> None:
    """Record a blank field once: loads (or compiles) the simulator's kernel, seconds a first drawing would wait."""
    recording(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
