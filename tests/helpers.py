"""What several test files share: random events, data folders in the real N-MNIST layout, exact comparison.

Tests make their own data, as tonic's own tests do (``test/utils.py::create_random_input``): events drawn
from a seeded generator, written in the real file format and folder layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from core.data import SIMULATION_MARKER
from core.events import make_events, write_nmnist


def random_events(
    n: int,
    seed: int | Sequence[int] | np.random.Generator = 0,
    *,
    duration_us: int = 300_000,
    width: int = 34,
    height: int = 34,
    around: tuple[int, int] | None = None,
    spread: int = 2,
    full_span: bool = False,
) -> np.ndarray:
    """``n`` random events of random polarity, timestamps sorted in ``[0, duration_us)``.

    Pixels are uniform over the ``width`` x ``height`` sensor, or, with ``around=(x, y)``, within ``spread``
    pixels of that point (clipped to the sensor): a blob whose place can stand for a digit, so a network can
    learn the labels. ``full_span`` puts the first event at 0 and the last at ``duration_us`` exactly, so the
    recording lasts precisely that long. A generator passed as ``seed`` is drawn from (x, y, t, p in turn).
    """
    rng = np.random.default_rng(seed)
    if around is None:
        x = rng.integers(0, width, n)
        y = rng.integers(0, height, n)
    else:
        x = np.clip(around[0] + rng.integers(-spread, spread + 1, n), 0, width - 1)
        y = np.clip(around[1] + rng.integers(-spread, spread + 1, n), 0, height - 1)
    t = np.sort(rng.integers(0, duration_us, n))
    if full_span and n:
        t[0], t[-1] = 0, duration_us
    return make_events(x, y, t, rng.integers(0, 2, n))


def write_folder(
    root: Path,
    counts: Mapping[str, int | Mapping[int, int]],
    recording: Callable[[str, int, int], np.ndarray],
    file_name: Callable[[int], str] = lambda k: f"{k + 1:05d}.bin",
) -> dict[Path, np.ndarray]:
    """Write recordings at ``root/NMNIST/<split>/<digit>/<file_name(k)>``; returns each path and its events.

    ``counts[split]`` is the number of recordings of every digit 0-9, or ``{digit: count}``;
    ``recording(split, digit, k)`` makes the ``k``-th one (called split by split, digit by digit, in order).
    """
    written = {}
    for split, per_digit in counts.items():
        digits = per_digit.items() if isinstance(per_digit, Mapping) else ((d, per_digit) for d in range(10))
        for digit, count in digits:
            for k in range(count):
                path = Path(root) / "NMNIST" / split / str(digit) / file_name(k)
                events = recording(split, digit, k)
                write_nmnist(path, events)
                written[path] = events
    return written


def write_tiny_dataset(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A small simulated-style N-MNIST folder for the app: 1500 + 100 x digit events over 315 ms per recording.

    Each digit's events gather on its own place, and ``root/simulation.json`` marks the folder as simulated
    (naming the folder: a simulated set's cache key is made from that file, and each folder must have its own).
    """
    rng = np.random.default_rng(seed)

    def recording(split: str, digit: int, k: int) -> np.ndarray:
        return random_events(1500 + 100 * digit, rng, duration_us=315_000, around=(8 + 2 * digit, 25 - 2 * digit),
                             spread=4)

    write_folder(root, per_class or {"Train": 3, "Test": 2}, recording)
    marker = {"made_by": "tests/helpers.py", "root": str(root), "seed": seed}
    (Path(root) / SIMULATION_MARKER).write_text(json.dumps(marker))
    return Path(root)


def assert_same(ours: object, theirs: object) -> None:
    """Exactly equal, dtype and shape included: the check of every fast path against the library it replaces."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_array_equal(ours, theirs)


def picture_panel(picture: object, index: int, shape: tuple[int, int] = (34, 34)) -> np.ndarray:
    """Panel ``index`` of a ``core.figures.Picture`` as RGB, one value a sensor pixel (each one's centre)."""
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB"))
    left, top = picture.boxes[index]
    s = picture.scale
    return image[top + s // 2:top + shape[0] * s:s, left + s // 2:left + shape[1] * s:s]


def mosaic_panel(figure: object, index: int, shape: tuple[int, int] = (34, 34)) -> np.ndarray:
    """Panel ``index`` of a figure drawn as one mosaic heatmap (``core.figures.Mosaic``), from its ``meta.origins``."""
    layout = figure["layout"] if isinstance(figure, dict) else figure.layout.to_plotly_json()
    trace = figure["data"][0] if isinstance(figure, dict) else figure.data[0]
    z = trace["z"]
    if isinstance(z, dict):  # plotly's typed array, as JSON
        import base64

        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(z["shape"])
    top, left = layout["meta"]["origins"][index]
    return np.asarray(z, dtype=float)[top:top + shape[0], left:left + shape[1]]


def moved_events(positions: np.ndarray, values: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of ``core.frames``' batch moves, one sample at a time in numpy: sparse frames (flat ``positions`` into ``(..., H, W)``, their ``values``) with each output pixel taken from
    its ``source`` pixel (``source``: one number a pixel of ``H x W``, 1-based; 0: nothing moves in).

    The same frames as gathering the dense ones through ``source``, in work that grows with the events, not
    the frames: a source pixel feeds none, one or (a nearest-neighbour rotation) more output pixels.
    """
    pixels = source.size
    order = np.argsort(source, kind="stable")  # output pixels grouped by their source number
    fed = np.bincount(source, minlength=pixels + 1)  # how many output pixels each source number feeds
    first = np.cumsum(fed) - fed
    frame, pixel = np.divmod(positions, pixels)
    copies = fed[pixel + 1]
    event = np.repeat(np.arange(positions.size), copies)
    within = np.arange(event.size) - np.repeat(np.cumsum(copies) - copies, copies)
    return frame[event] * pixels + order[first[pixel + 1][event] + within], values[event]

