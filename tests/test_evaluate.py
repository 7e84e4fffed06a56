"""Evaluating a saved run on any data: the function and ``python -m core.evaluate``.

The run is a real one (a few iterations of the training job on a tiny set simulated from
the bundled MNIST test images 0..39). Accuracy is checked against an independent count:
tonic's own transforms make the frames, the tutorial's ``forward_pass`` loop runs the
network, and the argmax of the summed output spikes is tallied by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import NMNISTFolder, scan_split
from core.evaluate import (
    EVALUATIONS_DIR,
    EvaluationError,
    EvaluationResult,
    evaluate,
    main,
    recording_images,
    saved_evaluations,
)
from core.events import SENSOR_SIZE, read_nmnist, write_nmnist
from core.images import (
    DEFAULT_MNIST_RANGE,
    default_digits_source,
    load_bundled_mnist,
    load_default_digits,
    load_mnist_idx,
    mnist_test_indices,
    mnist_test_source,
)
from core.model import ModelConfig, build_model, forward_pass
from core.runs import RunStore, make_checkpoint
from core.saccade import generate_dataset, simulate
from core.training import TrainingJob, preset

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 40  # the tiny run's data: MNIST test images 0..39 (the real sample's Test ids 1..40)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A module-wide folder that is also the data home (frame cache, default runs)."""
    path = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NMNIST_DASHBOARD_HOME", str(path / "home"))
        yield path


@pytest.fixture(scope="module")
def tiny_set(workdir: Path) -> Path:
    """A simulated set of MNIST test images 0..39 (a quarter in Test), named as such in simulation.json."""
    images, labels = load_bundled_mnist(0, N_IMAGES)
    return generate_dataset(
        workdir / "tiny", images, labels, seed=1, test_fraction=0.25, workers=1, source=mnist_test_source(0, N_IMAGES)
    )


@pytest.fixture(scope="module")
def tiny_run(workdir: Path, tiny_set: Path) -> Path:
    """A run folder written by the training job: 10 quick iterations on the tiny set, best.pt and final.pt."""
    config = preset("quick", data_root=str(tiny_set), max_iters=10, eval_every=5, max_seconds=None, num_threads=1)
    job = TrainingJob(config, workdir / "runs" / "tiny-run").start()
    assert job.join(timeout=300)
    assert job.status == "finished", job.snapshot().error
    assert (job.run.path / "best.pt").is_file()
    return job.run.path


@pytest.fixture()
def fresh_run(tiny_run: Path, tmp_path: Path) -> Path:
    """The tiny run as trained, before any evaluation was kept with it (tests that save their own, in any order)."""
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name, ignore=shutil.ignore_patterns(EVALUATIONS_DIR)))


@pytest.fixture(scope="module")
def fake_real(workdir: Path) -> Path:
    """A real-layout N-MNIST folder (no simulation.json): Test ids 1..80 are recordings of test images 0..79.

    Train ids 1..20 are recordings of the same images, as real N-MNIST Train recordings of other
    (training) images would be: nothing is excluded there.
    """
    root = workdir / "fake-real"
    images, labels = load_bundled_mnist(0, 80)
    for k in range(1, 81):
        write_nmnist(root / "NMNIST" / "Test" / str(labels[k - 1]) / f"{k:05d}.bin", simulate(images[k - 1], seed=100 + k))
    for k in range(1, 21):
        write_nmnist(root / "NMNIST" / "Train" / str(labels[k - 1]) / f"{k:05d}.bin", simulate(images[k - 1], seed=300 + k))
    return root


def oracle_confusion(run_dir: Path, root: Path, split: str, keep=lambda path: True) -> np.ndarray:
    """Confusion matrix counted by hand: tonic's transforms, the tutorial's loop, argmax of the spike counts."""
    import tonic.transforms as T

    from core.runs import load_checkpoint

    checkpoint = load_checkpoint(run_dir / "best.pt")
    model = build_model(ModelConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    steps = json.loads((run_dir / "config.json").read_text())["transform"]
    steps = json.loads(steps) if isinstance(steps, str) else steps
    assert [s["name"] for s in steps] == ["Denoise", "ToFrame"]
    transform = T.Compose([
        T.Denoise(filter_time=steps[0]["filter_time"]),
        T.ToFrame(sensor_size=SENSOR_SIZE, time_window=steps[1]["time_window"]),
    ])
    confusion = np.zeros((10, 10), dtype=np.int64)
    with torch.no_grad():
        for path, label in scan_split(root, split):
            if not keep(path):
                continue
            frames = torch.as_tensor(transform(read_nmnist(path)), dtype=torch.float32)[:, None]
            spk = forward_pass(model.net, frames)
            confusion[label, int(spk.sum(0)[0].argmax())] += 1
    return confusion


# ---------------------------------------------------------------- the bundled images


def test_bundled_mnist_is_mnists_test_set() -> None:
    images, labels = load_bundled_mnist()
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST's test counts
    part, part_labels = load_bundled_mnist(5000, 5010)
    assert np.array_equal(part, images[5000:5010]) and np.array_equal(part_labels, labels[5000:5010])
    part[:] = 0  # fresh copies: the cached set is untouched
    assert images[5000:5010].any() and load_bundled_mnist(5000, 5010)[0].any()
    with pytest.raises(ValueError, match="range"):
        load_bundled_mnist(9000, 10_001)
    assert (REPO / "core" / "assets" / "mnist" / "README.md").read_text().count("CC BY-SA 3.0") >= 1


def test_bundled_mnist_matches_the_shared_sample(shared_data: Path) -> None:
    sample = shared_data / "mnist-sample"
    images, labels = load_mnist_idx(sample / "t10k-images-first50-idx3-ubyte", sample / "t10k-labels-first50-idx1-ubyte")
    bundled, bundled_labels = load_bundled_mnist(0, 50)
    assert np.array_equal(bundled, images) and np.array_equal(bundled_labels, labels)


def test_default_digits_are_the_named_range() -> None:
    images, labels = load_default_digits()
    start, stop = DEFAULT_MNIST_RANGE
    assert len(images) == stop - start and default_digits_source() == f"mnist-t10k[{start}:{stop}]"
    assert np.array_equal(images, load_bundled_mnist(start, stop)[0])
    assert mnist_test_indices(default_digits_source(), [0, 4]).tolist() == [start, start + 4]
    assert mnist_test_source() == "mnist-t10k" and mnist_test_indices("mnist-t10k", [7]).tolist() == [7]
    assert mnist_test_indices("mnist-idx:/x/t10k-images-idx3-ubyte.gz", [3]).tolist() == [3]
    assert mnist_test_indices("sklearn-digits", [3]) is None
    assert mnist_test_indices("mnist-idx:/x/train-images-idx3-ubyte", [3]) is None


# ---------------------------------------------------------------- the function


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_accuracy_matches_an_independent_count(fresh_run: Path, tiny_set: Path) -> None:
    tiny_run = fresh_run
    result = evaluate(tiny_run, tiny_set, "Test", save=False)
    expected = oracle_confusion(tiny_run, tiny_set, "Test")
    assert np.array_equal(np.array(result.confusion), expected)
    assert result.samples == expected.sum() == len(NMNISTFolder(tiny_set, "Test"))
    assert result.accuracy == pytest.approx(np.trace(expected) / expected.sum())
    for c in range(10):
        row = expected[c].sum()
        assert result.per_class_accuracy[c] == (None if row == 0 else pytest.approx(expected[c, c] / row))
    assert result.checkpoint == "best" and result.data_kind == "simulated" and result.same_data
    assert result.data_source == f"mnist-t10k[0:{N_IMAGES}]" and result.excluded == 0
    assert not (tiny_run / EVALUATIONS_DIR).exists()  # save=False


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_results_are_kept_with_the_run(fresh_run: Path, tiny_set: Path) -> None:
    tiny_run = fresh_run
    first = evaluate(tiny_run, tiny_set, "Train", max_samples=12)
    again = evaluate(tiny_run, tiny_set, "Train", max_samples=12)
    assert first.samples == 12 and again.confusion == first.confusion  # a fixed subset
    files = sorted((tiny_run / EVALUATIONS_DIR).glob("*.json"))
    assert [f.stem for f in files] == [first.name]  # the same evaluation replaces its file
    kept = saved_evaluations(tiny_run)
    assert kept[0] == EvaluationResult.from_dict(json.loads(files[0].read_text())) and kept[0].accuracy == first.accuracy
    assert (tiny_run / "best.pt").is_file() and (tiny_run / "final.pt").is_file()  # nothing lost


def test_final_checkpoint_is_used_where_there_is_no_best(workdir: Path, tiny_set: Path) -> None:
    config = preset("quick", data_root=str(tiny_set))
    folder = RunStore(workdir / "other-runs").create_run("quick")
    folder.write_config(config.to_dict())
    torch.manual_seed(3)
    folder.save_checkpoint("final", make_checkpoint(build_model(config.model), config.model, iteration=7, train_config=config))
    result = evaluate(folder.path, tiny_set, "Test", save=False)
    assert result.checkpoint == "final" and result.checkpoint_iteration == 7
    assert result.samples == len(NMNISTFolder(tiny_set, "Test"))


# ---------------------------------------------------------------- leakage


def test_recordings_are_traced_to_their_mnist_images(tiny_set: Path, fake_real: Path) -> None:
    info = json.loads((tiny_set / "simulation.json").read_text())
    files = NMNISTFolder(tiny_set, "Test").files
    expected = [info["split_ids"]["Test"][int(f.stem) - 1] for f in files]  # source "mnist-t10k[0:40]": offset 0
    assert recording_images(tiny_set, "Test", files).tolist() == expected
    real_test = NMNISTFolder(fake_real, "Test").files
    assert recording_images(fake_real, "Test", real_test).tolist() == [int(f.stem) - 1 for f in real_test]
    assert (recording_images(fake_real, "Train", NMNISTFolder(fake_real, "Train").files) == -1).all()


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_exclusion_leaves_out_the_images_the_run_used(tiny_run: Path, fake_real: Path) -> None:
    result = evaluate(tiny_run, fake_real, "Test", exclude_trained_images=True, save=False)
    assert result.excluded == N_IMAGES and result.samples == 80 - N_IMAGES
    assert result.data_kind == "nmnist" and not result.same_data
    fair = oracle_confusion(tiny_run, fake_real, "Test", keep=lambda path: int(path.stem) > N_IMAGES)
    assert np.array_equal(np.array(result.confusion), fair)
    everything = evaluate(tiny_run, fake_real, "Test", save=False)
    assert everything.samples == 80 and everything.excluded == 0
    train = evaluate(tiny_run, fake_real, "Train", exclude_trained_images=True, save=False)
    assert train.excluded == 0 and train.samples == 20  # Train recordings are of MNIST's training images


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_exclusion_on_its_own_data_leaves_nothing(tiny_run: Path, tiny_set: Path) -> None:
    with pytest.raises(EvaluationError, match="nothing fair is left"):
        evaluate(tiny_run, tiny_set, "Test", exclude_trained_images=True, save=False)


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_real_sample(tiny_run: Path, real_nmnist_root: Path) -> None:
    train = evaluate(tiny_run, real_nmnist_root, "Train", max_samples=20, exclude_trained_images=True, save=False)
    assert train.samples == 20 and train.excluded == 0 and train.data_kind == "nmnist"
    test = evaluate(tiny_run, real_nmnist_root, "Test", exclude_trained_images=True, save=False)
    used = [p for p, _ in scan_split(real_nmnist_root, "Test") if int(p.stem) <= N_IMAGES]  # image k-1 < 40
    assert used and test.excluded == len(used) and test.samples == len(scan_split(real_nmnist_root, "Test")) - len(used)


# ---------------------------------------------------------------- the command line


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_cli_json_is_the_last_line(tiny_run: Path, tiny_set: Path, capsys) -> None:
    assert main([str(tiny_run), "--data", str(tiny_set), "--split", "Test", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert {"accuracy", "samples", "per_class_accuracy", "confusion", "data_root", "split", "run_id", "excluded"} <= set(result)
    n_test = len(NMNISTFolder(tiny_set, "Test"))
    assert result["samples"] == n_test and result["split"] == "Test" and result["run_id"] == tiny_run.name
    assert result["accuracy"] == pytest.approx(np.trace(oracle_confusion(tiny_run, tiny_set, "Test")) / n_test)
    assert (tiny_run / EVALUATIONS_DIR).is_dir()

    assert main([str(tiny_run), "--data", str(tiny_set), "--no-save", "--max-samples", "5"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "on 5 recordings" in text and "confusion" in text


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_cli_runs_as_a_module_and_exits_2_without_a_traceback(tiny_run: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "core.evaluate", str(tiny_run), "--data", str(tmp_path / "nothing-here")],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no Test split to evaluate on" in done.stderr and "NMNIST" in done.stderr


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_bad_input_gets_a_message_and_status_2(workdir: Path, tiny_run: Path, tiny_set: Path, fake_real: Path, capsys) -> None:
    store = RunStore(workdir / "bad-runs")

    # a run folder without a checkpoint
    empty = store.create_run("quick")
    empty.write_config(preset("quick").to_dict())
    assert "no checkpoint (best.pt or final.pt)" in _fails([str(empty.path), "--data", str(tiny_set)], capsys)
    assert "no such run folder" in _fails([str(workdir / "no-run"), "--data", str(tiny_set)], capsys)

    # a data folder without the split asked for
    only_test = workdir / "only-test"
    (only_test / "NMNIST" / "Test" / "3").mkdir(parents=True)
    (only_test / "NMNIST" / "Test" / "3" / "00001.bin").write_bytes(
        (fake_real / "NMNIST" / "Test" / "7" / "00001.bin").read_bytes())
    err = _fails([str(tiny_run), "--data", str(only_test), "--split", "Train"], capsys)
    assert "no Train split to evaluate on" in err and str(only_test / "NMNIST" / "Train") in err

    # data whose classes differ from the run's
    config = preset("quick", data_root=str(tiny_set)).with_overrides(n_classes=5)
    five = store.create_run("five")
    five.write_config(config.to_dict())
    five.save_checkpoint("final", make_checkpoint(build_model(config.model), config.model, iteration=1, train_config=config))
    err = _fails([str(five.path), "--data", str(tiny_set)], capsys)
    assert "5 output classes" in err and "classes differ" in err

    # a transform whose frames the network cannot take (in the run's config, or given)
    small = preset("quick").with_overrides(
        transform='[{"name": "Downsample", "spatial_factor": 0.5}, {"name": "ToFrame", "time_window": 30000}]')
    shrunk = store.create_run("shrunk")
    shrunk.write_config(small.to_dict())
    shrunk.save_checkpoint("final", make_checkpoint(build_model(small.model), small.model, iteration=1, train_config=small))
    err = _fails([str(shrunk.path), "--data", str(tiny_set)], capsys)
    assert "frames of 2 x 17 x 17" in err and "2 x 34 x 34" in err
    err = _fails([str(tiny_run), "--data", str(tiny_set), "--transform", small.transform], capsys)
    assert "frames of 2 x 17 x 17" in err
    assert "--max-samples" in _fails([str(tiny_run), "--data", str(tiny_set), "--max-samples", "0"], capsys)

    # a broken checkpoint
    broken = store.create_run("broken")
    broken.write_config(preset("quick").to_dict())
    (broken.path / "best.pt").write_bytes(b"not a checkpoint")
    assert "best.pt" in _fails([str(broken.path), "--data", str(tiny_set)], capsys)

    # nothing was touched by the failures
    assert sorted(p.name for p in empty.path.iterdir()) == ["config.json"]


# ---------------------------------------------------------------- per-sample predictions (the misclassification explorer)


@pytest.mark.slow  # trains a run first (the tiny_run fixture)
def test_per_sample_predictions_match_the_tutorial_loop_and_are_kept(tiny_run: Path, tiny_set: Path) -> None:
    import tonic.transforms as T

    from core.evaluate import confusion_cell, load_predictions, predictions_file
    from core.runs import load_checkpoint

    # batches of one: a padded batch would run each shorter recording on past its end (as training counts it)
    result = evaluate(tiny_run, tiny_set, "Test", max_samples=8, seed=3, batch_size=1)
    assert len(result.predictions) == result.samples == 8
    batched = evaluate(tiny_run, tiny_set, "Test", max_samples=8, seed=3, save=False)
    assert [(p.index, p.label) for p in batched.predictions] == [(p.index, p.label) for p in result.predictions]
    tally = np.zeros((10, 10), dtype=np.int64)
    for p in batched.predictions:
        tally[p.label, p.predicted] += 1
    assert np.array_equal(tally, np.array(batched.confusion))
    checkpoint = load_checkpoint(tiny_run / "best.pt")
    model = build_model(ModelConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    transform = T.Compose([T.Denoise(filter_time=10000), T.ToFrame(sensor_size=SENSOR_SIZE, time_window=30000)])
    files = NMNISTFolder(tiny_set, "Test").files
    confusion = np.zeros((10, 10), dtype=np.int64)
    for p in result.predictions:
        assert tiny_set / p.file == files[p.index] and int(files[p.index].parent.name) == p.label
        frames = torch.as_tensor(transform(read_nmnist(files[p.index])), dtype=torch.float32)[:, None]
        with torch.no_grad():
            counts = forward_pass(model.net, frames).sum(0)[0]
        assert list(p.spikes) == counts.long().tolist() and p.predicted == int(counts.argmax())
        assert p.confidence == (pytest.approx(counts.max().item() / counts.sum().item()) if counts.sum() else 0.0)
        confusion[p.label, p.predicted] += 1
    assert np.array_equal(confusion, np.array(result.confusion))
    # kept beside the JSON, read back the same; the JSON itself stays small
    kept = saved_evaluations(tiny_run)[0]
    assert kept.name == result.name and kept.predictions == ()
    assert predictions_file(result).is_file() and "predictions" not in json.loads((tiny_run / EVALUATIONS_DIR /
                                                                                  f"{result.name}.json").read_text())
    back = load_predictions(kept)
    assert [(p.index, p.file, p.label, p.predicted, p.spikes) for p in back] == [
        (p.index, p.file, p.label, p.predicted, p.spikes) for p in result.predictions]
    for p in result.predictions:
        assert p in confusion_cell(back, p.label, p.predicted)


def _prediction(index: int, label: int, predicted: int, spikes: list[int]):
    from core.evaluate import SamplePrediction

    return SamplePrediction(index, f"NMNIST/Test/{label}/{index:05d}.bin", label, predicted, tuple(spikes))


def test_confusion_cells_and_the_most_confidently_wrong() -> None:
    from core.evaluate import confusion_cell, most_confidently_wrong

    predictions = [
        _prediction(0, 3, 3, [0, 0, 0, 9, 0, 1, 0, 0, 0, 0]),  # right
        _prediction(1, 3, 5, [0, 0, 0, 4, 0, 6, 0, 0, 0, 0]),  # wrong, 60 %
        _prediction(2, 3, 5, [0, 0, 0, 0, 0, 9, 0, 0, 0, 1]),  # wrong, 90 %
        _prediction(3, 7, 1, [0, 2, 0, 0, 0, 0, 0, 2, 0, 0]),  # wrong, a tie: the first neuron, 50 %
        _prediction(4, 8, 0, [0] * 10),  # no output spike at all: neuron 0, confidence 0
        _prediction(5, 3, 5, [0, 0, 0, 1, 0, 9, 0, 0, 0, 0]),  # wrong, 90 %, a smaller margin over the true 3 than #2
    ]
    assert predictions[4].confidence == 0.0 and predictions[3].confidence == 0.5
    assert [p.index for p in confusion_cell(predictions, 3, 5)] == [2, 5, 1]  # 90 % (margin 9), 90 % (margin 8), 60 %
    assert confusion_cell(predictions, 4, 4) == []  # an empty cell is an empty list
    assert [p.index for p in most_confidently_wrong(predictions)] == [2, 5, 1, 3, 4]
    assert [p.index for p in most_confidently_wrong(predictions, n=2)] == [2, 5]


def test_predictions_file_round_trip_and_damage(tmp_path: Path) -> None:
    from dataclasses import replace

    from core.evaluate import load_predictions, predictions_file, save_evaluation

    predictions = (_prediction(0, 3, 3, [0, 0, 0, 9, 0, 1, 0, 0, 0, 0]), _prediction(7, 3, 5, [0, 0, 0, 4, 0, 6, 0, 0, 0, 0]))
    confusion = tuple(tuple(1 if (r, c) in ((3, 3), (3, 5)) else 0 for c in range(10)) for r in range(10))
    result = EvaluationResult(
        run_id="r", run_dir=str(tmp_path / "r"), checkpoint="best", checkpoint_iteration=1, data_root=str(tmp_path / "d"),
        data_kind="simulated", data_source=None, split="Test", transform="[]", trained_on=None, same_data=False,
        samples=2, excluded=0, skipped_bad=0, accuracy=0.5, per_class_accuracy=(None,) * 10, confusion=confusion,
        seconds=0.1, created=1.0, options={}, predictions=predictions,
    )
    save_evaluation(result)
    kept = saved_evaluations(tmp_path / "r")
    assert len(kept) == 1 and load_predictions(kept[0]) == predictions  # the samples file is not an evaluation
    path = predictions_file(result)
    assert path.read_text().splitlines()[2] == "7,NMNIST/Test/3/00007.bin,3,5,0.6000,0 0 0 4 0 6 0 0 0 0"
    for damage in ("index,file\n", "index,file,label,predicted,confidence,spikes\n0,a,3,99,1,0 0\n",
                   "index,file,label,predicted,confidence,spikes\nx,a,3,3,1,0 0 0 9 0 1 0 0 0 0\n", "\xff\xfe"):
        path.write_bytes(damage.encode("latin-1"))
        with pytest.raises(EvaluationError, match="per-sample predictions cannot be read"):
            load_predictions(kept[0])
    path.unlink()
    assert load_predictions(kept[0]) is None  # an older evaluation, kept without its samples
    save_evaluation(replace(result, predictions=()))  # the same evaluation without samples drops a stale file
    path.write_text("stale")
    save_evaluation(replace(result, predictions=()))
    assert not path.exists()
