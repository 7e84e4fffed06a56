"""A trained network on one recording: which runs there are, load one, run a sample through it, render its vote.

What the Spike counter page shows, without Streamlit: the runs a person can choose
(:func:`run_choices`, damaged run folders listed with the reason, never raised), the
one shown by default (:func:`default_run`, the best finished run by test accuracy), the
data a run trained on and a note where the data shown is other data, the network of a
run (its best checkpoint, through :func:`core.runs.load_checkpoint`) or an untrained
one, the output spikes and membrane potentials of one sample's frames, the prediction in
words, and the spike-count MP4 made in a background job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import figures
from core.data import SIMULATION_MARKER, DataSource, default_source, read_simulation_info
from core.files import read_json, user_path
from core.images import mnist_test_indices
from core.jobs import ProgressJob
from core.model import ModelConfig, build_model
from core.runs import CHECKPOINT_NAMES, CONFIG_FILE, RESULTS_FILE, RUN_ID_PATTERN, RunInfo, RunStore
from core.training import PRESETS, TrainConfig, transform_steps
from core.transforms import from_json

UNTRAINED = "untrained network (random weights)"
UNTRAINED_PARAM = "untrained"  # the ``run`` query parameter's value for the untrained network


class NetworkError(ValueError):
    """A run whose network cannot be loaded; names the run and the problem (plain text)."""

    def __init__(self, run_id: str, problem: str) -> None:
        self.run_id = run_id
        self.problem = problem
        super().__init__(f"run {run_id}: {problem}")


def percent(fraction: float) -> str:
    """``0.969`` as ``"96.9 %"``."""
    return f"{fraction * 100:.1f} %"


# ---------------------------------------------------------------- what a run trained on


@dataclass(frozen=True)
class TrainingData:
    """The data a run trained on, as its config and the folder's ``simulation.json`` tell it."""

    root: Path
    kind: str  # "simulated", "nmnist" (real recordings) or "missing" (the folder is not there any more)
    image_source: str | None = None  # simulated sets: the still images simulated (simulation.json's "source")
    recordings: int | None = None  # simulated sets: Train recordings, as simulation.json counts them

    @property
    def short(self) -> str:
        """A few words: ``simulated data``, ``real N-MNIST`` or ``data no longer there``."""
        return {"simulated": "simulated data", "nmnist": "real N-MNIST"}.get(self.kind, "data no longer there")

    def describe(self) -> str:
        """One line for people (plain text with the folder in it)."""
        if self.kind == "missing":
            return f"the data in {self.root}, a folder that is no longer there"
        if self.kind == "nmnist":
            return f"real N-MNIST recordings in {self.root}"
        details = [f"from the images {self.image_source}"] if self.image_source else []
        if self.recordings is not None:
            details.append(f"{self.recordings:,} Train recordings")
        return "simulated N-MNIST" + (f" ({', '.join(details)})" if details else "") + f" in {self.root}"

    def same_folder(self, root: Path) -> bool:
        """Whether ``root`` is this data's folder."""
        try:
            return user_path(root).resolve() == self.root.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False


def training_data(config: TrainConfig, run: RunInfo | None = None) -> TrainingData:
    """What a run trains on: what its folder's data.json recorded (through ``run``), else what ``config`` names.

    The folder is the config's ``data_root``, else the default simulated set; its kind,
    images and size come from data.json where the run wrote one, else from the folder's
    own ``simulation.json``.
    """
    recorded = getattr(run, "data_root", None)
    root = user_path(recorded or config.data_root or default_source().root)
    try:
        present = root.is_dir()
        simulated = (root / SIMULATION_MARKER).is_file()
    except OSError:
        present = simulated = False
    if not present:
        return TrainingData(root, "missing")
    kind = config.data_kind if config.data_kind != "auto" else ("simulated" if simulated else "nmnist")
    if getattr(run, "train_samples", None) is not None and getattr(run, "data_kind", None) in ("simulated", "nmnist"):
        kind = run.data_kind  # data.json: what the run really read
    if kind != "simulated":
        return TrainingData(root, kind)
    info = read_simulation_info(root) or {}
    source = getattr(run, "data_source", None) or info.get("source")
    counts = info.get("counts")
    train = counts.get("Train") if isinstance(counts, dict) else None
    samples = getattr(run, "train_samples", None) or (train.get("samples") if isinstance(train, dict) else None)
    return TrainingData(
        root,
        kind,
        image_source=source if isinstance(source, str) else None,
        recordings=samples if isinstance(samples, int) and not isinstance(samples, bool) else None,
    )


def trained_images(data: TrainingData) -> np.ndarray:
    """The MNIST test images (sorted, unique) a simulated set was made from, both its splits; none otherwise."""
    info = read_simulation_info(data.root) if data.kind == "simulated" else None
    split_ids = info.get("split_ids") if info else None
    if not isinstance(split_ids, dict):
        return np.zeros(0, dtype=np.int64)
    try:
        positions = np.concatenate([np.asarray(ids, dtype=np.int64).ravel() for ids in split_ids.values()] or [[]])
        images = mnist_test_indices(str(info.get("source")), positions)
    except (TypeError, ValueError):
        return np.zeros(0, dtype=np.int64)
    return np.zeros(0, dtype=np.int64) if images is None else np.unique(images)


# ---------------------------------------------------------------- the runs a person can choose


@dataclass(frozen=True)
class RunChoice:
    """A run as the Spike counter offers it: its outcome, what it trained on, or why it cannot be used."""

    run_id: str
    status: str  # finished / stopped / failed / running / incomplete, or "damaged"
    preset: str
    created: float  # seconds since the epoch
    test_accuracy: float | None  # a fraction in [0, 1]
    checkpoint_stamp: float  # modification time of the checkpoint it loads (0 where it has none)
    config: TrainConfig | None
    trained_on: TrainingData | None
    problem: str | None = None  # why the run cannot be used (plain text); None where it can

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_stamp > 0

    @property
    def usable(self) -> bool:
        """Whether its network can be shown: readable files and a checkpoint."""
        return self.problem is None and self.config is not None and self.has_checkpoint

    def label(self) -> str:
        """One line for the run picker: id, status, test accuracy, data (plain text)."""
        parts = [self.status]
        if self.test_accuracy is not None:
            parts.append(f"{percent(self.test_accuracy)} test accuracy")
        if self.trained_on is not None:
            parts.append(f"trained on {self.trained_on.short}")
        return f"{self.run_id} ({', '.join(parts)})"

    def headline(self) -> str:
        """``run <id> (<status>, <accuracy> test accuracy)``: the first line of its video's title."""
        accuracy = f", {percent(self.test_accuracy)} test accuracy" if self.test_accuracy is not None else ""
        return f"run {self.run_id} ({self.status}{accuracy})"

    def damaged(self, problem: str) -> RunChoice:
        """This run marked as unusable, for ``problem``."""
        return replace(self, status="damaged", problem=problem)


def run_choices(store: RunStore) -> list[RunChoice]:
    """Every run folder of ``store``, newest first; a damaged one is listed with its problem, never raised.

    The store lists a folder it cannot read whole as damaged; should its listing fail
    all the same, the runs are read one by one, so the others stay usable. A run is
    also refused here where its config does not make a TrainConfig (its transform is
    needed) or its test accuracy is not a fraction.
    """
    try:
        infos: dict[str, RunInfo | None] = {info.run_id: info for info in store.list_runs()}
    except Exception:  # noqa: BLE001 - one damaged folder must not hide the others
        infos = dict.fromkeys(_run_ids(store))
    choices = [_choice(store, run_id, info) for run_id, info in infos.items()]
    return sorted(choices, key=lambda c: (c.created, c.run_id), reverse=True)


def _run_ids(store: RunStore) -> list[str]:
    """Names of the folders of ``store`` that hold a config (what ``RunStore.list_runs`` lists)."""
    try:
        return [p.name for p in store.root.iterdir() if RUN_ID_PATTERN.match(p.name) and (p / CONFIG_FILE).is_file()]
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _choice(store: RunStore, run_id: str, info: RunInfo | None) -> RunChoice:
    """One run as a :class:`RunChoice`, its files checked; every problem becomes ``problem``."""
    path = store.root / run_id
    checkpoint = next((path / f"{n}.pt" for n in CHECKPOINT_NAMES if (path / f"{n}.pt").is_file()), None)
    stamp = _mtime(checkpoint) if checkpoint is not None else 0.0
    problem = _results_problem(path / RESULTS_FILE, read_json(path / RESULTS_FILE))
    config, trained_on = None, None
    raw = read_json(path / CONFIG_FILE)
    if not isinstance(raw, dict):
        problem = problem or f"{CONFIG_FILE} is not a readable JSON object"
    else:
        try:
            config = TrainConfig.from_dict(raw)
            trained_on = training_data(config, info)
        except Exception as exc:  # noqa: BLE001 - a config from another version or hand-edited: any error
            problem = problem or f"{CONFIG_FILE} does not fit this version ({_first_line(exc)})"
    if info is None and problem is None:
        try:
            info = store.load_run(run_id).info
        except Exception as exc:  # noqa: BLE001 - whatever is wrong in the folder, the run is damaged
            problem = f"its files cannot be read ({_first_line(exc)})"
    if info is not None and info.status == "damaged":
        problem = str(getattr(info, "damaged", None) or problem or "the run folder is damaged")
    preset = raw.get("preset") if isinstance(raw, dict) else None
    choice = RunChoice(
        run_id=run_id,
        status=str(info.status) if info is not None else "damaged",
        preset=preset if isinstance(preset, str) else "custom",
        created=info.created if info is not None else _mtime(path / CONFIG_FILE),
        test_accuracy=info.test_accuracy if info is not None and problem is None else None,
        checkpoint_stamp=stamp,
        config=config,
        trained_on=trained_on,
    )
    return choice.damaged(problem) if problem is not None else choice


def _results_problem(path: Path, results: Any) -> str | None:
    """What is wrong with a run's ``results.json`` (its fields as the run list reads them), or None."""
    if results is None:
        return f"{RESULTS_FILE} is not readable JSON" if path.exists() else None
    if not isinstance(results, dict):
        return f"{RESULTS_FILE} holds a {type(results).__name__}, not the run's results"
    numbers = {"iterations": (int,), "seconds": (int, float), "test_accuracy": (int, float)}
    for name, types in numbers.items():
        value = results.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
            return f"{RESULTS_FILE}: {name} is {_quote(value)}, not a number"
    accuracy = results.get("test_accuracy")
    if accuracy is not None and not 0 <= accuracy <= 1:
        return f"{RESULTS_FILE}: test_accuracy is {accuracy!r}, not a fraction between 0 and 1"
    if not isinstance(results.get("status", "finished"), str):
        return f"{RESULTS_FILE}: status is {_quote(results.get('status'))}, not a word"
    return None


def _quote(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def default_run(choices: Sequence[RunChoice], exclude: Sequence[str] = ()) -> tuple[RunChoice | None, str]:
    """The run shown when nobody chose one, and why (plain text): the best finished run by test accuracy.

    Where no run has finished, the best of the others with a test accuracy; where none
    has one, the newest with a checkpoint; where there is none, None (the untrained
    network). Ties go to the newer run. ``exclude`` leaves runs out (their network
    would not load).
    """
    usable = [c for c in choices if c.usable and c.run_id not in exclude]
    finished = [c for c in usable if c.status == "finished" and c.test_accuracy is not None]
    if finished:
        best = max(finished, key=lambda c: (c.test_accuracy, c.created))
        return best, f"the best finished run: {percent(best.test_accuracy)} test accuracy"
    scored = [c for c in usable if c.test_accuracy is not None]
    if scored:
        best = max(scored, key=lambda c: (c.test_accuracy, c.created))
        return best, f"no run has finished; the best {best.status} one: {percent(best.test_accuracy)} test accuracy"
    if usable:
        newest = max(usable, key=lambda c: (c.created, c.run_id))
        return newest, "no run has a test accuracy yet; the newest one with a checkpoint"
    return None, "no trained network yet"


def data_note(choice: RunChoice | None, source: DataSource) -> str | None:
    """A sentence where ``source`` is not the data the run trained on (plain text); None where it is."""
    if choice is None or choice.trained_on is None:
        return None
    trained = choice.trained_on
    if trained.same_folder(source.root):
        return None
    here = "real N-MNIST recordings" if source.kind == "nmnist" else "simulated recordings"
    if trained.kind == "simulated" and source.kind == "nmnist":
        return (f"This network was trained on simulated recordings ({trained.describe()}) and runs here on real "
                f"N-MNIST recordings ({source.root}): expect more mistakes than its test accuracy says.")
    if trained.kind == "nmnist" and source.kind == "simulated":
        return (f"This network was trained on real N-MNIST recordings ({trained.root}) and runs here on simulated "
                f"ones ({source.root}): its test accuracy was measured on real recordings.")
    return (f"This network was trained on {trained.describe()}; here it runs on other {here} ({source.root}): "
            "its test accuracy was measured on its own data.")


def leakage_note(choice: RunChoice | None, source: DataSource, split: str, recording: Path) -> str | None:
    """A sentence where ``recording`` shows an MNIST image the run's data was simulated from (plain text).

    N-MNIST's Test recording ``k`` is a recording of MNIST test image ``k - 1``, and the
    default offline set is simulated from MNIST test images: a network trained on it has
    seen that digit, so its prediction here is not a fair test. None where it has not.
    """
    if choice is None or choice.trained_on is None or choice.trained_on.same_folder(source.root):
        return None
    seen = trained_images(choice.trained_on)
    if not len(seen):
        return None
    from core.evaluate import recording_images

    try:
        image = int(recording_images(source.root, split, [Path(recording)])[0])
    except (OSError, TypeError, ValueError, IndexError):
        return None
    if image < 0 or not np.isin(image, seen):
        return None
    return (f"This recording shows MNIST test image {image}, and the network trained on a simulation of that same "
            "image: not a fair test. Recordings of other images (real N-MNIST Train recordings, for one) are.")


# ---------------------------------------------------------------- the network on one sample


@dataclass(frozen=True)
class Network:
    """A model ready to run and what it needs: its transform and a name for people."""

    model: torch.nn.Module
    transform: str  # the transform JSON of its training run: the frames it expects
    label: str

    @property
    def threshold(self) -> float:
        """The output neurons' firing threshold (1.0 where the model does not say)."""
        return float(getattr(getattr(self.model, "config", None), "threshold", 1.0))

    @property
    def population(self) -> int:
        """Output neurons a class (1 where the model does not say); the model's output sums each class's."""
        return int(getattr(getattr(self.model, "config", None), "population", 1))

    def population_note(self) -> str | None:
        """A sentence for pages that show the output a class at a time, where a class has several neurons."""
        if self.population == 1:
            return None
        return (f"This network has {self.population} output neurons a class (snnTorch's population code): each "
                "class's count is its neurons' spikes summed, and its membrane their mean.")


def untrained_network() -> Network:
    """The tutorial's network with seeded random weights and the tutorial's transform."""
    torch.manual_seed(0)
    return Network(build_model(ModelConfig()).eval(), PRESETS["tutorial"].transform, UNTRAINED)


def load_network(store: RunStore, run_id: str) -> Network:
    """A run's best checkpoint (``final`` where there is no best) with the transform it was trained on.

    Raises :class:`NetworkError` (saying why) for a run that is not there, whose config
    is unreadable, or whose checkpoint does not load.
    """
    try:
        raw = read_json(store.run_path(run_id) / CONFIG_FILE)
        if not isinstance(raw, dict):
            raise ValueError(f"{CONFIG_FILE} is not a readable JSON object")
        config = TrainConfig.from_dict(raw)
        model = store.load_model(run_id).eval()
    except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:  # RunNotFound, Checkpoint, Config errors
        raise NetworkError(run_id, _first_line(exc)) from None
    return Network(model, config.transform, run_id)


def sample_frames(network: Network, events: np.ndarray) -> np.ndarray:
    """One recording as the float32 frames ``(time, 2, 34, 34)`` the network was trained on."""
    return np.asarray(from_json(transform_steps(network.transform)).frames(events), dtype=np.float32)


def run_sample(network: Network, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output spikes and membrane potentials ``(time, 10)`` of one recording (a batch of one)."""
    frames = sample_frames(network, events)
    with torch.no_grad():
        spk, mem = network.model(torch.from_numpy(frames)[:, None])
    return spk[:, 0].numpy(), mem[:, 0].numpy()


def output_labels(n: int) -> tuple[str, ...]:
    """Names of ``n`` classes (or output neurons): the digits 0..n-1."""
    return tuple(str(k) for k in range(n))


@dataclass(frozen=True)
class Prediction:
    """The network's vote on one sample, in words: the output neuron that spiked most."""

    predicted: int | None  # None where no output neuron spiked
    label: int
    counts: tuple[int, ...]
    population: int = 1  # output neurons a class: the counts are each class's neurons' spikes summed

    @property
    def correct(self) -> bool:
        return self.predicted == self.label

    @property
    def verdict(self) -> str:
        """``correct``, ``wrong`` or ``no prediction``."""
        return "no prediction" if self.predicted is None else ("correct" if self.correct else "wrong")

    def explain(self) -> str:
        """Why the prediction is what it is, in a sentence (plain text, numbers only)."""
        if self.predicted is None:
            return "No output neuron spiked, so the network makes no prediction."
        top = self.counts[self.predicted]
        tied = [k for k, c in enumerate(self.counts) if c == top and k != self.predicted]
        text = f"{voters(self.predicted, self.population)} spiked most ({top} {_spikes(top)})"
        if tied:
            text += f", tied with {', '.join(map(str, tied))}: the lowest label wins, as in training"
        if self.correct:
            return text + f", and {self.label} is the true label."
        mine = self.counts[self.label] if 0 <= self.label < len(self.counts) else 0
        whose = "neuron" if self.population == 1 else "neurons"
        return text + f"; the true label's {whose}, {self.label}, spiked {mine} {_spikes(mine, 'time')}."


def voters(predicted: int, population: int = 1) -> str:
    """Who voted for class ``predicted``, as a sentence's subject: its output neuron, or its ``population`` neurons."""
    return f"Output neuron {predicted}" if population == 1 else f"Class {predicted}'s {population} output neurons"


def _spikes(n: int, word: str = "spike") -> str:
    return word if n == 1 else word + "s"


def prediction(spk: np.ndarray, label: int, population: int = 1) -> Prediction:
    """The prediction of an output spike record ``(time, classes)``: the class with the most spikes (argmax); with
    ``population`` output neurons a class, ``spk`` holds each class's summed spikes (the model's output)."""
    counts = np.asarray(spk).sum(axis=0)
    predicted = int(np.argmax(counts)) if counts.size and counts.max() > 0 else None
    return Prediction(predicted, int(label), tuple(int(c) for c in counts), int(population))


def video_title(network: str, split: str, index: int, vote: Prediction) -> str:
    """The two lines written above the spike-count MP4: the network; the sample, its true label and the prediction."""
    guess = "none (no output spike)" if vote.predicted is None else f"{vote.predicted}, {vote.verdict}"
    first = network if len(network) <= 80 else network[:79] + "…"
    return f"{first}\n{split} recording {index}  ·  true label {vote.label}  ·  predicted {guess}"


def spike_video_job(spk: np.ndarray, title: str | None = None) -> ProgressJob:
    """A started job rendering snnTorch's spike-count animation of ``spk`` as MP4 bytes (its ``result``)."""
    labels = output_labels(np.asarray(spk).shape[-1]) if np.asarray(spk).ndim == 2 else figures.DIGITS
    return ProgressJob(
        lambda progress: figures.spike_count_video(spk, labels, progress=progress, title=title), name="spike-video"
    ).start()
