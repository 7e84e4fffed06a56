"""Evaluate a saved run on any data: its network, its own transform, one split of any N-MNIST folder.

A run's network is only meaningful on the frames it was trained on, so the run's own
``TrainConfig.transform`` makes the frames (or another transform, checked to give the
frame size the network takes). The result (accuracy, per-class accuracy, confusion
matrix, NeuroBench's metrics on a few of the recordings: :mod:`core.metrics`) is kept
with the run in ``RUN_DIR/evaluations/<name>.json``. Each recording's answer (its output spike counts,
the neuron that won and its share of them) goes beside it, in ``<name>.samples.csv``: the
Mistakes page lists a confusion cell's recordings from it.

Leakage: N-MNIST's Test recording ``k`` was made from MNIST test image ``k - 1``, and the
default offline set is simulated from MNIST test images. ``exclude_trained_images`` leaves
out every recording whose source image the run's data set used (read from that set's
``simulation.json``), so what remains is a fair test.

Command line::

    python -m core.evaluate RUN_DIR --data ROOT [--split Test] [--json]
                            [--exclude-trained-images] [--max-samples N] [--metric-samples N]

With ``--json`` the last line of stdout is one JSON object (:meth:`EvaluationResult.to_dict`).
Bad input (no checkpoint, no such split, other classes, a frame size the network cannot
take) exits with status 2 and a message, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.data import (
    SIMULATION_MARKER,
    SPLITS,
    DatasetNotFoundError,
    DataSource,
    NMNISTFolder,
    default_source,
    read_simulation_info,
)
from core.events import NMNISTFormatError
from core.files import atomic_write_json, atomic_write_text, read_json
from core.images import mnist_test_indices

EVALUATIONS_DIR = "evaluations"  # RUN_DIR/evaluations/<name>.json
CHECKPOINT_ORDER = ("best", "final")  # best.pt where there is one, else final.pt
CONFIG_FILE = "config.json"

Progress = Callable[[int, int], None]


class EvaluationError(ValueError):
    """Input an evaluation cannot use; the message says what is wrong and where."""


@dataclass(frozen=True)
class SamplePrediction:
    """What the network answered on one recording of an evaluation."""

    index: int  # place of the recording in its split (NMNISTFolder's sorted file list)
    file: str  # its path relative to the data root (e.g. "NMNIST/Test/3/00042.bin")
    label: int
    predicted: int  # the output neuron with the most spikes (the first of a tie)
    spikes: tuple[int, ...]  # output spikes per class

    @property
    def correct(self) -> bool:
        return self.label == self.predicted

    @property
    def confidence(self) -> float:
        """The predicted neuron's share of all output spikes (0.0 where none spiked)."""
        total = sum(self.spikes)
        return self.spikes[self.predicted] / total if total else 0.0


@dataclass(frozen=True)
class EvaluationResult:
    """One run's network on one split of one data folder."""

    run_id: str
    run_dir: str
    checkpoint: str  # "best" or "final": which weights were evaluated
    checkpoint_iteration: int  # training steps behind those weights
    data_root: str
    data_kind: str  # "simulated" or "nmnist" (real recordings)
    data_source: str | None  # for simulated data, simulation.json's "source" (e.g. "mnist-t10k[5000:10000]")
    split: str
    transform: str  # the transform JSON that made the frames
    trained_on: str | None  # the data folder the run trained on (None where its config does not say)
    same_data: bool  # whether data_root is that folder
    samples: int  # recordings evaluated
    excluded: int  # recordings left out because the run's data used their source image
    skipped_bad: int  # unreadable recordings skipped
    accuracy: float
    per_class_accuracy: tuple[float | None, ...]  # None for a class absent from the evaluated recordings
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted]
    seconds: float
    created: float  # seconds since the epoch
    options: dict[str, Any]  # exclude_trained_images, max_samples, seed
    # NeuroBench's metrics on a few of the recordings (core.metrics.NetworkMetrics.to_dict); None: not measured
    metrics: dict[str, Any] | None = None
    # one per evaluated recording; kept beside the JSON (RUN_DIR/evaluations/<name>.samples.csv), not in it
    predictions: tuple[SamplePrediction, ...] = field(default=(), repr=False, compare=False)

    @property
    def name(self) -> str:
        """The file name (without ``.json``) this result is kept under in ``RUN_DIR/evaluations``."""
        return evaluation_name(self.data_root, self.split, self.transform, self.options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the key figures first)."""
        d = asdict(replace(self, predictions=()))  # predictions go to their own file
        del d["predictions"]
        d["per_class_accuracy"] = list(self.per_class_accuracy)
        d["confusion"] = [list(row) for row in self.confusion]
        from core.metrics import JSON_KEYS  # NeuroBench's keys at the top level, None where not measured

        metrics = dict.fromkeys(JSON_KEYS) | (d.pop("metrics") or {})
        first = ("accuracy", "samples", "excluded", "run_id", "data_root", "split")
        return {k: d[k] for k in first} | metrics | {k: v for k, v in d.items() if k not in first}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (a result written by a newer version)."""
        values = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        values["per_class_accuracy"] = tuple(values.get("per_class_accuracy", ()))
        values["confusion"] = tuple(tuple(int(v) for v in row) for row in values.get("confusion", ()))
        from core.metrics import JSON_KEYS

        measured = d.get("activation_sparsity") is not None
        values["metrics"] = {k: d[k] for k in JSON_KEYS if k in d} if measured else None
        return cls(**values)


def evaluation_name(data_root: str, split: str, transform: str, options: dict[str, Any]) -> str:
    """``<split>-<folder name>-<hash>``: one file per (data folder, split, transform, options)."""
    key = json.dumps([str(Path(data_root).resolve()), split, transform, options], sort_keys=True)
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(data_root).name).strip("_.")[:40] or "data"
    return f"{split}-{folder}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class LoadedRun:
    """A run's network, ready to evaluate, and what it was trained with."""

    run_dir: Path
    checkpoint: str
    iteration: int
    model: Any  # core.model.SpikingCNN in eval mode
    config: Any  # core.training.TrainConfig

    @property
    def data_root(self) -> Path:
        """The data folder the run trained on (its config's, else the default simulated set)."""
        root = self.config.data_root
        return Path(root).expanduser() if root is not None else default_source().root


def checkpoint_file(run_dir: Path) -> Path:
    """``best.pt`` of a run folder, else ``final.pt``; :class:`EvaluationError` where it has neither."""
    if not run_dir.is_dir():
        raise EvaluationError(f"{run_dir}: no such run folder")
    for name in CHECKPOINT_ORDER:
        path = run_dir / f"{name}.pt"
        if path.is_file():
            return path
    raise EvaluationError(
        f"{run_dir}: no checkpoint (best.pt or final.pt) to evaluate; a run saves best.pt at its first "
        "evaluation and final.pt when it ends"
    )


def load_run(run_dir: str | os.PathLike[str], device: str = "cpu") -> LoadedRun:
    """A run's network (best.pt, else final.pt) and its TrainConfig (config.json, else the checkpoint's)."""
    from core.model import ModelConfig, ModelConfigError, build_model
    from core.runs import CheckpointError, check_architecture, load_checkpoint
    from core.training import TrainConfig

    run_dir = Path(run_dir).expanduser()
    path = checkpoint_file(run_dir)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        raise EvaluationError(str(exc)) from None
    stored = read_json(run_dir / CONFIG_FILE)
    if not isinstance(stored, dict):
        stored = checkpoint.get("train_config")
    if not isinstance(stored, dict):
        raise EvaluationError(f"{run_dir}: no readable {CONFIG_FILE} (and none in {path.name}): the run's transform is unknown")
    try:
        config = TrainConfig.from_dict(stored)
        model_config = ModelConfig.from_dict(checkpoint["model_config"])
    except (TypeError, ValueError, ModelConfigError) as exc:
        raise EvaluationError(f"{run_dir}: its config does not fit this version ({exc})") from None
    model = build_model(model_config)
    try:
        check_architecture(path, checkpoint["state_dict"], model)
        model.load_state_dict(checkpoint["state_dict"])
    except (CheckpointError, RuntimeError) as exc:
        raise EvaluationError(str(exc)) from None
    return LoadedRun(run_dir, path.stem, int(checkpoint.get("iteration", 0)), model.to(device).eval(), config)


def frame_pipeline(transform: str) -> Any:
    """The transform as a pipeline, refused unless it makes the (2, 34, 34) frames the network takes."""
    from core.model import FRAME_SHAPE
    from core.training import transform_steps
    from core.transforms import from_json

    try:
        pipeline = from_json(transform_steps(transform))
    except ValueError as exc:
        raise EvaluationError(f"transform: {exc}") from None
    shape = pipeline.output_shape()
    if shape is None or tuple(shape[1:]) != FRAME_SHAPE:
        made = "no frames" if shape is None else "frames of " + " x ".join(str(v) for v in shape[1:])
        raise EvaluationError(
            f"transform: makes {made}, but the network takes {' x '.join(map(str, FRAME_SHAPE))} frames "
            f"(polarity x height x width); leave out steps that change the sensor size"
        )
    return pipeline


# ---------------------------------------------------------------- leakage


def _file_ids(files: Sequence[Path]) -> np.ndarray:
    """N-MNIST file ids (``00042.bin`` -> 42); -1 where a name is not a number."""
    return np.array([int(f.stem) if f.stem.isdigit() else -1 for f in files], dtype=np.int64)


def recording_images(root: Path, split: str, files: Sequence[Path]) -> np.ndarray:
    """The MNIST test image behind each recording of a split; -1 where it is none (or not known).

    Real N-MNIST: Test recording ``k`` is test image ``k - 1``; Train recordings are of MNIST's
    training images. Simulated: ``simulation.json``'s ``split_ids`` and ``source`` say it.
    """
    ids = _file_ids(files)
    out = np.full(len(files), -1, dtype=np.int64)
    info = read_simulation_info(root) if (root / SIMULATION_MARKER).is_file() else None
    if info is None:
        if split == "Test":
            out[ids > 0] = ids[ids > 0] - 1
        return out
    split_ids = np.asarray((info.get("split_ids") or {}).get(split, []), dtype=np.int64)
    known = (ids > 0) & (ids <= len(split_ids))
    images = mnist_test_indices(str(info.get("source")), split_ids[ids[known] - 1])
    if images is not None:
        out[known] = images
    return out


def trained_images(run: LoadedRun) -> np.ndarray:
    """The MNIST test images (sorted, unique) the run's data set was simulated from: both its splits.

    Its Test split counts too: it picked the run's best checkpoint. A run on real N-MNIST or on
    images that are not MNIST's test images used none. Refuses where the data folder is gone.
    """
    root = run.data_root
    info = read_simulation_info(root)
    if info is None:
        if (root / "NMNIST").is_dir():
            return np.zeros(0, dtype=np.int64)  # real N-MNIST: trained on recordings of MNIST's training images
        raise EvaluationError(
            f"cannot tell which images run {run.run_dir.name} trained on: its data folder {root} has no "
            f"{SIMULATION_MARKER} and no recordings (deleted or regenerated elsewhere?)"
        )
    positions = [np.asarray(ids, dtype=np.int64) for ids in (info.get("split_ids") or {}).values()]
    images = mnist_test_indices(str(info.get("source")), np.concatenate(positions) if positions else [])
    return np.zeros(0, dtype=np.int64) if images is None else np.unique(images)


# ---------------------------------------------------------------- evaluation


def _subset(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """All indices, or a fixed random subset of ``limit`` of them (in order): files are sorted by digit."""
    if limit is None or limit >= len(indices):
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=limit, replace=False))


def evaluate(
    run_dir: str | os.PathLike[str],
    source: DataSource | str | os.PathLike[str],
    split: str = "Test",
    *,
    exclude_trained_images: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    transform: str | None = None,
    batch_size: int = 128,
    device: str = "cpu",
    save: bool = True,
    progress: Progress | None = None,
    metric_samples: int | None = None,
) -> EvaluationResult:
    """Evaluate run ``run_dir``'s network on one split of the data folder ``source``.

    Frames come from the run's own transform (or ``transform``, which must make frames of
    the same size); predictions are the output neuron with the most spikes, as training
    counts them. ``max_samples`` evaluates a fixed random subset; ``exclude_trained_images``
    leaves out recordings of images the run's data used. NeuroBench's metrics are measured on
    ``metric_samples`` of the evaluated recordings, evenly spread (None: as training does, at most
    16 and 1,200 sample-time-steps; 0: not measured; see :mod:`core.metrics`). Saves the result
    with the run (``save``). Raises :class:`EvaluationError` on input it cannot use.
    """
    import torch

    from core.frames import FramesDataset, pad_collate
    from core.metrics import measure_samples

    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or int(max_samples) < 1):
        raise EvaluationError(f"max_samples must be at least 1, got {max_samples!r}")
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be at least 1, got {batch_size!r}")
    if metric_samples is not None and (isinstance(metric_samples, bool) or not isinstance(metric_samples, int)
                                       or metric_samples < 0):
        raise EvaluationError(f"metric_samples must be None (the default), 0 (none) or more, got {metric_samples!r}")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise EvaluationError(f"device: not a torch device: {device!r} (cpu, cuda, cuda:N or mps)") from None
    started = time.perf_counter()
    run = load_run(run_dir, device=device)
    transform = run.config.transform if transform is None else transform
    pipeline = frame_pipeline(transform)
    data = source if isinstance(source, DataSource) else DataSource.detect(source)
    try:
        dataset = NMNISTFolder(data.root, split)
    except DatasetNotFoundError as exc:
        raise EvaluationError(f"no {split} split to evaluate on: {exc}") from None

    n_classes = run.model.config.n_classes
    present = np.unique(dataset.targets)
    if present.size and int(present.max()) >= n_classes:
        outside = ", ".join(str(int(c)) for c in present if c >= n_classes)
        raise EvaluationError(
            f"{data.root} {split} holds digits {outside}, but run {run.run_dir.name}'s network has {n_classes} "
            f"output classes (0..{n_classes - 1}): the classes differ"
        )

    indices = np.arange(len(dataset))
    excluded = 0
    if exclude_trained_images:
        seen = trained_images(run)
        images = recording_images(data.root, split, dataset.files)
        keep = ~np.isin(images, seen) | (images < 0)
        excluded = int((~keep).sum())
        indices = indices[keep]
        if not len(indices):
            raise EvaluationError(
                f"every recording of {data.root} {split} ({excluded}) shows an image run {run.run_dir.name}'s "
                "data used: nothing fair is left to evaluate"
            )
    indices = _subset(indices, max_samples, seed)

    frames = FramesDataset(dataset, pipeline, None, "", split)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    skipped = 0
    predictions: list[SamplePrediction] = []
    total = len(indices)
    if progress is not None:
        progress(0, total)
    with torch.no_grad():
        for start in range(0, total, batch_size):
            items, read = [], []
            for i in indices[start : start + batch_size]:
                try:
                    items.append(frames[int(i)])
                    read.append(int(i))
                except NMNISTFormatError:
                    skipped += 1
            if items:
                batch, targets = pad_collate(items)
                spk_rec, _ = run.model(batch.to(device))
                counts = spk_rec.sum(dim=0)
                _, predicted = counts.max(1)  # the most spikes, as snntorch.functional.accuracy_rate
                np.add.at(confusion, (targets.numpy(), predicted.cpu().numpy()), 1)
                predictions += _predictions(dataset, data.root, read, targets, predicted, counts)
            if progress is not None:
                progress(min(start + batch_size, total), total)
    samples = int(confusion.sum())
    if samples == 0:
        raise EvaluationError(f"none of the {total} recordings of {data.root} {split} could be read")
    subset = {} if metric_samples is None else {"samples": metric_samples, "max_steps": None}
    measured = measure_samples(run.model, frames, indices, device, skip=(NMNISTFormatError,), **subset)

    info = read_simulation_info(data.root) if data.kind == "simulated" else None
    trained_on = run.data_root
    result = EvaluationResult(
        run_id=run.run_dir.name,
        run_dir=str(run.run_dir),
        checkpoint=run.checkpoint,
        checkpoint_iteration=run.iteration,
        data_root=str(data.root),
        data_kind=data.kind,
        data_source=None if info is None else str(info.get("source")),
        split=split,
        transform=transform if isinstance(transform, str) else json.dumps(transform),
        trained_on=str(trained_on),
        same_data=_same_folder(trained_on, data.root),
        samples=samples,
        excluded=excluded,
        skipped_bad=skipped,
        accuracy=float(np.trace(confusion) / samples),
        per_class_accuracy=tuple(
            float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None for c in range(n_classes)
        ),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        seconds=round(time.perf_counter() - started, 3),
        created=time.time(),
        options={"exclude_trained_images": bool(exclude_trained_images), "max_samples": max_samples, "seed": int(seed)},
        predictions=tuple(predictions),
        metrics=None if measured is None else measured.to_dict(),
    )
    if save:
        save_evaluation(result)
    return result


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def save_evaluation(result: EvaluationResult) -> Path:
    """Keep a result with its run: ``RUN_DIR/evaluations/<name>.json`` (the same evaluation again replaces it).

    Its per-sample predictions go beside it, in ``<name>.samples.csv`` (written first: a JSON
    that names an evaluation always has its samples, or none for a result without them).
    """
    path = Path(result.run_dir) / EVALUATIONS_DIR / f"{result.name}.json"
    samples = predictions_file(result)
    if result.predictions:
        atomic_write_text(samples, predictions_csv(result.predictions))
    elif samples.is_file():
        samples.unlink(missing_ok=True)  # a stale file of an earlier evaluation of the same name
    atomic_write_json(path, result.to_dict())
    return path


def saved_evaluations(run_dir: str | os.PathLike[str]) -> list[EvaluationResult]:
    """The evaluations kept with a run, newest first (unreadable files are left out)."""
    folder = Path(run_dir) / EVALUATIONS_DIR
    results = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_json(path)
        if isinstance(data, dict):
            try:
                results.append(EvaluationResult.from_dict(data))
            except (TypeError, ValueError):
                continue
    return sorted(results, key=lambda r: r.created, reverse=True)


# ---------------------------------------------------------------- per-sample predictions

PREDICTIONS_SUFFIX = ".samples.csv"  # RUN_DIR/evaluations/<name>.samples.csv beside <name>.json
PREDICTION_COLUMNS = ("index", "file", "label", "predicted", "confidence", "spikes")


def _predictions(dataset: NMNISTFolder, root: Path, read: list[int], targets: Any, predicted: Any,
                 counts: Any) -> list[SamplePrediction]:
    """One batch's recordings (their places ``read`` in ``dataset``) with what the network answered."""
    counts = counts.detach().cpu().round().long().numpy()
    out = []
    for i, label, guess, row in zip(read, targets.tolist(), predicted.tolist(), counts):
        path = Path(dataset.files[i])
        try:
            file = path.relative_to(root).as_posix()
        except ValueError:
            file = str(path)
        out.append(SamplePrediction(i, file, int(label), int(guess), tuple(int(v) for v in row)))
    return out


def predictions_file(result: EvaluationResult) -> Path:
    """Where the per-sample predictions of ``result`` are kept."""
    return Path(result.run_dir) / EVALUATIONS_DIR / f"{result.name}{PREDICTIONS_SUFFIX}"


def predictions_csv(predictions: Sequence[SamplePrediction]) -> str:
    """The predictions as CSV: index, file, label, predicted, confidence, spikes (space-separated counts)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for p in predictions:
        writer.writerow((p.index, p.file, p.label, p.predicted, f"{p.confidence:.4f}", " ".join(map(str, p.spikes))))
    return buffer.getvalue()


def load_predictions(result: EvaluationResult) -> tuple[SamplePrediction, ...] | None:
    """The per-sample predictions kept with a saved evaluation; None where it has none (an older evaluation).

    Raises :class:`EvaluationError` where the file is there but cannot be read, saying why.
    """
    if result.predictions:
        return result.predictions
    path = predictions_file(result)
    if not path.is_file():
        return None
    n_classes = len(result.confusion)
    out = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            if tuple(next(reader, ())) != PREDICTION_COLUMNS:
                raise ValueError(f"its header is not {','.join(PREDICTION_COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                if len(row) != len(PREDICTION_COLUMNS):
                    raise ValueError(f"line {line} has {len(row)} columns, not {len(PREDICTION_COLUMNS)}")
                spikes = tuple(int(v) for v in row[5].split())
                p = SamplePrediction(int(row[0]), row[1], int(row[2]), int(row[3]), spikes)
                if len(spikes) != n_classes or not (0 <= p.label < n_classes and 0 <= p.predicted < n_classes):
                    raise ValueError(f"line {line} does not fit a network of {n_classes} classes")
                out.append(p)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise EvaluationError(f"{path.name}: the per-sample predictions cannot be read ({exc})") from None
    return tuple(out)


def confusion_cell(predictions: Sequence[SamplePrediction], label: int, predicted: int) -> list[SamplePrediction]:
    """The recordings of digit ``label`` the network called ``predicted``, the most confident first."""
    cell = [p for p in predictions if p.label == label and p.predicted == predicted]
    return sorted(cell, key=_confidence_order)


def most_confidently_wrong(predictions: Sequence[SamplePrediction], n: int = 20) -> list[SamplePrediction]:
    """The ``n`` wrong answers given with the largest share of output spikes (ties: the larger margin, more spikes)."""
    return sorted((p for p in predictions if not p.correct), key=_confidence_order)[:n]


def _confidence_order(p: SamplePrediction) -> tuple[float, int, int, int]:
    """Most confident first: spike share, then the margin over the true class, then all spikes, then file order."""
    return (-p.confidence, -(p.spikes[p.predicted] - p.spikes[p.label]), -sum(p.spikes), p.index)


# ---------------------------------------------------------------- command line


def format_result(result: EvaluationResult) -> str:
    """The result for people: accuracy, per-class accuracy and the confusion matrix."""
    lines = [
        f"run {result.run_id} ({result.checkpoint}.pt, iteration {result.checkpoint_iteration})",
        f"data {result.data_root} ({result.data_kind}{f', {result.data_source}' if result.data_source else ''}), "
        f"split {result.split}{'' if not result.same_data else ' (the data it trained on)'}",
        f"accuracy {result.accuracy:.1%} on {result.samples} recordings"
        + (f", {result.excluded} left out (images its data used)" if result.excluded else "")
        + (f", {result.skipped_bad} unreadable skipped" if result.skipped_bad else ""),
        "per class: "
        + "  ".join(f"{c}:{'-' if a is None else f'{a:.0%}'}" for c, a in enumerate(result.per_class_accuracy)),
        "confusion (rows: true digit, columns: predicted):",
    ]
    width = max(4, len(str(max((max(row) for row in result.confusion), default=0))) + 1)
    lines.append("    " + "".join(f"{c:>{width}}" for c in range(len(result.confusion))))
    lines += [f"{c:>3} " + "".join(f"{v:>{width}}" for v in row) for c, row in enumerate(result.confusion)]
    from core.metrics import describe

    lines.append(describe(result.metrics))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core.evaluate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m core.evaluate",
        description="Evaluate a saved training run on one split of any N-MNIST-layout data folder.",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (holding best.pt or final.pt and config.json)")
    parser.add_argument("--data", type=Path, required=True, help="data ROOT holding NMNIST/<split>/<digit>/*.bin")
    parser.add_argument("--split", choices=SPLITS, default="Test", help="which split (default: Test)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results on stdout")
    parser.add_argument(
        "--exclude-trained-images", action="store_true",
        help="leave out recordings of MNIST test images the run's data set was simulated from (N-MNIST Test k is image k-1)",
    )
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate a fixed random subset of N recordings")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-samples subset")
    parser.add_argument("--transform", default=None, help="transform JSON instead of the run's own (same frame size)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--metric-samples", type=int, default=None,
        help="measure NeuroBench's metrics on N of the evaluated recordings, evenly spread (default: at most 16 and "
             "1,200 sample-time-steps, as training does; 0: none)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not keep the result in RUN_DIR/evaluations")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m core.evaluate``; returns the exit status (2 for input it cannot use)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_samples is not None and args.max_samples < 1:
        parser.error("--max-samples must be at least 1")
    if args.metric_samples is not None and args.metric_samples < 0:
        parser.error("--metric-samples must be 0 (none) or more")

    def progress(done: int, total: int) -> None:
        if not args.json:
            sys.stderr.write(f"\revaluating: {done}/{total}" + ("\n" if done >= total else ""))
            sys.stderr.flush()

    try:
        result = evaluate(
            args.run_dir, args.data, args.split,
            exclude_trained_images=args.exclude_trained_images, max_samples=args.max_samples, seed=args.seed,
            transform=args.transform, device=args.device, save=not args.no_save, progress=progress,
            metric_samples=args.metric_samples,
        )
    except EvaluationError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except OSError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}\n")
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(format_result(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
