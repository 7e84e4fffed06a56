"""N-MNIST data sources: folders of recordings, statistics, validation, download, and the CLI.

Every source, real or simulated, is a folder ROOT laid out as the full N-MNIST
download unpacks (``ROOT/NMNIST/{Train,Test}/<digit>/<id>.bin``); a simulated set
adds ``ROOT/simulation.json``, written last, so its presence means "complete".

Command line (``python -m core.data --help``)::

    python -m core.data generate [--out DIR] [--source mnist|sklearn|mnist-idx|folder]
    python -m core.data stats ROOT [--json]
    python -m core.data validate ROOT
    python -m core.data download ROOT
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.events import NMNISTFormatError, read_nmnist, summarize_nmnist
from core.files import default_home, read_json, temp_name, user_path

log = logging.getLogger(__name__)

SPLITS: tuple[str, str] = ("Train", "Test")
CLASSES: tuple[int, ...] = tuple(range(10))
NMNIST_FOLDER = "NMNIST"  # ROOT/NMNIST/{Train,Test}/<digit>/<id>.bin, as N-MNIST's zips unpack
SIMULATION_MARKER = "simulation.json"  # written last by generation: its presence means "complete"
SOURCE_KINDS: tuple[str, str] = ("simulated", "nmnist")
TEST_FRACTION = 0.2  # share of a simulated set's source images recorded into its Test split
FILE_ID_DIGITS = 5  # N-MNIST names its recordings 00001.bin, 00002.bin, ... within each digit folder
NMNIST_HOMEPAGE = "https://www.garrickorchard.com/datasets/n-mnist"
NMNIST_DOWNLOAD_HOST = "https://data.mendeley.com"  # where tonic.datasets.NMNIST downloads from
CONNECT_TIMEOUT_S = 3.0  # offline detection must answer quickly, never hang
DEFAULT_SET_MB = 120  # disk space of the default simulated set (5,000 recordings and their folders)
# How the default set's recordings vary around the calibrated camera (core.saccade.SimulationConfig's vary_*
# fields). Empty: one camera for all. Variation was measured and did not lift accuracy on real N-MNIST
# (README "The default offline set"), while it lowers the per-pair calibration figures.
DEFAULT_SET_VARIATION: dict[str, float] = {}
# Bump whenever the default set's content changes (images, camera, variation): a home with an older set
# regenerates it. simulation.json keeps it as "default_set_version" (sets without one are version 1).
DEFAULT_SET_VERSION = 1

Progress = Callable[[int, int], None]


class DatasetNotFoundError(FileNotFoundError):
    """A data folder without N-MNIST recordings where they should be."""


class DataUnavailableError(RuntimeError):
    """The data cannot be fetched (no network, failed download); says where to put it by hand."""


# ---------------------------------------------------------------- the folder layout


def split_folder(root: str | os.PathLike[str], split: str) -> Path:
    """``ROOT/NMNIST/<split>``: the folder of one split's digit folders."""
    return Path(root) / NMNIST_FOLDER / split


def class_folder(root: str | os.PathLike[str], split: str, label: int) -> Path:
    """``ROOT/NMNIST/<split>/<digit>``: the recordings of one digit."""
    return split_folder(root, split) / str(int(label))


def recording_path(
    root: str | os.PathLike[str], split: str, label: int, file_id: int, digits: int = FILE_ID_DIGITS
) -> Path:
    """``ROOT/NMNIST/<split>/<digit>/<id>.bin``, the id zero-padded to ``digits`` as N-MNIST numbers them.

    N-MNIST numbers each split's recordings in MNIST order from 1: the file with id ``k``
    is a recording of MNIST image ``k - 1`` of that split.
    """
    return class_folder(root, split, label) / f"{int(file_id):0{digits}d}.bin"


def layout_hint(root: Path) -> str:
    """Where the recordings of ``root`` must lie, in words."""
    return (
        f"recordings must lie in {split_folder(root, 'Train')}/<digit>/*.bin and "
        f"{split_folder(root, 'Test')}/<digit>/*.bin (the layout N-MNIST's train.zip and "
        f"test.zip unpack to inside {root / NMNIST_FOLDER})"
    )


def read_simulation_info(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``simulation.json`` of a generated set, or None where the set is not (completely) simulated."""
    info = read_json(Path(root) / SIMULATION_MARKER)
    return info if isinstance(info, dict) else None


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class DataSource:
    """One folder of N-MNIST recordings and what made it.

    ``key`` identifies its contents for caches: it changes when files are added,
    removed or regenerated.
    """

    root: Path
    kind: str  # "simulated" (made by core.saccade, has simulation.json) | "nmnist" (real recordings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", user_path(self.root))
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"DataSource.kind must be one of {SOURCE_KINDS}, got {self.kind!r}")

    @classmethod
    def detect(cls, root: str | os.PathLike[str]) -> DataSource:
        """The source at ``root``: simulated if it holds ``simulation.json``, else real N-MNIST."""
        root = user_path(root)
        return cls(root, "simulated" if (root / SIMULATION_MARKER).is_file() else "nmnist")

    @property
    def label(self) -> str:
        """A name for people: what the data is and where it lives."""
        what = "Simulated N-MNIST" if self.kind == "simulated" else "N-MNIST"
        return f"{what} ({self.root})"

    @property
    def is_complete(self) -> bool:
        """Whether the folder holds recordings (and, if simulated, its finished marker)."""
        if self.kind == "simulated":
            return (self.root / SIMULATION_MARKER).is_file()
        return any(_has_recordings(self.root, s) for s in SPLITS)

    @property
    def key(self) -> str:
        """Stable string for cache keys: kind, resolved root and a fingerprint of the contents."""
        return f"{self.kind}:{os.path.realpath(self.root)}:{fingerprint(self.root)}"  # realpath: no error on a link loop

    def dataset(self, split: str = "Train", transform: Callable | None = None, skip_bad: bool = False) -> NMNISTFolder:
        """The recordings of one split as a map-style data set."""
        return NMNISTFolder(self.root, split, transform=transform, skip_bad=skip_bad)


def default_source() -> DataSource:
    """The offline default: the simulated set in ``default_home()/simulated``."""
    return DataSource(default_home() / "simulated", "simulated")


@dataclass(frozen=True)
class SourceCheck:
    """A folder someone typed, checked: the source if usable, else why not (plain text, paths in it)."""

    source: DataSource | None
    problem: str | None


def check_folder(text: str) -> SourceCheck:
    """Whether ``text`` names a usable N-MNIST folder, and if not, where the files must go.

    Both ROOT and ROOT/NMNIST are accepted (the second is a likely slip: it is the folder
    the zips unpack into); the source is always ROOT.
    """
    text = text.strip()
    if not text:
        return SourceCheck(None, "Type the folder that holds NMNIST/Train and NMNIST/Test.")
    if "\0" in text:
        return SourceCheck(None, "A folder name cannot contain a NUL character.")
    try:
        root = user_path(text)
    except ValueError as exc:
        return SourceCheck(None, str(exc))
    try:
        if not root.is_dir():
            return SourceCheck(None, f"{root} is not a folder. The {layout_hint(root)}.")
        root = _nmnist_root(root)
        source = DataSource.detect(root)
        if not source.is_complete:
            return SourceCheck(None, f"No N-MNIST recordings found in {root}. The {layout_hint(root)}.")
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a link loop (RuntimeError in resolve)
        return SourceCheck(None, f"{root} cannot be used: {exc}")
    return SourceCheck(source, None)


def _nmnist_root(folder: Path) -> Path:
    """ROOT for ``folder``: the folder itself, or its parent where ``folder`` is ROOT/NMNIST (holding Train, Test)."""
    if (
        folder.name == NMNIST_FOLDER
        and not (folder / NMNIST_FOLDER).is_dir()
        and any((folder / split).is_dir() for split in SPLITS)
    ):
        return folder.parent
    return folder


_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint(root: str | os.PathLike[str]) -> str:
    """Short hash of a data folder's contents.

    A simulated set is named by its ``simulation.json``; otherwise by the number,
    names and sizes of the recordings, memoised on the digit folders' modification
    times (which change whenever a file is added, removed or replaced, as
    ``write_nmnist`` does), so asking again is cheap.
    """
    root = Path(root)
    marker = root / SIMULATION_MARKER
    if marker.is_file():
        try:
            return "sim-" + hashlib.sha256(marker.read_bytes()).hexdigest()[:16]
        except OSError:
            pass  # vanished or unreadable between the two calls: name the folder by its files instead
    dirs = [class_folder(root, s, d) for s in SPLITS for d in CLASSES]
    stamp = tuple(_mtime_ns(d) for d in dirs)
    memo = (os.path.realpath(root), stamp)
    if memo not in _FINGERPRINTS:
        h = hashlib.sha256()
        count = total = 0
        for d in dirs:
            for name, size in _recording_sizes(d):
                h.update(f"{d.parent.name}/{d.name}/{name}:{size}\n".encode())
                count += 1
                total += max(0, size)
        _FINGERPRINTS[memo] = f"{count}f-{total}b-{h.hexdigest()[:12]}"
    return _FINGERPRINTS[memo]


def _mtime_ns(folder: Path) -> int:
    """The folder's modification time, -1 where it is missing or not a usable folder (a dangling link, a loop)."""
    try:
        info = folder.stat()
    except OSError:
        return -1
    return info.st_mtime_ns if stat.S_ISDIR(info.st_mode) else -1


def _recording_sizes(folder: Path) -> list[tuple[str, int]]:
    """``(name, size)`` of the recordings in one digit folder, sorted; -1 for an entry whose size cannot be read.

    A dangling symbolic link or a link loop is a bad file, not an error: it is listed (so the
    fingerprint changes when it is fixed) and the reading code reports it with its reason.
    """
    entries = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if _is_recording(entry.name):
                    try:
                        size = entry.stat().st_size
                    except OSError:
                        size = -1
                    entries.append((entry.name, size))
    except OSError:  # missing, not a folder, a loop, no permission
        return []
    return sorted(entries)


# ---------------------------------------------------------------- folder data set


def _is_recording(name: str) -> bool:
    return name.endswith(".bin") and not name.startswith(".")


def scan_split(root: Path, split: str) -> list[tuple[Path, int]]:
    """``(file, label)`` of one split, sorted by digit then file name (tonic's order).

    Every entry named like a recording is listed, a dangling link or a link loop too: reading
    it then says what is wrong (bad files are listed with their reason, never silently lost).
    """
    found: list[tuple[Path, int]] = []
    for digit in CLASSES:
        d = class_folder(root, split, digit)
        found.extend((d / name, digit) for name in _recording_names(d))
    return found


def _recording_names(folder: Path) -> list[str]:
    """Sorted names of the recordings in one digit folder; none where it is missing or unusable."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if _is_recording(e.name))
    except OSError:  # missing, not a folder, a link loop, no permission
        return []


def _has_recordings(root: Path, split: str) -> bool:
    """Whether a split holds at least one recording (stops at the first)."""
    for digit in CLASSES:
        try:
            with os.scandir(class_folder(root, split, digit)) as it:
                if any(_is_recording(e.name) for e in it):
                    return True
        except OSError:
            continue
    return False


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


class NMNISTFolder:
    """Map-style data set of the recordings in ``ROOT/NMNIST/<split>/<digit>/*.bin``.

    Works with any number of files (tonic's ``NMNIST`` refuses fewer than 10,000)
    and needs no torch import; it fits ``torch.utils.data.DataLoader`` as it is.
    ``dataset[i]`` raises :class:`NMNISTFormatError` on a bad file (and records it in
    ``bad_files``); iteration with ``skip_bad=True`` or :meth:`iter_valid` logs a
    warning, records it, and goes on with the rest.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "Train",
        transform: Callable[[np.ndarray], Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        _check_split(split)
        self.root = user_path(root)
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        self.bad_files: dict[str, str] = {}
        split_dir = split_folder(self.root, split)
        if not split_dir.is_dir():
            raise DatasetNotFoundError(f"{self.root}: no folder {split_dir}; {layout_hint(self.root)}")
        found = scan_split(self.root, split)
        if not found:
            raise DatasetNotFoundError(f"{split_dir}: no .bin recordings in 0..9/; {layout_hint(self.root)}")
        self.files: list[Path] = [f for f, _ in found]
        self.targets: np.ndarray = np.array([label for _, label in found], dtype=np.int64)

    def __repr__(self) -> str:
        return f"NMNISTFolder(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            return read_nmnist(path)
        except NMNISTFormatError as exc:
            self.bad_files[str(path)] = exc.problem
            raise

    def __getitem__(self, index: int) -> tuple[Any, int]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} recordings")
        events = self._read(index)
        label = int(self.targets[index])
        return (self.transform(events) if self.transform is not None else events), label

    def iter_valid(self, with_index: bool = False) -> Iterator[tuple]:
        """Every readable sample, ``(events, label)`` or ``(index, events, label)``; bad files are logged and skipped."""
        for i in range(len(self)):
            try:
                events, label = self[i]
            except NMNISTFormatError as exc:
                log.warning("skipping bad N-MNIST file %s", exc)
                continue
            yield (i, events, label) if with_index else (events, label)

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        if self.skip_bad:
            return self.iter_valid()
        return (self[i] for i in range(len(self)))

    def indices_of(self, label: int) -> np.ndarray:
        """Indices of the samples of one digit."""
        return np.flatnonzero(self.targets == int(label))

    def class_counts(self) -> np.ndarray:
        """Number of samples of each digit 0..9."""
        return np.bincount(self.targets, minlength=len(CLASSES))


# ---------------------------------------------------------------- statistics and validation


def _present_splits(root: Path) -> list[str]:
    splits = [s for s in SPLITS if _has_recordings(root, s)]
    if not splits:
        raise DatasetNotFoundError(f"{root}: no N-MNIST recordings found; {layout_hint(root)}")
    return splits


def _summary(values: np.ndarray, keys: Sequence[str]) -> dict[str, float]:
    if values.size == 0:
        return {k: 0.0 for k in keys}
    fns = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max}
    return {k: float(fns[k](values)) for k in keys}


def split_stats(dataset: NMNISTFolder, progress: Progress | None = None) -> dict[str, Any]:
    """Statistics of one split: samples, per-class counts, events, duration, ON fraction, bad files."""
    n = len(dataset)
    counts = np.zeros(n, dtype=np.int64)
    spans = np.zeros(n, dtype=np.int64)
    ons = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    for i, path in enumerate(dataset.files):
        try:
            summary = summarize_nmnist(path)
        except NMNISTFormatError as exc:
            dataset.bad_files[str(path)] = exc.problem
        else:
            ok[i] = True
            counts[i] = summary.events
            spans[i] = summary.span_us
            ons[i] = summary.on_events
        if progress is not None and (i + 1 == n or (i + 1) % 256 == 0):
            progress(i + 1, n)
    total = int(counts[ok].sum())
    return {
        "samples": n,
        "valid_samples": int(ok.sum()),
        "per_class": {str(d): int(c) for d, c in enumerate(dataset.class_counts())},
        "events": _summary(counts[ok], ("mean", "median", "min", "max")) | {"total": total},
        # Duration: first to last event (N-MNIST recordings start within microseconds of 0).
        "duration_ms": _summary(spans[ok] / 1000.0, ("mean", "median", "max")),
        "on_fraction": float(ons[ok].sum() / total) if total else 0.0,
        "bad_files": dict(dataset.bad_files),
    }


def _empty_split_stats() -> dict[str, Any]:
    return {
        "samples": 0,
        "valid_samples": 0,
        "per_class": {str(d): 0 for d in CLASSES},
        "events": _summary(np.zeros(0), ("mean", "median", "min", "max")) | {"total": 0},
        "duration_ms": _summary(np.zeros(0), ("mean", "median", "max")),
        "on_fraction": 0.0,
        "bad_files": {},
    }


def dataset_stats(root: str | os.PathLike[str], progress: Progress | None = None) -> dict[str, Any]:
    """Statistics of every split under ``root`` (a split without recordings has ``samples == 0``).

    ``progress(done, total)`` counts files over both splits.
    """
    root = user_path(root)
    present = _present_splits(root)
    sets = {s: NMNISTFolder(root, s) for s in present}
    total = sum(len(d) for d in sets.values())
    out: dict[str, Any] = {"root": str(root), "kind": DataSource.detect(root).kind}
    done = 0
    for split in SPLITS:
        if split not in sets:
            out[split] = _empty_split_stats()
            continue
        offset = done
        step = None if progress is None else (lambda i, _n, o=offset: progress(o + i, total))
        out[split] = split_stats(sets[split], step)
        done += len(sets[split])
    return out


def validate(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(path, problem)`` for every recording under ``root`` that cannot be read, and every unusable digit folder.

    Dangling symbolic links, link loops and files over the event-file budget
    (:func:`core.limits.limits`) are bad files like any other; an oversized file is
    refused from its size, without reading it.
    """
    root = user_path(root)
    problems: list[tuple[str, str]] = []
    for split in _present_splits(root):
        for digit in CLASSES:
            folder = class_folder(root, split, digit)
            if os.path.lexists(folder) and _mtime_ns(folder) == -1:
                problems.append((str(folder), _folder_problem(folder)))
        for path, _ in scan_split(root, split):
            try:
                summarize_nmnist(path)  # read_nmnist's checks and errors, without building the events
            except NMNISTFormatError as exc:
                problems.append((str(path), exc.problem))
    return problems


def _folder_problem(folder: Path) -> str:
    """Why a digit folder that exists as a name cannot be listed."""
    try:
        folder.stat()
    except FileNotFoundError:
        return "digit folder is a dangling symbolic link"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "digit folder is a symbolic link loop"
        return f"digit folder cannot be read ({exc.strerror or exc})"
    return "not a folder"


# ---------------------------------------------------------------- download


def _tonic_nmnist():
    import tonic.datasets  # lazy: tonic pulls in heavy optional modules

    return tonic.datasets.NMNIST


def manual_download_hint(root: Path) -> str:
    """How to install N-MNIST by hand."""
    return (
        f"Download train.zip and test.zip from {NMNIST_HOMEPAGE} (files on {NMNIST_DOWNLOAD_HOST}) "
        f"on a machine with internet "
        f"and unpack them into {root / NMNIST_FOLDER}: {layout_hint(root)}. Then choose that "
        f"folder as a real N-MNIST source, or check it with `python -m core.data validate {root}`."
    )


def check_connection(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """``None`` if the host of ``url`` accepts a connection within ``timeout`` seconds, else why not.

    Runs in a daemon thread so that even a stalled name lookup cannot block longer.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot connect"; say which
            result.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not result:
        return f"no answer from {host}:{port} within {timeout:g} s"
    return result[0]


def _fetch(url: str, dest: Path, progress: Progress | None, timeout: float) -> None:
    """Stream ``url`` into ``dest`` (via a temp file), reporting ``progress(bytes, total_bytes)``."""
    tmp = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "tonic"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(1 << 20):
            fh.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    os.replace(tmp, dest)


def download_nmnist(
    root: str | os.PathLike[str],
    progress: Progress | None = None,
    splits: Sequence[str] = SPLITS,
    timeout: float = CONNECT_TIMEOUT_S,
) -> DataSource:
    """Download and unpack the full N-MNIST into ``root/NMNIST`` with tonic's URLs, checksums and unpacking.

    We fetch the archive ourselves (so that ``progress(bytes, total)`` can report it) to
    the very path tonic expects, then let ``tonic.datasets.NMNIST`` verify and extract it.
    Offline, raises :class:`DataUnavailableError` within about ``timeout`` seconds.
    """
    root = user_path(root)
    for split in splits:
        _check_split(split)
    # Check before importing tonic (seconds), so that offline the answer is quick.
    reason = check_connection(NMNIST_DOWNLOAD_HOST, timeout)
    if reason is not None:
        raise DataUnavailableError(f"cannot download N-MNIST: {reason}. {manual_download_hint(root)}")
    nmnist = _tonic_nmnist()
    target = root / NMNIST_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    from tonic.download_utils import check_integrity

    for split in splits:
        train = split == "Train"
        url = nmnist.train_url if train else nmnist.test_url
        filename = nmnist.train_filename if train else nmnist.test_filename
        md5 = nmnist.train_md5 if train else nmnist.test_md5
        archive = target / filename
        try:
            if not check_integrity(str(archive), md5):
                log.info("downloading %s to %s", url, archive)
                _fetch(url, archive, progress, timeout=max(timeout, 30.0))
                if not check_integrity(str(archive), md5):
                    raise DataUnavailableError(f"{archive}: checksum mismatch (expected md5 {md5})")
            nmnist(save_to=str(root), train=train)  # verifies the archive and unpacks it
        except DataUnavailableError:
            raise
        except (OSError, RuntimeError, zipfile.BadZipFile) as exc:  # URLError is an OSError
            raise DataUnavailableError(
                f"downloading or unpacking {url} failed: {exc}. {manual_download_hint(root)}"
            ) from exc
        if not scan_split(root, split):
            raise DataUnavailableError(f"{archive} did not unpack to {target / split}/<digit>/*.bin")
    return DataSource(root, "nmnist")


# ---------------------------------------------------------------- generation


_GENERATE_LOCK = threading.Lock()


def _replaceable(out: Path) -> bool:
    """Whether ``out`` may be replaced by a new set: absent, empty, or a (partial) data set of ours."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}  # hidden: generation temps
    return names <= {NMNIST_FOLDER, SIMULATION_MARKER}


def generate_simulated(
    out: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    workers: int = 2,
    test_fraction: float = TEST_FRACTION,
    config: Any = None,
    progress: Progress | None = None,
    source: str = "images",
    extra: dict[str, Any] | None = None,
) -> DataSource:
    """Simulate a data set from still images into ``out``, atomically (``source`` describes the images;
    ``extra``: more entries for its ``simulation.json``).

    The set is made in a sibling temp folder and renamed into place, so ``out`` is
    never seen half-written; an existing set at ``out`` is replaced. A folder with
    other content is refused rather than deleted.
    """
    from core.saccade import generate_dataset  # lazy: the simulator is only needed to generate

    out = user_path(out).absolute()
    if not _replaceable(out):
        raise FileExistsError(f"{out} exists and is not a simulated data set; choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)  # a hidden sibling: the same file system, so the renames below are atomic
    try:
        generate_dataset(
            tmp, images, labels, config=config, seed=seed, test_fraction=test_fraction, workers=workers, progress=progress,
            source=source, extra=extra,
        )
        if not (tmp / SIMULATION_MARKER).is_file():
            raise RuntimeError(f"generation into {tmp} finished without writing {SIMULATION_MARKER}")
        old = temp_name(out)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return DataSource(out, "simulated")


def outdated_default_set(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds a default set made by an older version of the project (to be made again).

    That is a complete simulated set of the default images whose ``default_set_version`` is not
    :data:`DEFAULT_SET_VERSION`; other sets (another source, made by hand or by tests) never are.
    """
    from core.images import default_digits_source

    info = read_simulation_info(root)
    return (
        info is not None
        and info.get("source") == default_digits_source()
        and info.get("default_set_version", 1) != DEFAULT_SET_VERSION
    )


def ensure_default_dataset(progress: Progress | None = None, workers: int | None = None) -> DataSource:
    """The default simulated set, generated if it is missing, incomplete or outdated.

    It is simulated from the MNIST test images that ship with the project (5,000 of them,
    ``core.images.DEFAULT_MNIST_RANGE``: about 17 s on 2 cores), real handwriting at
    MNIST's resolution, through the calibrated camera (varied per :data:`DEFAULT_SET_VARIATION`),
    so a network trained on it also reads real N-MNIST. ``workers`` defaults to the CPU
    count, at most 2.
    """
    source = default_source()
    with _GENERATE_LOCK:
        if source.is_complete and not outdated_default_set(source.root):
            return source
        from core.images import default_digits_source, load_default_digits
        from core.saccade import SimulationConfig

        images, labels = load_default_digits()
        workers = workers or max(1, min(2, os.cpu_count() or 1))
        return generate_simulated(
            source.root, images, labels, workers=workers, progress=progress, source=default_digits_source(),
            config=SimulationConfig(**DEFAULT_SET_VARIATION), extra={"default_set_version": DEFAULT_SET_VERSION},
        )


def generation_problem(exc: BaseException, root: Path) -> str:
    """Why generating a data set into ``root`` failed, in words a person can act on (plain text, a path in it)."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return (
                f"The data home {root.parent} cannot be written ({reason}). Set NMNIST_DASHBOARD_HOME to a "
                f"writable folder and restart the app, or use a real N-MNIST folder instead."
            )
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return (
                f"The disk holding {root.parent} is full ({reason}). The default set needs about "
                f"{DEFAULT_SET_MB} MB: free some space, then try again."
            )
    return f"Generating the default data set into {root} failed: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- command line


class _StderrProgress:
    """``progress(done, total)`` as a one-line counter on stderr."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.5:
            return
        self.last = now
        of = f"/{total}" if total else ""
        end = "\n" if total and done >= total else ""
        sys.stderr.write(f"\r{self.what}: {done}{of} ({now - self.start:.1f} s)" + end)
        sys.stderr.flush()


def _load_images(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[np.ndarray, np.ndarray]:
    import core.images as images

    if args.source == "mnist":
        if args.mnist_range:
            return images.load_bundled_mnist(*_mnist_range(args, parser))
        return images.load_default_digits()
    if args.mnist_range:
        parser.error("--range goes with --source mnist")
    if args.source == "sklearn":
        return images.load_sklearn_digits()
    if args.source == "mnist-idx":
        if not (args.images and args.labels):
            parser.error("--source mnist-idx needs --images IDX3_FILE and --labels IDX1_FILE")
        return images.load_mnist_idx(args.images, args.labels)
    if not args.images:
        parser.error("--source folder needs --images FOLDER")
    return images.load_image_folder(args.images)


def _simulation_config(settings: Sequence[str]) -> Any:
    """The simulated camera with ``FIELD=JSON`` changes (None: the calibrated defaults); ValueError names a bad one."""
    if not settings:
        return None
    from core.saccade import SimulationConfig

    values = SimulationConfig().to_dict()
    for item in settings:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. vary_offset_px=1.0")
        if name not in values:
            raise ValueError(f"--set {item!r}: SimulationConfig has no field {name!r}")
        try:
            values[name] = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"--set {item!r}: the value is not JSON (a number, true/false or a list)") from None
    return SimulationConfig.from_dict(values)


def _mnist_range(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[int, int]:
    """``--range START:STOP`` as two numbers (checked against the bundled images by the loader)."""
    from core.images import MNIST_TEST_SIZE

    start, sep, stop = str(args.mnist_range).partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start or 0), int(stop) if stop else MNIST_TEST_SIZE
    except ValueError:
        parser.error(f"--range {args.mnist_range!r}: expected START:STOP, e.g. 50:10000")
        raise  # not reached


def _describe_source(args: argparse.Namespace) -> str:
    if args.source == "mnist":
        from core.images import default_digits_source, mnist_test_source

        if args.mnist_range:
            return mnist_test_source(*_mnist_range(args, args.subparser))
        return default_digits_source()
    if args.source == "sklearn":
        return "sklearn-digits"
    if args.source == "mnist-idx":
        return f"mnist-idx:{args.images}"
    return f"folder:{args.images}"


def _print_stats(stats: dict[str, Any]) -> None:
    print(f"{stats['root']} ({stats['kind']})")
    for split in SPLITS:
        s = stats[split]
        print(f"\n{split}: {s['samples']} samples")
        if not s["samples"]:
            continue
        print("  per class: " + "  ".join(f"{d}:{c}" for d, c in s["per_class"].items()))
        e, d = s["events"], s["duration_ms"]
        print(
            f"  events/sample: mean {e['mean']:.0f}  median {e['median']:.0f}  "
            f"min {e['min']:.0f}  max {e['max']:.0f}"
        )
        print(f"  duration ms:   mean {d['mean']:.1f}  median {d['median']:.1f}  max {d['max']:.1f}")
        print(f"  ON fraction:   {s['on_fraction']:.3f}")
        for path, problem in s["bad_files"].items():
            print(f"  BAD {path}: {problem}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.data", description="N-MNIST data folders.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="simulate an N-MNIST data set from still images")
    gen.add_argument("--out", type=Path, default=None,
                     help="output folder (default: the app's default set, $NMNIST_DASHBOARD_HOME/simulated "
                     "or <repo>/.data/simulated)")
    gen.add_argument("--source", choices=("mnist", "sklearn", "mnist-idx", "folder"), default="mnist",
                     help="mnist: the bundled MNIST test images 5000..9999 (the default set); sklearn: scikit-learn's "
                     "1797 8 x 8 digits, upscaled; mnist-idx: IDX files; folder: <digit>/<image> files")
    gen.add_argument("--range", default=None, metavar="START:STOP", dest="mnist_range",
                     help="with --source mnist: which of the bundled MNIST test images (default 5000:10000, the default "
                     "set's). More images read real N-MNIST better (README); N-MNIST's Test recording k is image k-1")
    gen.add_argument("--images", type=Path, help="IDX3 images file (mnist-idx) or image folder (folder)")
    gen.add_argument("--labels", type=Path, help="IDX1 labels file (mnist-idx)")
    gen.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files")
    gen.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    gen.add_argument("--test-fraction", type=float, default=TEST_FRACTION, help="share of source images in Test")
    gen.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", dest="settings",
                     help="change one field of the simulated camera (core.saccade.SimulationConfig), e.g. "
                     "--set vary_offset_px=1.0 or --set contrast_threshold=0.25; repeatable")

    stats = sub.add_parser("stats", help="samples per split and class, events, duration, ON fraction")
    stats.add_argument("root", type=Path)
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    val = sub.add_parser("validate", help="list unreadable recordings (exit status 1 if any)")
    val.add_argument("root", type=Path)

    down = sub.add_parser("download", help="download the full N-MNIST with tonic (needs internet)")
    down.add_argument("root", type=Path)
    for sub_parser in (gen, stats, val, down):
        sub_parser.set_defaults(subparser=sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m core.data``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        parser.exit(2, f"{parser.prog} {args.command}: error: {message}\n")
        return 2  # not reached

    try:
        if args.command == "generate":
            if args.workers < 1:
                args.subparser.error("--workers must be at least 1")
            if not 0.0 <= args.test_fraction < 1.0:
                args.subparser.error("--test-fraction must lie in [0, 1)")
            config = _simulation_config(args.settings)
            images, labels = _load_images(args, args.subparser)
            out = args.out if args.out is not None else default_source().root
            t0 = time.perf_counter()
            source = generate_simulated(
                out,
                images,
                labels,
                seed=args.seed,
                workers=args.workers,
                test_fraction=args.test_fraction,
                config=config,
                progress=_StderrProgress("simulating"),
                source=_describe_source(args),
            )
            print(f"wrote {len(images)} recordings to {source.root} in {time.perf_counter() - t0:.1f} s")
        elif args.command == "stats":
            progress = None if args.json else _StderrProgress("reading")
            stats = dataset_stats(args.root, progress=progress)
            if args.json:
                print(json.dumps(stats))
            else:
                _print_stats(stats)
        elif args.command == "validate":
            problems = validate(args.root)
            for path, problem in problems:
                print(f"{path}: {problem}")
            checked = sum(len(scan_split(args.root, s)) for s in SPLITS)
            print(f"{checked} recordings checked, {len(problems)} bad", file=sys.stderr)
            return 1 if problems else 0
        elif args.command == "download":
            source = download_nmnist(args.root, progress=_StderrProgress("downloading"))
            print(f"N-MNIST ready in {source.root}")
    except (DatasetNotFoundError, DataUnavailableError, FileExistsError, NMNISTFormatError, ValueError) as exc:
        return fail(str(exc))
    except BrokenPipeError:  # e.g. `stats --json | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:
        return fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
