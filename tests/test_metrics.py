"""NeuroBench's metrics (core.metrics): hand-made networks with known counts, the engine's own spike counts, and
the keys ``python -m core.evaluate`` and the training records carry.

The hand-made cases follow NeuroBench's published definitions: activation sparsity is the
share of zero outputs of the spiking layers over all steps and samples; effective synaptic
operations are the (nonzero input, nonzero weight) pairs of the Conv2d and Linear layers,
accumulates where a layer's input is all 0/1, multiply-accumulates otherwise; dense ones
count every pair; connection sparsity is the share of zero weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.evaluate import EvaluationResult, format_result, main
from core.images import load_bundled_mnist, mnist_test_source
from core.metrics import (
    JSON_KEYS,
    METRIC_KEYS,
    OPERATION_KEYS,
    describe,
    measure,
    measure_samples,
    record_metrics,
    spread,
)
from core.model import ModelConfig, build_model
from core.runs import RunStore, make_checkpoint
from core.saccade import generate_dataset
from core.training import preset
from core.training.records import EvalRecord

T1, P1, T2, P2 = 12 * 30 * 30, 12 * 15 * 15, 32 * 11 * 11, 32 * 5 * 5  # the tutorial's conv and pooled sizes
DENSE_PER_STEP = T1 * 2 * 25 + T2 * 12 * 25 + P2 * 10  # every weight times every input: 540,000 + 1,161,600 + 8,000


def hand_made() -> torch.nn.Module:
    """Layer 1 fires everywhere at every step (its bias 2 > threshold 1); layers 2 and 3 never fire.

    conv1 and conv2 have small nonzero weights (every pair counts as an operation), the
    linear layer's weights are all zero (connection sparsity 8,000 / 18,200).
    """
    model = build_model(ModelConfig())
    conv1, conv2, fc = model.net[0], model.net[3], model.net[7]
    with torch.no_grad():
        conv1.weight.fill_(1e-3)
        conv1.bias.fill_(2.0)
        conv2.weight.fill_(1e-4)  # 300 inputs x 1e-4 = 0.03 a step: the membrane settles at 0.06, under 1
        conv2.bias.zero_()
        fc.weight.zero_()
        fc.bias.zero_()
    return model


def one_event_frames(steps: int, batch: int, value: float) -> torch.Tensor:
    """One ON pixel of ``value`` events at (17, 17) in every frame: its 5 x 5 x 12 conv1 outputs are all inside."""
    frames = torch.zeros(steps, batch, 2, 34, 34)
    frames[:, :, 0, 17, 17] = value
    return frames


def test_hand_made_network_has_the_counts_of_neurobench_definitions() -> None:
    model = hand_made()
    steps, batch = 4, 3
    m = measure(model, one_event_frames(steps, batch, 1.0))
    assert m.samples == batch and m.time_steps == steps
    assert m.activation_sparsity == pytest.approx((P2 + 10) / (P1 + P2 + 10), abs=1e-12)  # only layer 1 fires
    ops = m.synaptic_operations
    assert set(ops) == set(OPERATION_KEYS)
    # conv1: one event meets 12 x 25 weights; conv2: every spike of layer 1 meets every weight; fc: no spikes
    assert ops["Effective_ACs"] == steps * (12 * 25 + T2 * 12 * 25)
    assert ops["Effective_MACs"] == 0
    assert ops["Dense"] == steps * DENSE_PER_STEP
    assert m.connection_sparsity == round(8000 / (600 + 9600 + 8000), 4)
    params = sum(p.numel() for p in model.parameters())
    scalars = sum(b.numel() * b.element_size() for b in build_model(ModelConfig()).buffers())  # beta, threshold, ...
    assert m.footprint_bytes == 4 * params + scalars and 4 * params == 73016

    # two events in a pixel: an event count, not a spike, so NeuroBench counts conv1's operations as MACs
    m2 = measure(model, one_event_frames(steps, batch, 2.0))
    assert m2.synaptic_operations["Effective_MACs"] == steps * 12 * 25
    assert m2.synaptic_operations["Effective_ACs"] == steps * T2 * 12 * 25
    assert m2.activation_sparsity == m.activation_sparsity


def test_silent_network_and_zero_weights() -> None:
    model = build_model(ModelConfig())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    m = measure(model, one_event_frames(3, 2, 1.0))
    assert m.activation_sparsity == 1.0 and m.connection_sparsity == 1.0
    assert m.synaptic_operations["Effective_ACs"] == m.synaptic_operations["Effective_MACs"] == 0
    assert m.synaptic_operations["Dense"] == 3 * DENSE_PER_STEP


def lively(pool: str = "max", seed: int = 0) -> torch.nn.Module:
    """A random network with its weights scaled up so that every layer fires often."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(pool=pool))
    with torch.no_grad():
        for p in model.net.parameters():
            p.mul_(6)
    return model


def random_frames(steps: int, batch: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    events = (torch.rand(steps, batch, 2, 34, 34, generator=g) < 0.05).float()
    return events * torch.randint(1, 3, (steps, batch, 2, 34, 34), generator=g).float()


def engine_spike_counts(model: torch.nn.Module, frames: torch.Tensor) -> tuple[int, int]:
    """(spikes, neuron outputs) of all three spiking layers, counted from the fast engine's own record of each sample
    (:func:`core.engine.record_layers`: the kernels behind ``model(frames)``, every layer kept)."""
    from core.engine import record_layers

    spikes = outputs = 0
    for b in range(frames.shape[1]):
        trace = record_layers(model.net, model.config.neuron, frames[:, b])
        for spk in (trace.spk1, trace.spk2, trace.spk3):
            spikes += int(spk.sum())
            outputs += spk.size
    assert outputs == frames.shape[0] * frames.shape[1] * (P1 + P2 + 10)
    with torch.no_grad():  # the output layer's spikes are what model(frames) returns
        assert int(model(frames)[0].sum()) == sum(
            int(record_layers(model.net, model.config.neuron, frames[:, b]).spk3.sum()) for b in range(frames.shape[1])
        )
    return spikes, outputs


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_activation_sparsity_agrees_with_the_engines_spike_counts(pool: str) -> None:
    model = lively(pool)
    frames = random_frames(12, 5)
    spikes, outputs = engine_spike_counts(model, frames)
    assert 0.05 < spikes / outputs < 0.95  # a lively network: the comparison means something
    m = measure(model, frames, max_steps=24)  # three batches (2, 2, 1 samples), accumulated as NeuroBench does
    assert m.activation_sparsity == pytest.approx(1 - spikes / outputs, abs=1e-12)
    assert m.synaptic_operations["Effective_ACs"] > 0 and m.synaptic_operations["Effective_MACs"] > 0


def test_the_metric_pass_leaves_the_model_as_it_was() -> None:
    model = lively()
    model.train()
    frames = random_frames(6, 3)
    with torch.no_grad():
        before = model(frames)[0].clone()
    threads = torch.get_num_threads()
    measure(model, frames)
    assert torch.get_num_threads() == threads  # one torch thread during the pass only
    assert model.training and all(m.training for m in model.modules())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks  # NeuroBench's hooks removed
    with torch.no_grad():
        assert torch.equal(model(frames)[0], before)
    with torch.no_grad():  # the footprint does not depend on the batch the neurons last saw
        model.net(frames[0].repeat(7, 1, 1, 1))
    assert measure(model, frames[:, :1]).footprint_bytes == measure(model, frames).footprint_bytes


def test_samples_are_spread_and_bounded() -> None:
    assert spread(range(10), 3) == [0, 4, 9] and spread([5, 6], 4) == [5, 6] and spread(range(7), 1) == [0]
    dataset = [(torch.zeros(t, 2, 34, 34), 0) for t in (10, 12, 60, 8)] + [(torch.zeros(5, 2, 34, 34), 1)] * 20
    model = build_model(ModelConfig())
    m = measure_samples(model, dataset, range(4), samples=4, max_steps=None)
    assert m.samples == 4 and m.time_steps == 60 and m.activation_sparsity == 1.0
    m = measure_samples(model, dataset, range(4), samples=4, max_steps=120)  # 60 steps: two samples fit
    assert m.samples == 2
    m = measure_samples(model, dataset, range(4, 24), samples=16, max_steps=40)
    assert m.samples == 8 and m.time_steps == 5

    class Broken:
        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            raise OSError("unreadable")

    assert measure_samples(model, Broken(), range(3), skip=(OSError,)) is None
    assert measure_samples(model, dataset, []) is None and measure_samples(model, dataset, range(3), samples=0) is None


def test_record_metrics_logs_and_never_raises() -> None:
    lines: list[str] = []
    model = lively()
    dataset = [(random_frames(4, 1, seed=k)[:, 0], k % 10) for k in range(6)]
    values = record_metrics(model, dataset, range(6), "cpu", lines.append)
    assert set(JSON_KEYS) == set(values) and values["metrics_samples"] == 6
    record = EvalRecord(iteration=1, accuracy=0.5, per_class_accuracy=(), confusion=(), samples=6, seconds=1.0,
                        **values)
    assert record.activation_sparsity == values["activation_sparsity"]
    assert lines and lines[-1].startswith("activation sparsity ") and "NeuroBench, 6 samples" in lines[-1]
    assert record_metrics(torch.nn.Linear(2, 2), dataset, range(6), "cpu", lines.append) == {}
    assert "NeuroBench metrics not measured: TypeError" in lines[-1]


def test_description_for_people() -> None:
    assert describe(None) == "NeuroBench metrics: not measured"
    ops = {"Effective_ACs": 1.2e6, "Effective_MACs": 3.1e5, "Dense": 5.1288e8}
    text = describe({"activation_sparsity": 0.9712, "synaptic_operations": ops, "footprint_bytes": 73076,
                     "connection_sparsity": 0.0, "metrics_samples": 16})
    assert text == ("activation sparsity 97.1%, 1.20 M effective ACs + 310.00 k MACs per sample (dense 512.88 M), "
                    "footprint 73.1 kB, connection sparsity 0.0% (NeuroBench, 16 samples)")


# ---------------------------------------------------------------- core.evaluate


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run folder with an untrained (lively) network's final.pt, and a small simulated set to evaluate it on."""
    root = tmp_path_factory.mktemp("metrics")
    images, labels = load_bundled_mnist(0, 12)
    data = generate_dataset(root / "tiny", images, labels, seed=1, test_fraction=0.5, workers=1,
                            source=mnist_test_source(0, 12))
    config = preset("quick", data_root=str(data))
    folder = RunStore(root / "runs").create_run("quick")
    folder.write_config(config.to_dict())
    folder.save_checkpoint("final", make_checkpoint(lively(), config.model, iteration=3, train_config=config))
    return folder.path, data


def test_evaluate_cli_json_has_the_metric_keys(tiny_run: tuple[Path, Path], capsys, monkeypatch) -> None:
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tiny_run[0].parent.parent / "home"))
    run_dir, data = tiny_run
    assert main([str(run_dir), "--data", str(data), "--json", "--metric-samples", "4"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(METRIC_KEYS) <= set(result) and list(result)[6:6 + len(JSON_KEYS)] == list(JSON_KEYS)
    assert 0 < result["activation_sparsity"] < 1 and result["metrics_samples"] == 4
    assert set(result["synaptic_operations"]) == set(OPERATION_KEYS)
    assert result["synaptic_operations"]["Effective_ACs"] > 0 and result["footprint_bytes"] > 73016
    assert result["connection_sparsity"] == 0.0
    kept = EvaluationResult.from_dict(result)
    assert kept.metrics == {k: result[k] for k in JSON_KEYS} and kept.to_dict() == result

    assert main([str(run_dir), "--data", str(data), "--json", "--no-save"]) == 0  # the default: as training measures
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metrics_samples"] == result["samples"] == 4 and result["metrics_time_steps"] * 4 <= 1200

    assert main([str(run_dir), "--data", str(data), "--no-save", "--metric-samples", "2"]) == 0
    text = capsys.readouterr().out
    assert "activation sparsity " in text and "effective ACs" in text and "(NeuroBench, 2 samples)" in text

    assert main([str(run_dir), "--data", str(data), "--json", "--no-save", "--metric-samples", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(result[k] is None for k in JSON_KEYS)  # the keys are there, not measured
    assert EvaluationResult.from_dict(result).metrics is None
    assert "NeuroBench metrics: not measured" in format_result(EvaluationResult.from_dict(result))


def test_an_evaluation_saved_before_the_metrics_still_loads(tiny_run: tuple[Path, Path], capsys) -> None:
    run_dir, data = tiny_run
    assert main([str(run_dir), "--data", str(data), "--json", "--no-save", "--metric-samples", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    old = {k: v for k, v in result.items() if k not in JSON_KEYS}
    assert EvaluationResult.from_dict(old).metrics is None
    assert np.isfinite(EvaluationResult.from_dict(result).metrics["activation_sparsity"])


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_every_test_during_training_records_the_metrics(
    tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.runs import METRICS_FILE
    from core.training import TrainingJob

    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))  # its own frame cache
    _, data = tiny_run
    config = preset("quick", data_root=str(data), max_iters=2, eval_every=1, max_seconds=None, num_threads=1)
    job = TrainingJob(config, tmp_path / "run").start()
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == "finished", snap.error
    assert [e.iteration for e in snap.evals] == [1, 2]
    for record in snap.evals:
        assert 0 <= record.activation_sparsity <= 1 and record.footprint_bytes > 73016
        assert record.metrics_samples == record.samples == 4 and record.metrics_time_steps > 0  # 4 < METRIC_SAMPLES
        assert set(record.synaptic_operations) == set(OPERATION_KEYS)
        assert 0 < record.metrics_seconds < record.seconds  # the test's time includes the metric pass
    assert sum("(NeuroBench, 4 samples), in " in line for line in snap.log) == 2, snap.log
    written = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    evals = [r for r in written if r["type"] == "eval"]
    assert [r["activation_sparsity"] for r in evals] == [e.activation_sparsity for e in snap.evals]
