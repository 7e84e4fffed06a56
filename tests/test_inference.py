"""core.inference: a run's network on one recording gives what tonic's frames and the tutorial's loop give; the runs
the Spike counter offers (damaged ones with their reason), the one it shows by default, and what it says about them."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

from core import inference
from core.data import SIMULATION_MARKER, DataSource
from core.events import SENSOR_SIZE, make_events
from core.model import ModelConfig, build_model, forward_pass
from core.runs import RunStore, make_checkpoint
from core.training import PRESETS
from helpers import random_events, write_folder


def recording(seed: int = 0, n: int = 4000) -> np.ndarray:
    """Random events over a 300 ms recording, dense enough that Denoise keeps many."""
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(12, 22, n), rng.integers(12, 22, n), np.sort(rng.integers(0, 300_000, n)),
                       rng.integers(0, 2, n))


@pytest.fixture()
def quick_run(tmp_path: Path) -> tuple[RunStore, str, torch.nn.Module]:
    """A run folder of the quick preset with a best checkpoint of seeded random weights."""
    store = RunStore(tmp_path / "runs")
    run = store.create_run("quick")
    config = PRESETS["quick"]
    run.write_config(config.to_dict())
    torch.manual_seed(5)
    model = build_model(config.model)
    run.save_checkpoint("best", make_checkpoint(model, config.model, iteration=3, train_config=config))
    return store, run.run_id, model.eval()


def test_a_runs_network_on_a_recording_is_tonic_frames_through_the_tutorial_loop(quick_run, one_torch_thread) -> None:
    store, run_id, trained = quick_run
    network = inference.load_network(store, run_id)
    assert network.label == run_id and network.transform == PRESETS["quick"].transform
    assert not network.model.training and network.threshold == PRESETS["quick"].model.threshold
    events = recording()
    steps = json.loads(network.transform)
    oracle = tonic.transforms.Compose([
        tonic.transforms.Denoise(filter_time=steps[0]["filter_time"]),
        tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, time_window=steps[1]["time_window"]),
    ])(events.copy())
    frames = inference.sample_frames(network, events)
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, oracle.astype(np.float32))

    spk, mem = inference.run_sample(network, events)
    assert spk.shape == mem.shape == (len(oracle), 10)
    with torch.no_grad():
        expected = forward_pass(trained.net, torch.from_numpy(oracle.astype(np.float32))[:, None])
    np.testing.assert_array_equal(spk, expected[:, 0].numpy())  # the checkpoint's weights, the tutorial's loop


def test_the_untrained_network_is_seeded_and_uses_the_tutorials_transform() -> None:
    first, second = inference.untrained_network(), inference.untrained_network()
    assert first.label == inference.UNTRAINED and first.transform == PRESETS["tutorial"].transform
    assert not first.model.training
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert first.threshold == ModelConfig().threshold


@pytest.mark.slow
def test_the_spike_video_job_renders_in_the_background() -> None:
    spk = (np.random.default_rng(0).random((6, 10)) < 0.3).astype(np.float32)
    job = inference.spike_video_job(spk)
    job.thread.join(120)
    state = job.snapshot()
    assert not state.running and state.error is None
    assert state.total == 6  # spike_count_video reports every 25th frame: here only the first
    assert job.result[4:8] == b"ftyp"  # an MP4
    failed = inference.spike_video_job(np.zeros((0, 10)))
    deadline = time.monotonic() + 60
    while failed.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed.snapshot().error.startswith("ValueError") and failed.result is None


# ------------------------------------------------------------------ the runs the Spike counter offers


def write_run(store: RunStore, status: str | None, accuracy: float | None, when: float, preset: str = "quick",
              checkpoint: bool = True, **config_changes) -> str:
    """A run folder written directly (seeded random weights, no training): config, best.pt, results.json."""
    config = dataclasses.replace(PRESETS[preset], max_iters=3, **config_changes)
    run = store.create_run(preset, when=when)
    run.write_config(config.to_dict())
    if checkpoint:
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        run.save_checkpoint("best", make_checkpoint(model, config.model, iteration=3, train_config=config))
    if status is not None:
        run.write_results({"status": status, "iterations": 3, "seconds": 1.0, "test_accuracy": accuracy})
    os.utime(run.path / "config.json", (when, when))  # the run list orders runs by this time
    return run.run_id


RESULTS = '{"status": "finished", "iterations": 3, "seconds": 1.0, "test_accuracy": %s}'
DAMAGE = {  # file -> its damaged content, and a word the reason must hold
    "iterations lots": ("results.json", '{"status": "finished", "iterations": "lots", "test_accuracy": 0.99}',
                        "iterations"),
    "results a list": ("results.json", "[1, 2]", "list"),
    "results not json": ("results.json", '{"status": "fini', "results.json"),
    "accuracy nan": ("results.json", RESULTS % "NaN", "test_accuracy"),
    "accuracy 5": ("results.json", RESULTS % "5", "test_accuracy"),
    "status a number": ("results.json", RESULTS.replace('"finished"', "7") % "0.99", "status"),
    "config a list": ("config.json", "[1, 2]", "config.json"),
    "config unknown field": ("config.json", '{"preset": "quick", "warp_drive": true}', "warp_drive"),
    "config bad transform": ("config.json", '{"transform": [{"name": [1]}]}', "config.json"),
    "metrics nested": ("metrics.jsonl", "[" * 5000 + '\n{"type": "eval", "iteration": 3, "accuracy": 0.5}\n',
                       "metrics"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_run_folder_is_listed_with_its_reason_and_the_others_stay_usable(tmp_path: Path, damage: str) -> None:
    store = RunStore(tmp_path / "runs")
    now = time.time()
    good = write_run(store, "finished", 0.9, now - 100)
    file, content, word = DAMAGE[damage]
    bad = write_run(store, "finished" if file != "metrics.jsonl" else None, 0.99, now)  # newer, and "better"
    (store.root / bad / file).write_text(content)

    choices = {c.run_id: c for c in inference.run_choices(store)}
    assert set(choices) == {good, bad}
    assert choices[good].usable and choices[good].problem is None
    assert not choices[bad].usable and choices[bad].status == "damaged"
    assert word in choices[bad].problem, choices[bad].problem
    assert choices[bad].test_accuracy is None  # a damaged folder's numbers are not shown
    best, why = inference.default_run(list(choices.values()))
    assert best.run_id == good and "best finished run: 90.0 % test accuracy" in why


def test_the_default_run_is_the_best_finished_run_not_the_newest(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))  # no default data set there
    store = RunStore(tmp_path / "runs")
    now = time.time()
    best = write_run(store, "finished", 0.969, now - 300)
    write_run(store, "finished", 0.5, now - 200)
    write_run(store, "stopped", 0.99, now - 100)  # better, but stopped
    newest = write_run(store, "stopped", 0.248, now, preset="tutorial")
    write_run(store, "finished", 0.999, now + 10, checkpoint=False)  # nothing to load
    choices = inference.run_choices(store)
    assert choices[0].run_id != newest and choices[1].run_id == newest  # newest first
    run, why = inference.default_run(choices)
    assert run.run_id == best
    assert why == "the best finished run: 96.9 % test accuracy"
    assert inference.default_run(choices, exclude=[best])[0].test_accuracy == 0.5  # its checkpoint did not load

    stopped_only = [c for c in choices if c.status != "finished"]
    run, why = inference.default_run(stopped_only)
    assert run.test_accuracy == 0.99 and "no run has finished" in why and "99.0 %" in why
    unscored = [dataclasses.replace(c, test_accuracy=None) for c in stopped_only]
    run, why = inference.default_run(unscored)
    assert run.run_id == newest and "newest" in why
    assert inference.default_run([]) == (None, "no trained network yet")
    label = next(c for c in choices if c.run_id == best).label()
    assert label == f"{best} (finished, 96.9 % test accuracy, trained on data no longer there)"
    assert next(c for c in choices if c.run_id == best).headline() == f"run {best} (finished, 96.9 % test accuracy)"


def test_a_checkpoint_that_does_not_load_is_a_network_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run_id = write_run(store, "finished", 0.9, time.time())
    (store.root / run_id / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(inference.NetworkError, match="best.pt") as info:
        inference.load_network(store, run_id)
    assert info.value.run_id == run_id
    with pytest.raises(inference.NetworkError, match="no run"):
        inference.load_network(store, "20000101-000000-nope")
    with pytest.raises(inference.NetworkError):
        inference.load_network(store, "../outside")
    (store.root / run_id / "best.pt").unlink()
    (store.root / run_id / "config.json").write_text("[1, 2]")
    with pytest.raises(inference.NetworkError, match="config.json"):
        inference.load_network(store, run_id)


def test_the_prediction_in_words() -> None:
    spk = np.zeros((6, 10), np.float32)
    spk[:4, 3] = 1
    spk[:2, 8] = 1
    vote = inference.prediction(spk, label=3)
    assert (vote.predicted, vote.correct, vote.verdict) == (3, True, "correct")
    assert vote.explain() == "Output neuron 3 spiked most (4 spikes), and 3 is the true label."
    vote = inference.prediction(spk, label=8)
    assert vote.verdict == "wrong"
    assert vote.explain() == "Output neuron 3 spiked most (4 spikes); the true label's neuron, 8, spiked 2 times."
    spk[:4, 1] = 1  # a tie: argmax takes the lowest label, as training counts it
    vote = inference.prediction(spk, label=3)
    assert vote.predicted == 1 and "tied with 3: the lowest label wins" in vote.explain()
    silent = inference.prediction(np.zeros((6, 10)), label=2)
    assert silent.predicted is None and silent.verdict == "no prediction" and "no prediction" in silent.explain()
    title = inference.video_title("run run-1 (finished)", "Test", 7, vote)
    assert title.splitlines() == ["run run-1 (finished)", "Test recording 7  ·  true label 3  ·  predicted 1, wrong"]


def _simulated_set(root: Path, source: str, split_ids: dict[str, list[int]]) -> Path:
    """A folder marked as simulated from ``source`` (simulation.json as core.saccade writes it), one recording."""
    write_folder(root, {"Train": {0: 1}}, lambda split, digit, k: random_events(100, k))
    counts = {split: {"samples": len(ids)} for split, ids in split_ids.items()}
    (root / SIMULATION_MARKER).write_text(json.dumps({"source": source, "counts": counts, "split_ids": split_ids}))
    return root


def test_what_a_run_trained_on_and_the_notes_on_other_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))
    default = _simulated_set(tmp_path / "home" / "simulated", "mnist-t10k[5000:5003]", {"Train": [0, 2], "Test": [1]})
    real = tmp_path / "real"
    write_folder(real, {"Train": {3: 1}, "Test": {3: 1}}, lambda split, digit, k: random_events(100, k),
                 file_name=lambda k: "05002.bin")  # Test 05002.bin is a recording of MNIST test image 5001
    store = RunStore(tmp_path / "runs")
    on_default = write_run(store, "finished", 0.9, time.time())
    on_real = write_run(store, "finished", 0.8, time.time() + 1, data_root=str(real))
    choices = {c.run_id: c for c in inference.run_choices(store)}

    trained = choices[on_default].trained_on
    assert (trained.root, trained.kind, trained.image_source, trained.recordings) == (default, "simulated",
                                                                                      "mnist-t10k[5000:5003]", 2)
    assert trained.describe() == (f"simulated N-MNIST (from the images mnist-t10k[5000:5003], 2 Train recordings) "
                                  f"in {default}")
    assert choices[on_real].trained_on.describe() == f"real N-MNIST recordings in {real}"
    np.testing.assert_array_equal(inference.trained_images(trained), [5000, 5001, 5002])

    simulated_source, real_source = DataSource(default, "simulated"), DataSource.detect(real)
    assert inference.data_note(choices[on_default], simulated_source) is None  # its own data
    note = inference.data_note(choices[on_default], real_source)
    assert note.startswith("This network was trained on simulated recordings") and "real N-MNIST" in note
    assert "trained on real N-MNIST" in inference.data_note(choices[on_real], simulated_source)
    assert inference.data_note(None, real_source) is None  # the untrained network trained on nothing

    test_file = real / "NMNIST" / "Test" / "3" / "05002.bin"
    leak = inference.leakage_note(choices[on_default], real_source, "Test", test_file)
    assert leak is not None and "MNIST test image 5001" in leak
    train_file = real / "NMNIST" / "Train" / "3" / "05002.bin"  # Train recordings show MNIST training images
    assert inference.leakage_note(choices[on_default], real_source, "Train", train_file) is None
    assert inference.leakage_note(choices[on_real], real_source, "Test", test_file) is None


def test_the_spike_video_is_titled_and_lasts_three_seconds(tmp_path: Path) -> None:
    import imageio_ffmpeg

    spk = (np.random.default_rng(0).random((10, 10)) < 0.3).astype(np.float32)  # the quick run's 10 steps
    vote = inference.prediction(spk, label=3)
    job = inference.spike_video_job(spk, inference.video_title("run-1", "Train", 0, vote))
    job.thread.join(120)
    assert job.snapshot().error is None
    path = tmp_path / "video.mp4"
    path.write_bytes(job.result)
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert seconds >= 3.0 and frames == 30  # each of the 10 steps held for 3 frames at 10 fps
