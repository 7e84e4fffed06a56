"""Still-image sources: scikit-learn digits made MNIST-like, IDX files, folders of pictures."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from core.images import ImageSourceError, center_digit, load_image_folder, load_mnist_idx, load_sklearn_digits


def _write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = False) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _mnist_pair(tmp_path: Path, n: int = 5, compress: bool = False, shape=(28, 28)) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    suffix = ".gz" if compress else ""
    ip = _write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images, 0x803, compress)
    lp = _write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels, 0x801, compress)
    return ip, lp, images, labels


# ------------------------------------------------------------------------------ scikit-learn


@pytest.mark.slow
def test_sklearn_digits_look_like_mnist() -> None:
    images, labels = load_sklearn_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(10))
    # 20 x 20 digit centred by centre of mass in 28 x 28, as MNIST
    rows = images.max(axis=2) > 0
    cols = images.max(axis=1) > 0
    heights = rows.shape[1] - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1)
    widths = cols.shape[1] - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1)
    assert np.median(np.maximum(heights, widths)) in (20, 21, 22)
    assert np.maximum(heights, widths).max() <= 24
    centres = np.array([ndimage.center_of_mass(im.astype(float)) for im in images[::10]])
    np.testing.assert_allclose(np.median(centres, axis=0), [14, 14], atol=0.6)
    off = np.abs(centres - 14).max(axis=1)
    assert np.mean(off <= 0.5 + 1e-9) > 0.95 and off.max() < 2.5  # only digits too wide to shift further
    frame = np.concatenate([images[:, :2].max(axis=(1, 2)), images[:, -2:].max(axis=(1, 2)),
                            images[:, :, :2].max(axis=(1, 2)), images[:, :, -2:].max(axis=(1, 2))])
    assert np.mean(frame == 0) > 0.95  # a mostly blank frame (MNIST: 0.96 on its first 50 test images)
    assert 20 < images.mean() < 40 and np.median(images.max(axis=(1, 2))) == 255  # MNIST: mean 33
    # smooth: many intermediate grey levels, not blocky 8 x 8 steps
    assert len(np.unique(images[0])) > 40


def test_sklearn_digits_return_fresh_copies_and_can_be_limited() -> None:
    a, labels = load_sklearn_digits()
    first, first_labels = load_sklearn_digits(limit=25)
    np.testing.assert_array_equal(first, a[:25])
    np.testing.assert_array_equal(first_labels, labels[:25])
    a[:] = 0
    b, _ = load_sklearn_digits()
    assert b.max() == 255


def test_center_digit_fits_and_centres_any_picture() -> None:
    picture = np.zeros((50, 30))
    picture[5:45, 10:20] = 1.0  # a tall bar, off centre
    out = center_digit(picture)
    assert out.shape == (28, 28)
    ys, xs = np.nonzero(out > 0.5)
    assert 18 <= ys.max() - ys.min() + 1 <= 21
    np.testing.assert_allclose(ndimage.center_of_mass(out), [14, 14], atol=0.6)
    assert not center_digit(np.zeros((8, 8))).any()


# ------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    ip, lp, images, labels = _mnist_pair(tmp_path, compress=compress)
    got_images, got_labels = load_mnist_idx(ip, lp)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64


def test_mnist_idx_bad_files_are_named(tmp_path: Path) -> None:
    ip, lp, images, labels = _mnist_pair(tmp_path)
    wrong = _write_idx(tmp_path / "wrong-magic", labels, 0x803)
    with pytest.raises(ImageSourceError, match=r"wrong-magic: bad IDX magic number 0x00000803 \(expected 0x00000801\)"):
        load_mnist_idx(ip, wrong)
    with pytest.raises(ImageSourceError, match="magic"):
        load_mnist_idx(lp, lp)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(ip.read_bytes()[:-7])
    with pytest.raises(ImageSourceError, match=r"truncated.*size mismatch"):
        load_mnist_idx(truncated, lp)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(ImageSourceError, match=r"short.*too short"):
        load_mnist_idx(short, lp)
    fewer = _write_idx(tmp_path / "fewer", labels[:3], 0x801)
    with pytest.raises(ImageSourceError, match=r"fewer.*3 labels for 5 images"):
        load_mnist_idx(ip, fewer)
    with pytest.raises(ImageSourceError, match="no such file"):
        load_mnist_idx(tmp_path / "missing", lp)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(ip.read_bytes())[:40])
    with pytest.raises(ImageSourceError, match=r"broken.gz.*gzip"):
        load_mnist_idx(broken, lp)


def test_mnist_idx_must_be_28_by_28(tmp_path: Path) -> None:
    ip, lp, _, _ = _mnist_pair(tmp_path, shape=(16, 16))
    with pytest.raises(ImageSourceError, match="16 x 16, expected 28 x 28"):
        load_mnist_idx(ip, lp)


def test_real_mnist_sample(shared_data: Path) -> None:
    sample = shared_data / "mnist-sample"
    images, labels = load_mnist_idx(sample / "t10k-images-first50-idx3-ubyte", sample / "t10k-labels-first50-idx1-ubyte")
    assert images.shape == (50, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # MNIST's first test labels


# ------------------------------------------------------------------------------ folders


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_image_folder_reads_labels_and_inverts_paper(tmp_path: Path) -> None:
    bright = np.zeros((28, 28), np.uint8)
    bright[6:22, 12:16] = 255  # MNIST-style: bright ink on black
    paper = 255 - bright  # dark ink on white paper
    _save(tmp_path / "1" / "a.png", bright)
    _save(tmp_path / "7" / "b.png", paper)
    rgb = np.stack([paper] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "7" / "c.jpg", quality=100)
    (tmp_path / "7" / "notes.txt").write_text("ignored")
    (tmp_path / "misc").mkdir()
    images, labels = load_image_folder(tmp_path)
    assert labels.tolist() == [1, 7, 7] and labels.dtype == np.int64
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], bright)
    np.testing.assert_array_equal(images[1], bright)
    assert np.abs(images[2].astype(int) - bright).max() < 30  # jpeg, lossy
    forced, _ = load_image_folder(tmp_path, invert=False)
    np.testing.assert_array_equal(forced[1], paper)


def test_image_folder_fits_other_sizes(tmp_path: Path) -> None:
    big = np.zeros((100, 60), np.uint8)
    big[10:90, 20:40] = 255
    _save(tmp_path / "3" / "big.png", big)
    images, labels = load_image_folder(tmp_path)
    assert images.shape == (1, 28, 28) and labels.tolist() == [3]
    ys, _ = np.nonzero(images[0] > 127)
    assert 18 <= ys.max() - ys.min() + 1 <= 21
    np.testing.assert_allclose(ndimage.center_of_mass(images[0].astype(float)), [14, 14], atol=0.6)


def test_image_folder_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="no images found"):
        load_image_folder(tmp_path)
    with pytest.raises(ImageSourceError, match="not a folder"):
        load_image_folder(tmp_path / "nowhere")
    bad = tmp_path / "4" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageSourceError, match=r"broken.png.*not a readable image"):
        load_image_folder(tmp_path)
