"""Still-image sources the saccade simulator watches: MNIST's bundled test images, scikit-learn digits,
MNIST IDX files, image folders.

Every loader returns ``(images, labels)``: ``images`` uint8 ``(N, 28, 28)`` with bright ink on a
dark background (MNIST's convention), ``labels`` int64 ``(N,)`` in 0..9.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28  # MNIST's field: a 20 x 20 digit centred by centre of mass in 28 x 28
DIGIT_BOX = 20
# Smoothing 8 x 8 digits up to 20 x 20 leaves a faint halo and soft strokes MNIST does not have.
# Ink below 40% of full becomes background and above 85% saturates: ink area, saturated area and
# mean brightness then come close to MNIST's (0.13 / 0.07 / 32 vs 0.11 / 0.06 / 29 on its first
# 50 test digits), and so do the event counts of their simulated recordings (median ~3,900 vs
# ~4,000 in real N-MNIST).
SKLEARN_INK_FLOOR = 0.4
SKLEARN_INK_FULL = 0.85
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


class ImageSourceError(ValueError):
    """An image source that cannot be read; says which file or folder and why."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def center_digit(
    digit: np.ndarray,
    size: int = IMAGE_SIZE,
    box: int = DIGIT_BOX,
    levels: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Fit a grayscale digit (float, 0 = background) into ``box`` x ``box`` and centre it by mass.

    MNIST's recipe: crop to the ink, scale (aspect kept) so the longer side is ``box`` pixels with
    smooth (bicubic) interpolation, then translate so the centre of mass sits in the middle of the
    ``size`` x ``size`` field. ``levels`` maps the scaled values before centring. Returns float.
    """
    from scipy import ndimage

    digit = np.asarray(digit, dtype=np.float64)
    rows = np.flatnonzero(digit.max(axis=1) > 0)
    cols = np.flatnonzero(digit.max(axis=0) > 0)
    out = np.zeros((size, size))
    if rows.size == 0:
        return out
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # Pad by one background pixel so the spline fades to 0 at the crop's border.
    padded = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2))
    padded[1:-1, 1:-1] = crop
    crop = padded
    zoom = box / (max(crop.shape) - 2)
    scaled = ndimage.zoom(crop, zoom, order=3, mode="grid-constant", cval=0.0, grid_mode=True)
    np.clip(scaled, 0.0, digit.max(), out=scaled)
    if levels is not None:
        scaled = levels(scaled)
    rows = np.flatnonzero(scaled.max(axis=1) > 0)
    cols = np.flatnonzero(scaled.max(axis=0) > 0)
    if rows.size == 0:
        return out
    scaled = scaled[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # drop the fade-out margin
    h, w = scaled.shape
    if h > size or w > size:  # the pad can push a side just past the field; trim symmetrically
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        scaled = scaled[top : top + min(h, size), left : left + min(w, size)]
        h, w = scaled.shape
    mass = scaled.sum()
    cy = float(scaled.sum(axis=1) @ np.arange(h)) / mass
    cx = float(scaled.sum(axis=0) @ np.arange(w)) / mass
    top = int(np.clip(round(size / 2 - cy), 0, size - h))
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    out[top : top + h, left : left + w] = scaled
    return out


def load_sklearn_digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 handwritten 8 x 8 digits shipped with scikit-learn, made MNIST-like (28 x 28, 0..255).

    They ship inside the package, so the default data set needs no network. ``limit`` keeps
    only the first digits. Computed once per process; each call returns fresh copies.
    """
    images, labels = _sklearn_digits(None if limit is None else int(limit))
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=2)
def _sklearn_digits(limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = np.asarray(bunch.images[:limit], dtype=np.float64)  # (1797, 8, 8), values 0..16
    images = np.empty((len(raw), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    def levels(values: np.ndarray) -> np.ndarray:
        ink = np.clip((values / 16.0 - SKLEARN_INK_FLOOR) / (SKLEARN_INK_FULL - SKLEARN_INK_FLOOR), 0.0, 1.0)
        return ink * 255.0

    for i, digit in enumerate(raw):
        images[i] = np.rint(center_digit(digit, levels=levels)).astype(np.uint8)
    return images, np.asarray(bunch.target[:limit], dtype=np.int64)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ImageSourceError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageSourceError(path, "is a directory, not an IDX file") from None
    except OSError as exc:
        raise ImageSourceError(path, f"cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ImageSourceError(path, f"broken gzip data ({exc})") from None
    return raw


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    raw = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(raw) >= 4 and (found := int.from_bytes(raw[:4], "big")) != magic:
        raise ImageSourceError(path, f"bad IDX magic number 0x{found:08x} (expected 0x{magic:08x})")
    if len(raw) < header:
        raise ImageSourceError(path, f"too short for an IDX header ({len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ImageSourceError(
            path, f"size mismatch: header says {' x '.join(map(str, dims))} = {expected} bytes of data, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_mnist_idx(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST images and labels from IDX files (plain or gzip-compressed)."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _read_idx(images_path, IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ImageSourceError(images_path, f"images are {images.shape[1]} x {images.shape[2]}, expected 28 x 28")
    if len(images) != len(labels):
        raise ImageSourceError(labels_path, f"{len(labels)} labels for {len(images)} images in {images_path}")
    if labels.size and labels.max() > 9:
        raise ImageSourceError(labels_path, f"label {int(labels.max())} is not a digit 0..9")
    return images, labels


def _to_mnist_field(gray: np.ndarray, invert: bool) -> np.ndarray:
    """A grayscale picture (0..255) as a 28 x 28 MNIST-style digit, bright ink on black."""
    values = gray.astype(np.float64)
    if invert:
        values = 255.0 - values
    if values.shape != (IMAGE_SIZE, IMAGE_SIZE):
        values = center_digit(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def load_image_folder(
    path: str | os.PathLike[str], invert: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``path/<digit>/*.png`` (any common format) as 28 x 28 grayscale digits.

    Pictures that are not 28 x 28 are fitted and centred MNIST's way. ``invert=None`` decides per
    picture from its border: a light border means dark ink on paper, which is inverted to MNIST's
    bright ink on black.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise ImageSourceError(root, "is not a folder of digit subfolders (expected path/<digit>/<image>)")
    files: list[tuple[int, Path]] = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and sub.name.isdigit() and int(sub.name) <= 9:
            files += [(int(sub.name), f) for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ImageSourceError(root, "no images found in digit subfolders 0..9 (expected path/<digit>/<image>.png)")
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, (_, file) in enumerate(files):
        try:
            with Image.open(file) as picture:
                gray = np.asarray(picture.convert("L"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageSourceError(file, f"not a readable image ({exc})") from None
        if gray.size == 0:
            raise ImageSourceError(file, "empty image")
        flip = invert
        if flip is None:
            border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
            flip = bool(border.mean() > 127)
        images[i] = _to_mnist_field(gray, flip)
    labels = np.array([label for label, _ in files], dtype=np.int64)
    return images, labels


# --- MNIST's test images, bundled ----------------------------------------------------------------

BUNDLED_MNIST_DIR = Path(__file__).resolve().parent / "assets" / "mnist"  # README.md there: authors, licence
BUNDLED_MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_TEST_SOURCE = "mnist-t10k"  # how simulation.json names MNIST's test images as a source
MNIST_TEST_SIZE = 10_000
# The default offline set is simulated from MNIST test images 5000..9999. Real N-MNIST Test
# recording k is image k-1, so Test ids 00001..05000 (images 0..4999) stay unseen by a network
# trained on the default set, and so do all real Train recordings (MNIST's training images).
# 5,000 recordings: about 17 s to generate on 2 cores; a 60 s `quick` run on them reaches
# about 94 % on real N-MNIST Train recordings.
DEFAULT_MNIST_RANGE: tuple[int, int] = (5000, 10000)
_MNIST_SOURCE_PATTERN = re.compile(r"^mnist-t10k(?:\[(\d+):(\d+)\])?$")


def load_bundled_mnist(start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images ``start..stop-1`` (all 10,000 by default) from the copy that ships with the project.

    Read once per process; each call returns fresh copies.
    """
    images, labels = _bundled_mnist()
    stop = len(images) if stop is None else int(stop)
    if not 0 <= int(start) < stop <= len(images):
        raise ValueError(f"MNIST test image range {start}:{stop} must lie within 0:{len(images)} and hold at least one image")
    return images[start:stop].copy(), labels[start:stop].copy()


@functools.lru_cache(maxsize=1)
def _bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_mnist_idx(*(BUNDLED_MNIST_DIR / name for name in BUNDLED_MNIST_FILES))
    if len(images) != MNIST_TEST_SIZE:
        raise ImageSourceError(BUNDLED_MNIST_DIR, f"{len(images)} images, expected MNIST's {MNIST_TEST_SIZE} test images")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def mnist_test_source(start: int = 0, stop: int | None = None) -> str:
    """The name of MNIST test images ``start..stop-1`` as a source: ``mnist-t10k`` or ``mnist-t10k[5000:10000]``."""
    stop = MNIST_TEST_SIZE if stop is None else int(stop)
    return MNIST_TEST_SOURCE if (start, stop) == (0, MNIST_TEST_SIZE) else f"{MNIST_TEST_SOURCE}[{int(start)}:{stop}]"


def load_default_digits() -> tuple[np.ndarray, np.ndarray]:
    """The still images the default offline data set is simulated from (name: :func:`default_digits_source`)."""
    return load_bundled_mnist(*DEFAULT_MNIST_RANGE)


def default_digits_source() -> str:
    """How ``simulation.json`` names the default set's images: ``mnist-t10k[5000:10000]``."""
    return mnist_test_source(*DEFAULT_MNIST_RANGE)


def mnist_test_indices(source: str, positions: np.ndarray | list[int]) -> np.ndarray | None:
    """Which MNIST test images the images at ``positions`` of a named source are; None for other sources.

    Knows :func:`mnist_test_source`'s names and ``mnist-idx:<path>`` where the file is one of
    MNIST's ``t10k-images`` files (read from its start). Used to find leakage: N-MNIST's Test
    recording ``k`` is MNIST test image ``k - 1``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if not isinstance(source, str):
        return None
    match = _MNIST_SOURCE_PATTERN.match(source)
    if match is not None:
        return positions + (int(match.group(1)) if match.group(1) is not None else 0)
    if source.startswith("mnist-idx:") and Path(source.removeprefix("mnist-idx:")).name.startswith("t10k-images"):
        return positions
    return None
