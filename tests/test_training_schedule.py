"""The optimiser's extras: the learning-rate schedule, AdamW's weight decay and label smoothing.

Each is off in every preset (the tutorial's Adam at a constant rate, snnTorch's own losses), is
refused by name when out of range, and is checked against torch's own implementation: the
cosine and one-cycle schedules against ``torch.optim.lr_scheduler``'s ``CosineAnnealingLR`` and ``OneCycleLR``, the smoothed losses
against snnTorch's ``ce_rate_loss``/``ce_count_loss`` (no smoothing) and a hand-written smoothed
cross entropy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import pytest
import torch
from snntorch import functional as SF

from core.runs import RunStore
from core.training import PRESETS, ConfigError, JobRegistry, TrainConfig, form_settings, loop, with_settings
from core.training.__main__ import build_parser, config_from_args
from core.training.loop import Clock, SmoothedCrossEntropy, loss_fn, lr_factor, make_optimizer, progress
from helpers import write_tiny_dataset


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame cache and default runs under tmp_path, never in the repository's data home."""
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))


def test_every_preset_keeps_adam_and_snntorchs_loss_and_only_long_cycles_its_rate() -> None:
    model = torch.nn.Linear(3, 2)
    for name, config in PRESETS.items():
        schedule = "onecycle" if name == "long" else "constant"
        assert (config.lr_schedule, config.weight_decay, config.label_smoothing) == (schedule, 0.0, 0.0)
        assert type(make_optimizer(config, model)) is torch.optim.Adam
    assert set(PRESETS) == {"tutorial", "quick", "long"}
    long, quick = PRESETS["long"], PRESETS["quick"]
    assert (long.transform, long.loss) == (quick.transform, quick.loss)  # quick's frames and loss, five minutes
    assert (long.batch_size, long.augment_rotation, long.augment_shift, long.max_seconds) == (64, 10.0, 1, 300.0)
    assert (long.model.population, quick.model.population, PRESETS["tutorial"].model.population) == (20, 1, 1)
    assert long.model == dataclasses.replace(quick.model, population=20)  # otherwise the tutorial's network
    assert isinstance(loss_fn(PRESETS["quick"]), SF.ce_rate_loss)
    assert isinstance(loss_fn(PRESETS["tutorial"]), SF.mse_count_loss)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"lr_schedule": None}, "lr_schedule"),
        ({"weight_decay": -0.01}, "weight_decay"),
        ({"weight_decay": 1.0}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"weight_decay": "0.1"}, "weight_decay"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": float("inf")}, "label_smoothing"),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(TrainConfig(), **changes)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    path, value = next(iter(changes.items()))
    with pytest.raises(ConfigError, match=f"^{field}: "):
        with_settings(PRESETS["quick"], {path: value})


def test_the_command_line_and_the_form_offer_the_new_settings() -> None:
    args = build_parser().parse_args(["--lr-schedule", "cosine", "--weight-decay", "0.05", "--label-smoothing", "0.1"])
    config = config_from_args(args)
    assert (config.lr_schedule, config.weight_decay, config.label_smoothing) == ("cosine", 0.05, 0.1)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    form = {s.path: s for s in form_settings()}
    assert form["lr_schedule"].choices == ("constant", "cosine", "onecycle")
    assert not form["lr_schedule"].form.essential and not form["weight_decay"].form.essential
    assert form["label_smoothing"].form.applies("ce_rate") and not form["label_smoothing"].form.applies("mse_count")


@pytest.mark.parametrize("max_iters", [1, 7, 100])
def test_cosine_follows_torchs_cosine_annealing_over_the_iterations(max_iters: int) -> None:
    config = PRESETS["quick"].with_overrides(lr_schedule="cosine", max_iters=max_iters, max_seconds=None)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    oracle = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_iters, eta_min=0.0)
    clock = Clock.of(config)
    for i in range(max_iters):
        ours = config.lr * lr_factor(config.lr_schedule, progress(config, i, clock))
        assert ours == pytest.approx(oracle.get_last_lr()[0], rel=1e-9, abs=1e-15), i
        optimizer.step()
        oracle.step()
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-15) and lr_factor("cosine", 0.0) == 1.0
    assert lr_factor("constant", 0.7) == 1.0


@pytest.mark.parametrize("max_iters", [100, 1000, 4500])
def test_onecycle_follows_torchs_one_cycle_over_the_iterations(max_iters: int) -> None:
    """The rate of torch's OneCycleLR with its defaults, up from lr / 25 over the first 30 %, then down to lr / 250,000.

    Ours is a function of the budget's share (so that a time limit can drive it); torch's counts steps and ends its
    warm-up at step 0.3 * total_steps - 1: given total_steps = max_iters + 1 (so both end at max_iters) the two
    differ by 0.7 of a step there, at most 4 / max_iters of lr on the warm-up's steepest part.
    """
    config = PRESETS["quick"].with_overrides(lr_schedule="onecycle", max_iters=max_iters, max_seconds=None)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    oracle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max_iters + 1)
    clock = Clock.of(config)
    for i in range(max_iters):
        ours = config.lr * lr_factor(config.lr_schedule, progress(config, i, clock))
        assert ours == pytest.approx(oracle.get_last_lr()[0], abs=4 * config.lr / max_iters), i
        optimizer.step()
        oracle.step()
    assert lr_factor("onecycle", 0.0) == pytest.approx(1 / 25, rel=1e-12)
    assert lr_factor("onecycle", 0.3) == 1.0
    assert lr_factor("onecycle", 1.0) == pytest.approx(1 / 250_000, rel=1e-9)
    assert lr_factor("onecycle", 2.0) == lr_factor("onecycle", 1.0)  # past the budget: the last rate


def test_a_time_limited_run_decays_with_the_time_spent() -> None:
    """Progress is the larger share of the budget spent: iterations or seconds since Start."""
    config = PRESETS["quick"].with_overrides(lr_schedule="cosine", max_iters=1000, max_seconds=100.0)
    clock = Clock(started=time.monotonic() - 75.0, deadline=time.monotonic() + 25.0)
    assert progress(config, 10, clock) == pytest.approx(0.75, abs=0.01)  # time leads
    assert progress(config, 900, clock) == pytest.approx(0.9)  # iterations lead
    expected = 0.5 * (1 + math.cos(0.75 * math.pi))
    assert lr_factor("cosine", progress(config, 10, clock)) == pytest.approx(expected, abs=0.02)
    late = Clock(started=time.monotonic() - 500.0, deadline=None)
    assert lr_factor("cosine", progress(config, 10, late)) == pytest.approx(0.0, abs=1e-12)  # past the budget: 0


def test_weight_decay_makes_adamw_with_its_settings() -> None:
    model = torch.nn.Linear(3, 2)
    config = PRESETS["quick"].with_overrides(weight_decay=0.05, betas=(0.8, 0.99))
    optimizer = make_optimizer(config, model)
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (config.lr, (0.8, 0.99), 0.05)


def _spikes(steps: int = 6, batch: int = 5, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(steps, batch, classes, generator=g) < 0.3).float().requires_grad_()
    return spikes, torch.randint(0, classes, (batch,), generator=g)


def test_no_smoothing_is_snntorchs_own_losses() -> None:
    spikes, targets = _spikes()
    assert SmoothedCrossEntropy(0.0, per_step=True)(spikes, targets).item() == pytest.approx(
        SF.ce_rate_loss()(spikes, targets).item(), rel=1e-6)
    assert SmoothedCrossEntropy(0.0, per_step=False)(spikes, targets).item() == pytest.approx(
        SF.ce_count_loss()(spikes, targets).item(), rel=1e-6)


@pytest.mark.parametrize("per_step", [True, False])
def test_smoothed_losses_match_the_formula(per_step: bool) -> None:
    """(1 - e) of the true class's -log p plus e spread evenly over all classes, as in Szegedy et al. 2016."""
    e = 0.1
    spikes, targets = _spikes()

    def smoothed(logits: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits.double(), dim=-1)
        true = -log_p.gather(1, targets[:, None]).squeeze(1)
        return ((1 - e) * true - e * log_p.mean(-1)).mean()

    expected = (sum(smoothed(s) for s in spikes) / len(spikes)) if per_step else smoothed(spikes.sum(0))
    config = PRESETS["quick"].with_overrides(label_smoothing=e, loss="ce_rate" if per_step else "ce_count")
    ours = loss_fn(config)(spikes, targets)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)
    ours.backward()  # it trains: the gradient reaches the spikes
    assert spikes.grad is not None and torch.isfinite(spikes.grad).all()
    mse = PRESETS["tutorial"].with_overrides(label_smoothing=e)
    assert isinstance(loss_fn(mse), SF.mse_count_loss)  # mse_count ignores it, as correct_rate means nothing to ce


@pytest.mark.slow  # starts a real training job
def test_a_run_with_all_three_trains_and_ends_at_the_scheduled_rate(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[torch.optim.Optimizer] = []

    def keep(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
        made.append(make_optimizer(config, model))
        return made[-1]

    monkeypatch.setattr(loop, "make_optimizer", keep)
    data = write_tiny_dataset(tmp_path / "data", {"Train": 3, "Test": 1})
    config = PRESETS["quick"].with_overrides(
        data_root=str(data), batch_size=8, eval_samples=10, eval_every=0, max_iters=4, max_seconds=None,
        lr_schedule="cosine", weight_decay=0.05, label_smoothing=0.1, num_threads=None,
    )
    job = JobRegistry(RunStore(tmp_path / "runs")).submit(config)
    assert job.join(timeout=300), "the job should end"
    snap = job.snapshot()
    assert snap.status == "finished", snap.log
    assert all(math.isfinite(r.loss) for r in snap.iterations) and len(snap.iterations) == 4
    (optimizer,) = made
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["lr"] == pytest.approx(config.lr * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    saved = TrainConfig.from_dict(json.loads((Path(snap.run_dir) / "config.json").read_text()))
    assert saved == config
