"""Training jobs, the registry, the CLI and every bad-input case, on tiny recordings the tests write."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.events import read_nmnist, recording_span_us
from core.model import ModelConfig, ModelConfigError, build_model
from core.runs import RunStore, default_runs_root, load_checkpoint, load_model
from core.train import main as train_main
from core.training import (
    PRESETS,
    ConfigError,
    JobBusyError,
    JobRegistry,
    PrepareProgress,
    TrainConfig,
    TrainingJob,
    check_data,
    estimate_iteration_seconds,
    form_settings,
    loop,
    settings,
    with_settings,
)
from core.training.__main__ import build_parser
from helpers import random_events, write_folder

WINDOW = 10_000  # 10 ms frames: 5 time steps for the 50 ms recordings below


def _recording(label: int, rng: np.random.Generator, n: int = 300, duration: int = 50_000) -> np.ndarray:
    """Events clustered on a 5 x 5 patch whose place depends on the label, lasting exactly ``duration``."""
    around = (4 + 3 * (label % 5), 8 + 12 * (label // 5))
    return random_events(n, rng, duration_us=duration, around=around, spread=2, full_span=True)


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame cache and default runs under tmp_path, never in the repository's data home."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/NMNIST/{Train,Test}/<digit>/*.bin: 3 train and 1 test recordings per digit."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    write_folder(root, {"Train": 3, "Test": 1}, lambda split, label, k: _recording(label, rng),
                 file_name=lambda k: f"{k:05d}.bin")
    return root


@pytest.fixture()
def tiny_config(tiny_root: Path) -> TrainConfig:
    return TrainConfig(
        preset="test",
        data_root=str(tiny_root),
        transform=json.dumps([{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": WINDOW}]),
        batch_size=8,
        max_iters=3,
        eval_every=2,
        augment_rotation=10.0,
        num_threads=None,
    )


def _wait(condition, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def test_presets_hold_the_tutorials_settings() -> None:
    t = PRESETS["tutorial"]
    assert json.loads(t.transform) == [{"name": "Denoise", "filter_time": 10000}, {"name": "ToFrame", "time_window": 1000}]
    assert (t.batch_size, t.lr, t.betas, t.loss, t.correct_rate, t.incorrect_rate) == (128, 2e-2, (0.9, 0.999), "mse_count", 0.8, 0.2)
    assert (t.model.beta, t.model.surrogate, t.augment_rotation) == (0.5, "atan", 10.0)
    assert t.max_iters == 51  # the tutorial prints iterations 0..50
    assert t.model == ModelConfig()
    q = PRESETS["quick"]
    assert q.max_seconds is not None and q.max_seconds <= 60
    for config in PRESETS.values():
        assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.slow  # starts a real training job
def test_one_real_training_step_writes_a_complete_run(tiny_config: TrainConfig, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    job = JobRegistry(store).submit(tiny_config)
    assert job.join(timeout=300), "the job should end"
    snap = job.snapshot()
    assert snap.status == "finished", snap.log
    assert snap.reason == "all 3 iterations done" and snap.ending == "Finished: all 3 iterations done."
    assert [r.iteration for r in snap.iterations] == [0, 1, 2]
    for r in snap.iterations:
        assert math.isfinite(r.loss) and 0.0 <= r.accuracy <= 1.0 and r.seconds > 0 and r.samples_per_second > 0
        assert r.batch_size in (8, 6) and r.time_steps == 5  # 30 recordings in batches of 8, 8, 8, 6
    assert [e.iteration for e in snap.evals] == [2, 3]  # every 2 iterations and at the end
    last = snap.evals[-1]
    assert last.samples == 10 and sum(map(sum, last.confusion)) == 10
    assert last.accuracy == pytest.approx(sum(last.confusion[i][i] for i in range(10)) / 10)
    assert all(a in (0.0, 1.0) for a in last.per_class_accuracy)  # one test sample a class
    assert snap.eta_seconds == 0.0 and snap.done and snap.progress == 1.0
    assert snap.prepare == PrepareProgress("Test", 10, 10)  # frame preparation was reported, split by split
    assert any("engine:" in line for line in snap.log) and any("device cpu" in line for line in snap.log)

    run = Path(snap.run_dir)
    assert {"config.json", "metrics.jsonl", "log.txt", "final.pt", "best.pt", "results.json"} <= {p.name for p in run.iterdir()}
    assert not (run / "RUNNING").exists()
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == tiny_config
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["iterations"] == 3 and results["test_accuracy"] == last.accuracy
    record = store.load_run(snap.run_id)
    assert [r["loss"] for r in record.iterations] == [r.loss for r in snap.iterations]
    assert len(record.evals) == 2
    # the step really trained: the final weights differ from the seeded initial ones
    torch.manual_seed(tiny_config.seed)
    initial = build_model(tiny_config.model).state_dict()
    final = load_checkpoint(run / "final.pt")
    assert final["iteration"] == 3
    assert any(not torch.equal(initial[k], final["state_dict"][k]) for k in initial)
    model = load_model(run / "final.pt", config=tiny_config.model)
    assert not model.training


@pytest.mark.slow  # two real training jobs
def test_a_cpu_run_hands_the_engine_its_batches_as_events_and_trains_as_with_dense_ones(
    tiny_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast engine gets each batch (rotated, as tiny_config augments) as EventFrames; the same run with dense
    batches takes the same steps: the same losses, test results and final weights, bit for bit."""
    from core.frames import FramesDataset

    made = []
    event_batch = FramesDataset.event_batch

    def counted(self: FramesDataset, indices: list[int]):  # noqa: ANN202
        made.append(self.split)
        return event_batch(self, indices)

    def run(name: str):  # noqa: ANN202
        job = JobRegistry(RunStore(tmp_path / name)).submit(tiny_config)
        assert job.join(timeout=300)
        snap = job.snapshot()
        assert snap.status == "finished", snap.log
        assert any("engine: fast" in line for line in snap.log)
        return snap, load_checkpoint(Path(snap.run_dir) / "final.pt")["state_dict"]

    monkeypatch.setattr(FramesDataset, "event_batch", counted)
    events, events_state = run("events")
    assert made.count("Train") == 3 and "Test" in made
    monkeypatch.setattr(FramesDataset, "event_batch", FramesDataset.batch)
    dense, dense_state = run("dense")
    assert [r.loss for r in events.iterations] == [r.loss for r in dense.iterations]
    assert [e.confusion for e in events.evals] == [e.confusion for e in dense.evals]
    assert all(torch.equal(events_state[k], dense_state[k]) for k in dense_state)


@pytest.mark.slow  # starts a real training job
def test_snapshot_is_an_immutable_copy(tiny_config: TrainConfig, tmp_path: Path) -> None:
    job = TrainingJob(dataclasses.replace(tiny_config, max_iters=2, eval_every=0), RunStore(tmp_path).create_run("test"))
    before = job.snapshot()
    assert before.status == "queued" and before.iterations == () and before.eta_seconds is None
    job.start()
    job.join(300)
    after = job.snapshot()
    assert before.iterations == () and len(after.iterations) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.status = "running"  # type: ignore[misc]
    assert isinstance(after.iterations, tuple) and isinstance(after.evals[0].confusion, tuple)


@pytest.mark.slow  # starts a real training job
@pytest.mark.parametrize("moment", ["at once", "after one iteration"])
def test_stop_at_any_moment_keeps_what_it_has(tiny_config: TrainConfig, tmp_path: Path, moment: str) -> None:
    config = dataclasses.replace(tiny_config, max_iters=100_000, eval_every=0)
    job = JobRegistry(RunStore(tmp_path)).submit(config)
    if moment == "after one iteration":
        _wait(lambda: len(job.snapshot().iterations) >= 1)
    job.stop()
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.reason == "stopped by the user"
    assert snap.iteration < 100_000
    results = json.loads((Path(snap.run_dir) / "results.json").read_text())
    assert results["status"] == "stopped" and results["iterations"] == snap.iteration
    if moment == "after one iteration":
        assert snap.iteration >= 1 and (Path(snap.run_dir) / "final.pt").is_file()
        assert snap.evals and snap.evals[-1].iteration == snap.iteration  # evaluated what it had
    job.stop()  # stopping a finished job is harmless
    assert job.status == "stopped"


@pytest.mark.slow  # starts a real training job
def test_nan_loss_stops_with_a_reason(tiny_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop.loss_fn

    def poisoned(config: TrainConfig):
        loss = real(config)
        calls = []

        def fn(spk: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            value = loss(spk, targets)
            return value * float("nan") if len(calls) >= 2 else value

        return fn

    monkeypatch.setattr(loop, "loss_fn", poisoned)
    job = JobRegistry(RunStore(tmp_path)).submit(dataclasses.replace(tiny_config, max_iters=50, eval_every=0))
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == "diverged"
    assert "loss became nan at iteration 1" in snap.reason and "learning rate" in snap.reason
    assert snap.iteration == 1  # the poisoned step is not applied or recorded
    ckpt = load_checkpoint(Path(snap.run_dir) / "final.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow  # starts a real training job
def test_max_seconds_bounds_the_run(tiny_config: TrainConfig, tmp_path: Path) -> None:
    job = JobRegistry(RunStore(tmp_path)).submit(dataclasses.replace(tiny_config, max_iters=100_000, max_seconds=1e-6, eval_every=0))
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.iteration == 1
    assert snap.reason == "stopped at the 1e-06 s time limit after 1 iteration"


@pytest.mark.slow  # starts a real training job
def test_registry_refuses_a_second_training(tiny_config: TrainConfig, tmp_path: Path) -> None:
    registry = JobRegistry(RunStore(tmp_path))
    first = registry.submit(dataclasses.replace(tiny_config, max_iters=100_000, eval_every=0))
    try:
        with pytest.raises(JobBusyError, match=f"already running \\(run {first.run_id}"):
            registry.submit(tiny_config)
        assert registry.current() is first and registry.active() is first
        assert registry.get(first.run_id) is first and registry.get("nope") is None
    finally:
        first.stop()
        first.join(300)
    second = registry.submit(dataclasses.replace(tiny_config, max_iters=1, eval_every=0))
    second.join(300)
    assert registry.current() is second and registry.active() is None
    assert [j.run_id for j in registry.jobs()] == [first.run_id, second.run_id]
    assert JobRegistry().store.root == default_runs_root()  # without a store: the default runs folder


@pytest.mark.slow
def test_estimate_is_positive(tiny_config: TrainConfig) -> None:
    seconds = estimate_iteration_seconds(tiny_config)
    assert 0 < seconds < math.inf
    # without data it still answers (random frames of the expected length)
    assert estimate_iteration_seconds(dataclasses.replace(tiny_config, data_root="/nonexistent")) > 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"betas": (0.9, 1.0)}, "betas[1]"),
        ({"betas": (0.9,)}, "betas"),
        ({"loss": "hinge"}, "loss"),
        ({"correct_rate": 1.5}, "correct_rate"),
        ({"max_iters": 0}, "max_iters"),
        ({"max_seconds": -1.0}, "max_seconds"),
        ({"eval_every": -1}, "eval_every"),
        ({"eval_samples": -1}, "eval_samples"),  # 0 means all (test_training_checks.py)
        ({"augment_rotation": -5.0}, "augment_rotation"),
        ({"device": "tpu"}, "device"),
        ({"num_threads": 0}, "num_threads"),
        ({"data_kind": "mp3"}, "data_kind"),
        ({"transform": "not json"}, "transform"),
        ({"transform": '[{"name": "Denoise", "filter_time": 10000}]'}, "transform"),
        ({"transform": '[{"name": "ToFrame", "time_window": -5}]'}, "ToFrame.time_window"),
        ({"transform": '[{"name": "RandomFlipLR", "p": 0.5}, {"name": "ToFrame", "time_window": 1000}]'}, "transform: random steps"),
    ],
)
def test_bad_training_settings_are_refused_by_name(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(TrainConfig(), **changes)
    assert field in str(info.value)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_outside_unit_interval_is_refused(beta: float) -> None:
    with pytest.raises(ModelConfigError, match="beta"):
        TrainConfig().with_overrides(beta=beta)


def test_time_window_longer_than_every_recording_is_refused(tiny_config: TrainConfig) -> None:
    config = dataclasses.replace(tiny_config, transform='[{"name": "ToFrame", "time_window": 60000}]')
    with pytest.raises(ConfigError, match=r"transform: ToFrame time_window=60000 us is longer than every recording \(the longest lasts 50000 us\)"):
        check_data(config)
    check_data(dataclasses.replace(tiny_config, transform='[{"name": "ToFrame", "time_window": 50000}]'))


def test_recording_spans_match_the_full_reader_on_real_recordings(real_recordings: list[Path], real_nmnist_root: Path) -> None:
    """The 10-byte span check agrees with reading every event, on every real recording."""
    spans = []
    for path in real_recordings:
        t = read_nmnist(path)["t"]
        assert recording_span_us(path) == int(t[-1] - t[0]), path
        spans.append(int(t[-1] - t[0]))
    config = TrainConfig(data_root=str(real_nmnist_root))
    check_data(config)
    train_longest = max(recording_span_us(p) for p in real_recordings if "/Train/" in str(p))
    too_long = dataclasses.replace(config, transform=json.dumps([{"name": "ToFrame", "time_window": train_longest + 1}]))
    with pytest.raises(ConfigError, match="longer than every recording"):
        check_data(too_long)
    assert recording_span_us(real_nmnist_root / "missing.bin") == -1


def test_folders_without_recordings_are_refused(tmp_path: Path, tiny_root: Path) -> None:
    (tmp_path / "NMNIST" / "Train" / "3").mkdir(parents=True)
    with pytest.raises(ConfigError, match="data_root: no recordings in .*Train"):
        check_data(TrainConfig(data_root=str(tmp_path)))
    with pytest.raises(ConfigError, match="data_kind: 'simulated' asked for"):
        check_data(TrainConfig(data_root=str(tiny_root), data_kind="simulated"))
    with pytest.raises(ConfigError, match="data_root: .* does not exist"):
        check_data(TrainConfig(data_root=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="data_root"):
        JobRegistry(RunStore(tmp_path / "runs")).submit(TrainConfig(data_root=str(tmp_path)))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "no run folder for a refused config"


# ---------------------------------------------------------------- command line


def test_one_description_makes_the_flags_and_the_form() -> None:
    """Every config field is a setting; the CLI has a flag for each, the Training page a widget for its share."""
    paths = {s.path for s in settings()}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset", "model"}
    assert paths == fields | {f"model.{f.name}" for f in dataclasses.fields(ModelConfig)}
    assert paths <= {action.dest for action in build_parser()._actions}
    form = {s.path: s for s in form_settings()}
    assert set(form) <= paths and len(form) == 26
    assert {"model.channels", "model.kernel_size", "model.pool", "model.population"} <= set(form)  # the architecture is the person's too
    assert form["max_seconds"].widget_value(PRESETS["tutorial"]) == 0.0 and form["max_seconds"].from_widget(0.0) is None
    assert form["eval_samples"].widget_value(PRESETS["quick"]) == 1000 and form["eval_samples"].from_widget(0) is None
    assert form["model.surrogate"].choices[0] == "atan" and form["loss"].choices == ("mse_count", "ce_rate", "ce_count")
    # both front ends turn values into a config the same way; a bad value is named as the form names it
    config = with_settings(PRESETS["quick"], {"model.channels": [4, 8], "betas": [0.8, 0.9], "max_seconds": None})
    assert config.model.channels == (4, 8) and config.betas == (0.8, 0.9) and config.max_seconds is None
    with pytest.raises(ConfigError, match=r"^model\.beta: must lie in \[0, 1\]"):
        with_settings(PRESETS["quick"], {"model.beta": 2.0})
    with pytest.raises(ConfigError, match=r"^lr: "):
        with_settings(PRESETS["quick"], {"lr": -1.0})
    with pytest.raises(ConfigError, match=r"^bogus: not a setting of TrainConfig or ModelConfig$"):
        with_settings(PRESETS["quick"], {"bogus": 1})
    # a model field without its prefix, and a misspelling, get the setting meant
    with pytest.raises(ConfigError, match=r"^channels: .*; did you mean model\.channels\?$"):
        with_settings(PRESETS["quick"], {"channels": [16, 48]})
    with pytest.raises(ConfigError, match=r"^lr_shedule: .*; did you mean lr_schedule\?$"):
        with_settings(PRESETS["quick"], {"lr_shedule": "cosine"})


@pytest.mark.slow  # starts a real training job
def test_cli_json_last_line(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = train_main(
        ["--preset", "quick", "--data", str(tiny_root), "--runs", str(tmp_path), "--max-iters", "2",
         "--batch-size", "8", "--eval-every", "0", "--beta", "0.6", "--json"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["iterations"] == 2 and result["seconds"] > 0 and 0 <= result["test_accuracy"] <= 1
    run = Path(result["run_dir"])
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config.model.beta == 0.6 and config.batch_size == 8 and config.preset == "quick"
    assert "iteration    1/2" in out.err and "estimated" in out.err


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--lr", "-0.1"], "lr"),
        (["--lr", "abc"], "--lr"),
        (["--batch-size", "0"], "batch_size"),
        (["--beta", "2"], "beta"),
        (["--surrogate", "nope"], "surrogate"),
        (["--preset", "nope"], "--preset"),
        (["--betas", "0.9"], "--betas"),
        (["--transform", '[{"name": "ToFrame", "time_window": 900000}]'], "time_window"),
        (["--data", "/nonexistent/folder"], "data_root"),
    ],
)
def test_cli_bad_values_exit_2_naming_the_field(
    argv: list[str], field: str, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--data" not in argv:
        argv = [*argv, "--data", str(tiny_root)]
    with pytest.raises(SystemExit) as info:
        raise SystemExit(train_main([*argv, "--runs", str(tmp_path / "runs"), "--no-estimate"]))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "nothing may be written for a refused config"


@pytest.mark.parametrize("model", [ModelConfig(), ModelConfig(channels=(4, 8), kernel_size=3, pool="avg"),
                                   ModelConfig(channels=(16, 64), kernel_size=7)])
def test_the_forms_parameter_count_and_notation_describe_the_network_built(model: ModelConfig) -> None:
    """What the Training page shows before launch is what build_model makes (its weights and biases counted)."""
    from core.training.config import network_notation, parameter_count

    net = build_model(model)
    built = sum(p.numel() for name, p in net.named_parameters() if name.endswith(("weight", "bias")))
    assert parameter_count(model) == built
    c1, c2 = model.channels
    pool = {"max": "MP2", "avg": "AP2"}[model.pool]
    assert network_notation(model) == f"{c1}C{model.kernel_size}-{pool}-{c2}C{model.kernel_size}-{pool}-{model.hidden}FC10"
    assert network_notation(ModelConfig()) == "12C5-MP2-32C5-MP2-800FC10"  # the tutorial's own words


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (1, 0), (0, -1), (2, -3), (-2, 2), (34, 0), (-40, 5)])
def test_a_shift_moves_every_frame_as_torchvisions_affine_translation(dx: int, dy: int) -> None:
    """augment_shift's move (core.training.loop.shift_frames) against torchvision's own integer translation."""
    from torchvision.transforms import functional as TF

    from core.training.loop import shift_frames

    frames = torch.rand(5, 2, 34, 34)
    expected = TF.affine(frames, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0])
    assert torch.equal(shift_frames(frames, dx, dy), expected)


@pytest.mark.parametrize(("degrees", "shape"), [(10.0, (11, 2, 34, 34)), (45.0, (3, 2, 34, 34)), (180.0, (4, 3, 20, 27))])
def test_rotation_gathers_what_torchvisions_random_rotation_gives(degrees: float, shape: tuple[int, ...]) -> None:
    """augment_rotation's gather through one rotated image of pixel numbers, against torchvision's transform:
    the same angles from the same random draws, the same values, on 50 draws each."""
    from torchvision import transforms as tv

    from core.training.loop import RandomRotation

    ours, theirs = RandomRotation(degrees), tv.RandomRotation([-degrees, degrees])
    generator = torch.Generator().manual_seed(1)
    for draw in range(50):
        frames = torch.randint(0, 4, shape, generator=generator).float() * torch.rand(shape, generator=generator)
        torch.manual_seed(draw)
        got = ours(frames)
        torch.manual_seed(draw)
        expected = theirs(frames)
        assert torch.equal(got, expected), f"draw {draw}"
        assert got.shape == frames.shape and got.dtype == frames.dtype
    for dtype in (torch.float64, torch.int16):  # torchvision's own transform: its grid follows the dtype
        frames = torch.randint(0, 4, shape, generator=generator).to(dtype)
        torch.manual_seed(3)
        got = ours(frames)
        torch.manual_seed(3)
        assert got.dtype == dtype and torch.equal(got, theirs(frames))
    torch.manual_seed(7)
    ours(torch.zeros(shape))
    after_ours = torch.rand(1)
    torch.manual_seed(7)
    theirs(torch.zeros(shape))
    assert torch.equal(after_ours, torch.rand(1)), "one draw from torch's generator, as torchvision makes"


def test_shift_augmentation_is_checked_and_drawn_within_its_bound() -> None:
    from core.training.loop import RandomShift, augmentation

    with pytest.raises(ConfigError, match="^augment_shift: must be at most 8"):
        PRESETS["quick"].with_overrides(augment_shift=9)
    assert augmentation(PRESETS["quick"].with_overrides(augment_shift=0, augment_rotation=0.0)) is None
    frames = torch.zeros(3, 2, 34, 34)
    frames[:, :, 17, 17] = 1.0
    shift = RandomShift(2)
    seen = set()
    for _ in range(200):
        (_, _, y, x), = torch.nonzero(shift(frames)[:1, :1])
        seen.add((int(x) - 17, int(y) - 17))
    assert seen == {(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}
