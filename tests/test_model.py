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
    class_spikes,
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
        ({"population": 0}, "population"),
        ({"population": 51}, "population"),
        ({"population": 2.0}, "population"),
        ({"population": True}, "population"),
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


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_a_population_code_sums_each_class_neurons_as_snntorch_groups_them(engine: str) -> None:
    """population=3: the output layer has 30 neurons; the model's output is snnTorch's population-code count."""
    import snntorch.functional as SF

    torch.manual_seed(5)
    model = build_model(ModelConfig(population=3, engine=engine))
    assert model.net[7].out_features == 30 and model.config.outputs == 30
    with torch.no_grad():
        model.net[7].weight.mul_(6)  # enough output spikes to tell the groups apart
        model.net[0].weight.mul_(3)
    x = frames(t=12, b=3, density=0.15, seed=6)
    spk, mem = model(x)
    raw, raw_mem = loop_forward(model.net, x)  # the tutorial's loop: every one of the 30 neurons
    assert spk.shape == mem.shape == (12, 3, 10) and raw.shape == (12, 3, 30)
    assert raw.sum() > 0 and spk.max() > 1  # several neurons of one class spike at one step
    assert model.engine_name == ("fast" if engine == "auto" else "loop")
    torch.testing.assert_close(spk, raw.reshape(12, 3, 10, 3).sum(-1), rtol=0, atol=0)
    torch.testing.assert_close(mem, raw_mem.reshape(12, 3, 10, 3).mean(-1))
    # snnTorch's own grouping (population_code=True): class k = neurons 3k .. 3k + 2
    torch.testing.assert_close(
        SF.ce_count_loss(population_code=True, num_classes=10)(raw, torch.tensor([0, 4, 9])),
        SF.ce_count_loss()(class_spikes(raw, 3), torch.tensor([0, 4, 9])))
    assert SF.accuracy_rate(raw, torch.tensor([0, 4, 9]), population_code=True, num_classes=10) == \
        SF.accuracy_rate(spk, torch.tensor([0, 4, 9]))
    assert "30 output neurons" not in model.describe() and "800FC30" in model.describe()
    assert "3 output neurons a class" in model.describe()


def test_a_population_codes_gradients_on_the_fast_engine_are_the_loops() -> None:
    torch.manual_seed(7)
    fast = build_model(ModelConfig(population=4))
    loop = build_model(ModelConfig(population=4, engine="loop"))
    with torch.no_grad():
        fast.net[7].weight.mul_(5)
        fast.net[0].weight.mul_(3)
    loop.load_state_dict(fast.state_dict())
    x = frames(t=10, b=2, density=0.15, seed=8)
    grads = []
    for model in (fast, loop):
        spk, mem = model(x)
        (spk.sum(0) * torch.arange(1.0, 11.0)).sum().backward()  # a different weight for each class
        grads.append([p.grad.clone() for p in model.parameters()])
    assert fast.engine_name == "fast" and loop.engine_name == "loop"
    assert grads[0][4].abs().sum() > 0  # the output layer's weights get a gradient
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
