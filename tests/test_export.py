"""NIR export: what NIR cannot express is refused by name; an average-pooling network read back from the file
(``nir.read`` + snnTorch's ``import_from_nir``) spikes exactly as the run's network does."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.import_nir import import_from_nir

from core import export
from core.events import SENSOR_SIZE, read_nmnist
from core.functional import denoise, to_frame
from core.model import ModelConfig, SpikingCNN, build_model, class_spikes, loop_forward
from core.runs import RunStore, load_model, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NIR_READY = {"pool": "avg", "reset_mechanism": "zero"}


def active_model(config: ModelConfig, seed: int = 0) -> SpikingCNN:
    """A float32 model whose layers spike often (the default initialisation is almost silent)."""
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        model.net[0].weight.mul_(8.0)
        model.net[3].weight.mul_(5.0)
        model.net[7].weight.mul_(3.0)
    return model


def saved_run(root: Path, model: SpikingCNN) -> Path:
    """A run folder holding ``model`` as its best checkpoint."""
    folder = RunStore(root / "runs").create_run("custom")
    folder.save_checkpoint("best", make_checkpoint(model, model.config, iteration=1))
    return folder.path


def nir_spikes(network: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Output spikes ``(T, B, classes)`` of an imported NIR network, run one sample and one frame at a time."""
    samples = []
    for b in range(frames.shape[1]):
        for module in network.modules():
            if isinstance(module, snn.Leaky):
                module.reset_mem()
        samples.append(torch.stack([network(frames[t, b])[0] for t in range(frames.shape[0])]))
    return torch.stack(samples, 1).detach()


def export_and_read_back(tmp_path: Path, model: SpikingCNN) -> tuple[torch.nn.Module, SpikingCNN]:
    """Export ``model``'s run with the CLI; the network read back from the file and the run's own model."""
    run = saved_run(tmp_path, model)
    out = tmp_path / "network.nir"
    assert export.main([str(run), "--format", "nir", "--out", str(out)]) == 0
    return import_from_nir(nir.read(out)), load_model(run / "best.pt")


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({}, "pool"),  # the tutorial's network: max pooling
        ({"pool": "avg"}, "reset_mechanism"),  # the tutorial's subtract reset
        ({"pool": "avg", "reset_mechanism": "none"}, "reset_mechanism"),
        ({**NIR_READY, "beta": 0.001}, "beta"),  # tau = dt / (1 - beta) does not carry it back exactly
    ],
)
def test_what_nir_cannot_express_is_refused_by_name(
    kwargs: dict, setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_model(ModelConfig(**kwargs))
    with pytest.raises(export.ExportError) as info:
        export.nir_bytes(model)
    assert info.value.setting == setting and setting in str(info.value)
    out = tmp_path / "network.nir"
    assert export.main([str(saved_run(tmp_path, model)), "--out", str(out)]) == 2
    assert f"{setting}:" in capsys.readouterr().err and not out.exists()


def test_a_learned_beta_nir_cannot_carry_is_refused() -> None:
    model = build_model(ModelConfig(**NIR_READY, learn_beta=True))
    with torch.no_grad():
        model.net[5].beta.fill_(0.001)
    with pytest.raises(export.ExportError, match=r"net\.5's beta 0\.001") as info:
        export.nir_bytes(model)
    assert info.value.setting == "beta"


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export.main([str(tmp_path), "--out", str(tmp_path / "network.nir")]) == 2
    assert "not a run folder with a checkpoint" in capsys.readouterr().err


def test_average_pooling_network_comes_back_with_identical_spikes(tmp_path: Path) -> None:
    """Learned beta and threshold, any surrogate: the file's network spikes as the run's network does."""
    config = ModelConfig(**NIR_READY, learn_beta=True, learn_threshold=True, surrogate="fast_sigmoid")
    model = active_model(config)
    with torch.no_grad():
        model.net[2].beta.fill_(0.8)
        model.net[5].threshold.fill_(0.8713)  # a trained threshold is any float32
    back, ours = export_and_read_back(tmp_path, model)
    g = torch.Generator().manual_seed(1)
    frames = ((torch.rand((25, 3, 2, 34, 34), generator=g) < 0.04) * torch.randint(1, 3, (25, 3, 2, 34, 34), generator=g))
    frames = frames.float()
    ref, _ = loop_forward(ours.net, frames)
    assert ref.sum() > 0
    assert torch.equal(nir_spikes(back, frames), ref.detach())


def real_frames(files: list[Path]) -> torch.Tensor:
    """Denoise(10000) + ToFrame(time_window=1000) of each file, zero-padded to the longest: (T, B, 2, 34, 34)."""
    samples = [to_frame(denoise(read_nmnist(f), 10000), SENSOR_SIZE, time_window=1000) for f in files]
    frames = np.zeros((max(len(s) for s in samples), len(samples), *samples[0].shape[1:]), dtype=np.float32)
    for b, s in enumerate(samples):
        frames[: len(s), b] = s
    return torch.from_numpy(frames)


@pytest.mark.slow  # real recordings through both networks
def test_real_recordings_give_identical_spikes_through_nir(real_recordings: list[Path], tmp_path: Path) -> None:
    by_digit: dict[str, Path] = {}
    for f in real_recordings:
        by_digit.setdefault(f.parent.name, f)
    frames = real_frames([by_digit[d] for d in sorted(by_digit)[:3]])
    back, ours = export_and_read_back(tmp_path, active_model(ModelConfig(**NIR_READY)))
    ref, _ = loop_forward(ours.net, frames)
    assert frames.shape[0] > 250 and ref.sum() > 0
    assert torch.equal(nir_spikes(back, frames), ref.detach())


def test_a_population_code_exports_its_output_neurons_as_they_are(tmp_path: Path) -> None:
    """population=2: the file holds all 20 output neurons, spiking as the run's network's; a reader sums the pairs."""
    model = active_model(ModelConfig(**NIR_READY, population=2))
    back, ours = export_and_read_back(tmp_path, model)
    g = torch.Generator().manual_seed(2)
    frames = ((torch.rand((25, 3, 2, 34, 34), generator=g) < 0.04) * torch.randint(1, 3, (25, 3, 2, 34, 34), generator=g))
    frames = frames.float()
    ref, _ = loop_forward(ours.net, frames)
    assert ref.shape[-1] == 20 and ref.sum() > 0
    spikes = nir_spikes(back, frames)
    assert torch.equal(spikes, ref.detach())
    with torch.no_grad():
        assert torch.equal(class_spikes(spikes, 2), model(frames)[0])
