"""ModelConfig, build_model and the tutorial's layers (the fast engine itself is in test_engine.py)."""

from __future__ import annotations

import json

import pytest
import snntorch as snn
import torch
from torch import nn

from core.model import (
    SURROGATES,
    ModelConfig,
    ModelConfigError,
    build_model,
    check_frames,
    forward_pass,
    loop_forward,
    spike_grad,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frames(t: int = 6, b: int = 2, density: float = 0.05, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((t, b, 2, 34, 34), generator=g) < density).float()


def test_defaults_are_the_tutorials() -> None:
    c = ModelConfig()
    assert (c.beta, c.threshold, c.surrogate, c.reset_mechanism) == (0.5, 1.0, "atan", "subtract")
    assert (c.channels, c.kernel_size, c.hidden, c.n_classes, c.slope) == ((12, 32), 5, 800, 10, 2.0)
    assert not c.learn_beta and not c.learn_threshold and c.engine == "auto" and c.pool == "max"


def test_layers_match_the_tutorial_sequential() -> None:
    model = build_model()
    kinds = [nn.Conv2d, nn.MaxPool2d, snn.Leaky, nn.Conv2d, nn.MaxPool2d, snn.Leaky, nn.Flatten, nn.Linear, snn.Leaky]
    assert [type(layer) for layer in model.net] == kinds
    assert model.net[0].weight.shape == (12, 2, 5, 5) and model.net[3].weight.shape == (32, 12, 5, 5)
    assert model.net[7].weight.shape == (10, 800)
    assert all(model.net[i].init_hidden for i in (2, 5, 8)) and model.net[8].output
    assert float(model.net[2].beta) == 0.5 and float(model.net[5].threshold) == 1.0
    assert model.n_parameters() == 18254
    assert "12C5-MP2-32C5-MP2-800FC10" in model.describe()


def test_state_dict_keys_are_stable() -> None:
    keys = list(build_model().state_dict())
    assert keys[:2] == ["net.0.weight", "net.0.bias"]
    for i in (2, 5, 8):
        assert {f"net.{i}.beta", f"net.{i}.threshold"} <= set(keys)
    assert {"net.3.weight", "net.3.bias", "net.7.weight", "net.7.bias"} <= set(keys)
    learned = build_model(ModelConfig(learn_beta=True, learn_threshold=True))
    assert set(learned.state_dict()) == set(keys)
    assert {name for name, _ in learned.named_parameters()} >= {"net.2.beta", "net.8.threshold"}
    other = build_model()
    other.load_state_dict(learned.state_dict())  # a checkpoint loads across the learn_* switches


def test_model_returns_spikes_and_membrane_of_the_output_layer() -> None:
    torch.manual_seed(0)
    model = build_model()
    x = frames()
    spk, mem = model(x)
    assert spk.shape == mem.shape == (6, 2, 10)
    assert model.engine_reason is None and model.engine_name == "fast"
    assert torch.equal(spk, forward_pass(model.net, x))  # the tutorial's loop on the same parameters
    _, ref_mem = loop_forward(model.net, x)
    torch.testing.assert_close(mem, ref_mem)
    assert set(spk.unique().tolist()) <= {0.0, 1.0}


def test_loop_engine_is_the_tutorials_loop() -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(engine="loop"))
    x = frames(seed=2)
    spk, mem = model(x)
    assert model.engine_reason == "engine='loop' was requested" and model.engine_name == "loop"
    assert torch.equal(spk, forward_pass(model.net, x))
    assert mem.shape == (6, 2, 10)


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
def test_every_surrogate_builds_with_its_parameter(surrogate: str) -> None:
    keyword, default = SURROGATES[surrogate]
    config = ModelConfig(surrogate=surrogate, surrogate_slope=None if keyword is None else 3.0)
    fn = spike_grad(config)
    x = torch.tensor([-0.5, 0.5], requires_grad=True)
    out = fn(x)
    assert out.tolist() == [0.0, 1.0]
    build_model(config)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"beta": 1.5}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": "1"}, "threshold"),
        ({"surrogate": "relu"}, "surrogate"),
        ({"surrogate": "heaviside", "surrogate_slope": 2.0}, "surrogate_slope"),
        ({"surrogate_slope": -1.0}, "surrogate_slope"),
        ({"reset_mechanism": "soft"}, "reset_mechanism"),
        ({"learn_beta": "yes"}, "learn_beta"),
        ({"channels": (12,)}, "channels"),
        ({"channels": (12, 0)}, "channels"),
        ({"kernel_size": 13}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"n_classes": 0}, "n_classes"),
        ({"engine": "gpu"}, "engine"),
        ({"pool": "sum"}, "pool"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ModelConfigError, match=f"ModelConfig.{field}") as info:
        ModelConfig(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_config_round_trips_through_json() -> None:
    config = ModelConfig(beta=0.9, surrogate="fast_sigmoid", surrogate_slope=10.0, channels=(8, 16), learn_beta=True)
    back = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.channels == (8, 16)
    with pytest.raises(ModelConfigError, match="colour") as info:
        ModelConfig.from_dict({"colour": "red"})
    assert info.value.field == "colour"
    older = config.to_dict()
    del older["pool"]  # saved before the pooling choice existed: the tutorial's max pooling
    assert ModelConfig.from_dict(older) == config and config.pool == "max"


def test_average_pooling_builds_avgpool_layers() -> None:
    model = build_model(ModelConfig(pool="avg"))
    assert [type(model.net[i]) for i in (1, 4)] == [nn.AvgPool2d, nn.AvgPool2d]
    assert "12C5-AP2-32C5-AP2-800FC10" in model.describe() and model.engine_name == "fast"
    assert list(model.state_dict()) == list(build_model().state_dict())  # pooling has no weights
    x = frames(seed=5)
    spk, _ = model(x)
    assert torch.equal(spk, forward_pass(model.net, x))


def test_neuron_spec_carries_the_lif_settings() -> None:
    spec = ModelConfig(surrogate="sigmoid", reset_mechanism="zero").neuron
    assert (spec.surrogate, spec.reset_mechanism, spec.slope) == ("sigmoid", "zero", 25.0)


def test_other_channel_counts_and_kernels_run_fast_and_agree() -> None:
    torch.manual_seed(3)
    model = build_model(ModelConfig(channels=(4, 6), kernel_size=3, n_classes=3))
    assert model.config.hidden == 6 * 7 * 7
    with torch.no_grad():
        model.net[0].weight.mul_(4)
    x = frames(seed=4, density=0.1)
    spk, _ = model(x)
    assert model.engine_reason is None and spk.shape == (6, 2, 3)
    assert torch.equal(spk, forward_pass(model.net, x))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(5, 2, 34, 34), "shape"),
        (torch.zeros(5, 2, 2, 32, 32), "shape"),
        (torch.zeros(0, 2, 2, 34, 34), "time step"),
        (torch.zeros(5, 2, 2, 34, 34, dtype=torch.int16), "floating"),
    ],
)
def test_bad_frames_are_refused(bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_frames(bad)
    with pytest.raises(ValueError, match="frames"):
        build_model()(bad)
