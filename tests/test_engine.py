"""The fast engine against the tutorial's own loop (snnTorch): same spikes, same membranes, same gradients.

snnTorch's surrogates return float32 spikes whatever the membrane's dtype, so
the float64 oracle casts each layer's input to float64 (exact for 0/1
spikes); the gradient arriving at those spikes is float32 too, which is why
gradients are compared to rtol 1e-4 rather than float64 precision. Float64 keeps rounding from flipping a spike
that sits on the threshold; float32 agreement is checked separately on most entries.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numba
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import functional as SF

from core import engine
from core.model import SURROGATES, ModelConfig, SpikingCNN, build_model, forward_pass

T, B = 10, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def active_model(config: ModelConfig, dtype: torch.dtype = torch.float64, seed: int = 0) -> SpikingCNN:
    """A model whose hidden layers spike often on sparse input (default init is almost silent)."""
    torch.manual_seed(seed)
    model = build_model(config).to(dtype)
    scales = (5.0, 2.5, 2.0) if config.pool == "max" else (10.0, 7.5, 3.0)  # averaging damps the currents
    with torch.no_grad():
        for i, scale in zip((0, 3, 7), scales):
            model.net[i].weight.mul_(scale)
    return model


def sparse_frames(t: int = T, b: int = B, density: float = 0.03, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    """Random event-count frames: about ``density`` of the pixels hold 1 or 2 events."""
    g = torch.Generator().manual_seed(seed)
    shape = (t, b, 2, 34, 34)
    mask = torch.rand(shape, generator=g) < density
    return (mask * torch.randint(1, 3, shape, generator=g)).to(dtype)


def oracle(model: SpikingCNN, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The tutorial's loop on the model's own layers: output spikes, output membranes and hidden spike rates."""
    rates: dict[int, list[float]] = {2: [], 5: []}
    hooks = [
        model.net[i].register_forward_pre_hook(lambda mod, inp: (inp[0].to(mod.weight.dtype),)) for i in (3, 7)
    ]
    hooks += [
        model.net[i].register_forward_hook(
            lambda mod, inp, out, i=i: rates[i].append(float(out.detach().float().mean()))
        )
        for i in (2, 5)
    ]
    mem_rec: list[torch.Tensor] = []
    hooks.append(model.net[8].register_forward_hook(lambda mod, inp, out: mem_rec.append(out[1])))
    try:
        spk = forward_pass(model.net, frames)
    finally:
        for h in hooks:
            h.remove()
    return spk, torch.stack(mem_rec), [float(np.mean(rates[2])), float(np.mean(rates[5]))]


def loss_of(spk: torch.Tensor, mem: torch.Tensor, seed: int = 2) -> torch.Tensor:
    """A loss that weighs every output spike and membrane differently, so no gradient cancels by symmetry."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(spk.shape, generator=g, dtype=torch.float64).to(mem.dtype)
    c = torch.randn(mem.shape, generator=g, dtype=torch.float64).to(mem.dtype)
    return (spk.to(mem.dtype) * a).sum() + (mem * c).sum() * 0.1


def grads(model: SpikingCNN) -> dict[str, torch.Tensor]:
    out = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_gradients(fast: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
    assert fast.keys() == ref.keys()
    for name in ref:
        scale = float(ref[name].abs().max()) or 1.0
        torch.testing.assert_close(
            fast[name], ref[name], rtol=rtol, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}"
        )


def compare(config: ModelConfig, frames: torch.Tensor, model: SpikingCNN | None = None) -> list[float]:
    """Run fast engine and oracle on the same parameters; assert equal spikes, membranes and gradients."""
    model = model if model is not None else active_model(config)
    spk, mem = model(frames)
    assert model.engine_reason is None
    loss_of(spk, mem).backward()
    fast = grads(model)
    ref_spk, ref_mem, rates = oracle(model, frames)
    loss_of(ref_spk, ref_mem).backward()
    ref = grads(model)
    assert torch.equal(spk, ref_spk.to(spk.dtype))
    torch.testing.assert_close(mem, ref_mem, rtol=1e-9, atol=1e-9)
    assert_same_gradients(fast, ref)
    return rates


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_every_surrogate_and_reset_matches_the_tutorial_loop(surrogate: str, reset: str) -> None:
    rates = compare(ModelConfig(surrogate=surrogate, reset_mechanism=reset), sparse_frames())
    assert all(0.0 < r < 1.0 for r in rates), rates  # the hidden layers really spike


@pytest.mark.parametrize("learn_beta", [False, True])
@pytest.mark.parametrize("learn_threshold", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_learnable_beta_and_threshold_get_the_same_gradients(
    learn_beta: bool, learn_threshold: bool, reset: str
) -> None:
    config = ModelConfig(learn_beta=learn_beta, learn_threshold=learn_threshold, reset_mechanism=reset, beta=0.7,
                         threshold=0.8)
    compare(config, sparse_frames(seed=3))


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.2, 1.3])
def test_beta_at_and_beyond_the_clamp_edges(beta: float) -> None:
    """beta is clamped to [0, 1] in forward; the clamp passes no gradient at or beyond its edges."""
    model = active_model(ModelConfig(learn_beta=True, learn_threshold=True))
    with torch.no_grad():
        for i in (2, 5, 8):
            model.net[i].beta.fill_(beta)
    compare(model.config, sparse_frames(seed=4), model)


@pytest.mark.parametrize("surrogate, slope", [("atan", 5.0), ("fast_sigmoid", 3.0), ("sigmoid", 2.0),
                                              ("triangular", 0.5), ("spike_rate_escape", 4.0), ("SFS", 10.0)])
def test_surrogate_shape_parameters(surrogate: str, slope: float) -> None:
    compare(ModelConfig(surrogate=surrogate, surrogate_slope=slope, learn_threshold=True), sparse_frames(seed=5))


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
def test_average_pooling_matches_the_tutorial_loop(reset: str, surrogate: str) -> None:
    """pool='avg': the oracle's net holds nn.AvgPool2d(2); same spikes, membranes and gradients."""
    config = ModelConfig(pool="avg", reset_mechanism=reset, surrogate=surrogate, learn_beta=True, learn_threshold=True)
    model = active_model(config)
    assert all(type(model.net[i]) is torch.nn.AvgPool2d for i in (1, 4))
    rates = compare(config, sparse_frames(seed=12), model)
    assert all(0.0 < r < 1.0 for r in rates), rates


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("channels", [(24, 9), (5, 7), (1, 3)])
def test_other_channel_counts_match_the_tutorial_loop(channels: tuple[int, int], pool: str) -> None:
    """Conv 2's input gradient pads each kernel row of K x C1 weights to whole blocks of engine.ROW_BLOCK values: C1 =
    24 fills two blocks (the second in part), 5 and 1 a part of one; C2 sets how the channels fall into groups."""
    config = ModelConfig(channels=channels, pool=pool, learn_beta=True)
    rates = compare(config, sparse_frames(seed=13))
    assert all(0.0 < r < 1.0 for r in rates), rates


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_other_kernel_sizes_match_the_tutorial_loop(kernel_size: int) -> None:
    """Conv 2's input gradient takes five kernel rows a call where it can (AVX-512) and the rest one at a time:
    3 rows go one at a time, 7 as five and two."""
    config = ModelConfig(channels=(6, 10), kernel_size=kernel_size, learn_beta=True)
    rates = compare(config, sparse_frames(seed=14))
    assert all(0.0 < r < 1.0 for r in rates), rates


_FIVE_ROWS = engine._weighted_rows_kernel(5)  # the engine's choice on AVX-512; tested on every CPU


@numba.njit
def _weighted_rows(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step, five):  # pragma: no cover - compiled
    if five:
        _FIVE_ROWS(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step)
    else:
        engine._add_weighted_rows(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel_rows", [1, 5])
@pytest.mark.parametrize(("n_rows", "n_valid", "n_dests"), [(32, 60, 1), (7, 64, 4), (1, 1, 2), (0, 64, 1)])
def test_add_weighted_rows_against_numpy(dtype: type, kernel_rows: int, n_rows: int, n_valid: int, n_dests: int) -> None:
    """The vector kernel of conv 2's input gradient, one or five kernel rows a call: for each kernel row r a weighted
    sum of weight rows (from column col + r * weight_step) added at each destination + r * out_step, and the lanes
    past n_valid read and written back bit for bit (here sentinels, one of them NaN)."""
    rng = np.random.default_rng(n_rows + n_valid + kernel_rows)
    block = engine.ROW_BLOCK
    weight_step, out_step = 2 * block, 300
    weight = rng.standard_normal((40, block + kernel_rows * weight_step)).astype(dtype)
    rows = rng.permutation(40)[:max(n_rows, 1)].astype(np.int32)
    coefs = rng.standard_normal(max(n_rows, 1)).astype(dtype)
    col = block
    dests = np.array([0, 3, 150, 200], dtype=np.int64)
    out = rng.standard_normal(200 + (kernel_rows - 1) * out_step + block).astype(dtype)
    expected = out.copy()
    untouched = np.ones(out.size, dtype=bool)
    for r in range(kernel_rows):
        at = col + r * weight_step
        total = (coefs[:n_rows, None].astype(np.float64) * weight[rows[:n_rows], at : at + block]).sum(0)
        for d in dests[:n_dests] + r * out_step:
            expected[d : d + n_valid] += total[:n_valid]
            untouched[d : d + n_valid] = False
    if n_valid < block:  # sentinels in the lanes that are read and written back
        lane = dests[n_dests - 1] + (kernel_rows - 1) * out_step + n_valid
        out[lane], expected[lane] = np.nan, np.nan
    _weighted_rows(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step, kernel_rows == 5)
    assert np.array_equal(out[untouched], expected[untouched], equal_nan=True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out[~untouched], expected[~untouched], rtol=tol, atol=tol * 10)


@numba.njit
def _prefetch_both(a):  # pragma: no cover - compiled
    engine._prefetch_read(a)
    engine._prefetch_write(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("size", [0, 1, 17, 2700])
def test_prefetch_changes_nothing(dtype: type, size: int) -> None:
    """The record prefetches (one step ahead, forward and backward) only ask for cache lines: every size and dtype
    compiles, the array and its neighbours stay as they were, and a strided array is refused at compile time."""
    whole = np.arange(size + 64).astype(dtype)
    before = whole.copy()
    _prefetch_both(whole[32 : 32 + size])
    assert np.array_equal(whole, before)
    with pytest.raises(numba.core.errors.TypingError, match="contiguous 1-D"):
        _prefetch_both(whole[::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("classes", "n2"), [(10, 800), (3, 64), (20, 330)])
def test_linear_back_against_numpy(dtype: type, classes: int, n2: int) -> None:
    """The linear layer in reverse, its input gradient in vector blocks over the padded weight (800 = five blocks
    twice and three single ones): dout @ weight into g2, the padding's lanes zero, and dout added to the float64
    weight gradient's row of every spiking neuron."""
    rng = np.random.default_rng(n2)
    weight = rng.standard_normal((classes, n2)).astype(dtype)
    padded = engine._padded_last_axis(weight)
    assert padded.shape[1] % engine.ROW_BLOCK == 0 and padded.ctypes.data % 64 == 0
    dout = rng.standard_normal(classes).astype(dtype)
    spikes = np.sort(rng.choice(n2, 7, replace=False)).astype(np.int32)
    g2 = np.full(padded.shape[1], np.nan, dtype=dtype)
    dweight = rng.standard_normal((n2, classes))
    expected = dweight.copy()
    expected[spikes] += dout
    engine._linear_back(spikes, spikes.size, padded, dout, np.arange(classes, dtype=np.int32),
                        np.empty(1, dtype=np.int64), g2, dweight)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(g2[:n2], dout.astype(np.float64) @ weight, rtol=tol, atol=tol * 10)
    assert (g2[n2:] == 0).all()
    np.testing.assert_array_equal(dweight, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 47, 800, 2700])
def test_spikes_are_numpys_positions_above_threshold(dtype: type, size: int) -> None:
    """The spike lists (vector blocks with a compressing store, then a scalar tail) against numpy: the positions
    where mem - threshold > 0, ascending, NaN never a spike, nothing written past them."""
    rng = np.random.default_rng(size)
    mem = (rng.random(size) * 2).astype(dtype)
    mem[rng.random(size) < 0.3] = 1.0  # at the threshold: not a spike
    if size > 20:
        mem[[3, 18]] = np.nan
        mem[size - 1] = 5.0  # a spike in the tail (or the last block)
    spec = engine.NeuronSpec()
    as_torch = torch.float32 if dtype == np.float32 else torch.float64
    lif = engine._lif(torch.tensor(0.9), torch.tensor(1.0), spec, as_torch)
    idx = np.full(size + 3, -1, dtype=np.int32)
    n = engine._spikes(mem, lif, idx)
    expected = np.flatnonzero(mem - dtype(1.0) > 0)
    assert n == expected.size and np.array_equal(idx[:n], expected)
    assert (idx[n:] == -1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 34, 34), (1, 5, 3), (2, 4, 4)])
def test_events_are_numpys_nonzero_pixels(dtype: type, shape: tuple[int, int, int]) -> None:
    """A frame's event list (vector blocks with a compressing store, then a scalar tail) against numpy: the flat
    positions of the nonzero pixels in order and their values, negative, tiny and NaN ones included."""
    rng = np.random.default_rng(sum(shape))
    frame = np.where(rng.random(shape) < 0.2, rng.standard_normal(shape), 0.0).astype(dtype)
    flat = frame.reshape(-1)
    flat[[0, flat.size - 1]] = [np.nan, -0.5]  # the first block and the tail
    flat[flat.size // 2] = np.finfo(dtype).tiny / 2  # subnormal: still an event
    pos, val = np.full(flat.size + 2, -1, np.int32), np.zeros(flat.size + 2, dtype)
    n = engine._events(frame, pos, val)
    expected = np.flatnonzero(flat != 0)
    assert n == expected.size and np.array_equal(pos[:n], expected) and (pos[n:] == -1).all()
    assert np.array_equal(val[:n], flat[expected], equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_cells_are_torchs_pooling_bit_for_bit(dtype: type) -> None:
    """The two 2 x 2 pooling kernels against nn.MaxPool2d (ties, NaN, argmax) and nn.AvgPool2d (summation order),
    written channels last and channels first (the argmax always channels last)."""
    rng = np.random.default_rng(14)
    conv_map = (rng.standard_normal((8, 8, 5)) * np.exp(rng.standard_normal((8, 8, 5)) * 3)).astype(dtype)
    conv_map[0:2, 0:2, 0] = 1.5  # a four-way tie: the first maximum wins
    conv_map[2:4, 0:2, 1] = [[-1.0, 2.0], [2.0, -1.0]]
    conv_map[4, 5, 2] = np.nan  # NaN wins
    as_torch = torch.from_numpy(conv_map).permute(2, 0, 1)[None]  # (1, C, H, W)
    ref_max, ref_arg = torch.nn.functional.max_pool2d(as_torch, 2, return_indices=True)
    ref_avg = torch.nn.AvgPool2d(2)(as_torch)
    for average, ref in ((False, ref_max), (True, ref_avg)):
        rows = conv_map.reshape(8, 8 * 5)  # the kernels' flat map rows, channels last
        for py in range(4):
            for px in range(4):
                # channels last (stride 1, as layer 1 keeps them) or first (stride 3 here, as layer 2 does)
                stride = 1 if (py + px) % 2 else 3
                values, args = np.full(2 + 5 * stride, -7.0, dtype), np.full(9, 9, np.uint8)
                r0, r1 = rows[2 * py], rows[2 * py + 1]
                if average:
                    engine._average_cell(r0, r1, 2 * px * 5, 5, dtype(0.25), values, 1, stride, args, 2)
                else:
                    engine._max_cell(r0, r1, 2 * px * 5, 5, values, 1, stride, args, 2)
                written = 1 + stride * np.arange(5)
                others = np.setdiff1d(np.arange(values.size), written)
                assert (values[others] == -7.0).all()  # only its 5 entries
                assert (args[:2] == 9).all() and (args[7:] == 9).all()  # the argmax channels last, always
                for c in range(5):
                    value, arg = values[written[c]], args[2 + c]
                    expected = ref[0, c, py, px].numpy()
                    assert np.array_equal(value, expected, equal_nan=True)
                    if not average:
                        flat = int(ref_arg[0, c, py, px])  # torch's index into the (H, W) map
                        assert (2 * py + (arg >> 1), 2 * px + (arg & 1)) == divmod(flat, 8)
                    else:
                        assert arg == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 12, 16, 17, 33])
def test_channels_last_cells_in_blocks_of_16(dtype: type, n: int) -> None:
    """Channels last, a pool cell's channels go 16 at a time in masked vector registers (_cell_max, _cell_unpool,
    _cell_fill): the same values as torch's pooling and as a plain unpooling, for channel counts that fill part
    of a block, one, and parts of two and three; nothing outside the cell's n entries read or written."""
    rng = np.random.default_rng(n)
    conv_map = rng.standard_normal((2, 2, n)).astype(dtype)  # one cell: (row, column, channel)
    conv_map[:, :, 0] = 1.5  # a four-way tie: the first maximum wins
    conv_map[1, 0, n - 1] = np.nan  # NaN wins (in the last block)
    rows = np.full((2, 2 * n + 9), -3.0, dtype)  # map rows with other cells' values around this one
    rows[:, 4 : 4 + 2 * n] = conv_map.reshape(2, 2 * n)
    values, args = np.full(n + 6, -7.0, dtype), np.full(n + 6, 9, np.uint8)
    engine._max_cell(rows[0], rows[1], 4, n, values, 3, 1, args, 3)
    ref, ref_arg = torch.nn.functional.max_pool2d(torch.from_numpy(conv_map).permute(2, 0, 1)[None], 2, return_indices=True)
    assert np.array_equal(values[3 : 3 + n], ref.reshape(n).numpy(), equal_nan=True)
    assert np.array_equal(args[3 : 3 + n], ref_arg.reshape(n).numpy())  # index into the 2 x 2 map: the argmax
    assert (np.delete(values, np.s_[3 : 3 + n]) == -7.0).all() and (np.delete(args, np.s_[3 : 3 + n]) == 9).all()

    share = rng.standard_normal(n + 5).astype(dtype)
    arg = rng.integers(0, 4, n + 5).astype(np.uint8)
    for kind in ("max", "avg"):
        out = np.full((2, 2 * n + 9), -3.0, dtype)
        engine._unpool_cell(share, arg, 2, n, engine._pool(kind, torch.float32 if dtype == np.float32 else torch.float64), out[0], out[1], 4)
        cell = out[:, 4 : 4 + 2 * n].reshape(2, 2, n)
        for j in range(4):
            got = cell[j >> 1, j & 1]
            expected = share[2 : 2 + n] if kind == "avg" else np.where(arg[2 : 2 + n] == j, share[2 : 2 + n], 0)
            assert np.array_equal(got, expected), (kind, j)
        assert (out[:, :4] == -3.0).all() and (out[:, 4 + 2 * n :] == -3.0).all()


@numba.njit
def _grouped(share, arg, rows, coefs, counts, average):  # pragma: no cover - compiled
    n = share.shape[1]
    flat_share, flat_arg = share.reshape(share.size), arg.reshape(arg.size)
    for cell in range(share.shape[0]):
        engine._group_by_argmax(flat_share, flat_arg, cell * n, n, rows, coefs, counts, cell * 4, average)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 16, 32, 33])
@pytest.mark.parametrize("average", [False, True])
def test_group_by_argmax_against_a_plain_loop(dtype: type, n: int, average: bool) -> None:
    """Conv 2's input gradient groups each pool cell's channels by argmax with compressing stores: the same groups,
    channels ascending, with their shares, as a plain loop; average pooling puts every channel in the first group.
    Nothing past a group's count is written."""
    rng = np.random.default_rng(n)
    cells = 6
    share = rng.standard_normal((cells, n)).astype(dtype)
    share[0, 0] = np.nan  # carried, not compared
    arg = rng.integers(0, 4, (cells, n)).astype(np.uint8)
    arg[1] = 2  # a cell with one full group and three empty ones
    rows = np.full(cells * 4 * n, -1, np.int32)
    coefs = np.full(cells * 4 * n, -7.0, dtype)
    counts = np.full(cells * 4, -1, np.int64)
    _grouped(share, arg, rows, coefs, counts, average)
    for cell in range(cells):
        for j in range(4):
            g = cell * 4 + j
            expected = np.arange(n) if (average and j == 0) else np.array([], int) if average else np.flatnonzero(arg[cell] == j)
            assert counts[g] == expected.size
            assert np.array_equal(rows[g * n : g * n + expected.size], expected)
            assert np.array_equal(coefs[g * n : g * n + expected.size], share[cell, expected], equal_nan=True)
            assert (rows[g * n + expected.size : (g + 1) * n] == -1).all() and (coefs[g * n + expected.size : (g + 1) * n] == -7.0).all()


def test_weight_buffer_starts_on_a_cache_line() -> None:
    """Conv 2's padded weight, the input gradient's operand, starts on a 64-byte line (misaligned rows cost up to
    half the kernel's speed) and is zeros of the shape and dtype asked for."""
    for dtype in (np.float32, np.float64):
        for _ in range(8):  # numpy alone lands on a line about one time in four
            array = engine._zeros_on_lines((32, 5, 64), np.dtype(dtype))
            assert array.ctypes.data % 64 == 0 and array.shape == (32, 5, 64) and array.dtype == dtype
            assert array.flags.c_contiguous and array.flags.writeable and not array.any()


def test_backward_takes_conv2_weight_on_a_cache_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward pass builds its padded conv 2 and linear weights with _zeros_on_lines (a plain np.zeros would
    still give the right gradients, only slower)."""
    shapes = []

    def spy(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        shapes.append(shape)
        return zeros_on_lines(shape, dtype)

    zeros_on_lines = engine._zeros_on_lines
    monkeypatch.setattr(engine, "_zeros_on_lines", spy)
    model = build_model(ModelConfig(engine="fast"))
    spk, _ = model(sparse_frames(t=4, b=2, density=0.05, seed=3))
    spk.sum().backward()
    # C2, K, K * C1 = 60 padded to one block; classes, the 800 inputs padded to 13 blocks
    assert shapes == [(32, 5, engine.ROW_BLOCK), (10, 13 * engine.ROW_BLOCK)]


def test_mixed_pooling_is_not_the_tutorial_network() -> None:
    model = build_model(ModelConfig(pool="avg"))
    model.net[4] = torch.nn.MaxPool2d(2)
    assert "pool differently" in engine.unsupported_reason(model.net, model.config.neuron)
    model.net[4] = torch.nn.AvgPool2d(3)
    assert "AvgPool2d(2)" in engine.unsupported_reason(model.net, model.config.neuron)


def test_tutorial_loss_on_default_initialisation() -> None:
    """The tutorial's own loss and an unscaled network: identical loss and gradients."""
    torch.manual_seed(0)
    model = build_model().double()
    frames = sparse_frames(t=15, b=4, density=0.05, seed=6)
    targets = torch.tensor([0, 3, 7, 9])
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    spk, _ = model(frames)
    loss = loss_fn(spk, targets)
    loss.backward()
    fast = grads(model)
    ref_spk, _, _ = oracle(model, frames)
    ref_loss = loss_fn(ref_spk, targets)
    ref_loss.backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    assert_same_gradients(fast, grads(model))


# ----------------------------------------------------------------------------- real recordings


def real_frames(files: list[Path], dtype: torch.dtype) -> torch.Tensor:
    """Denoise(10000) + ToFrame(time_window=1000) of each file, padded as tonic.collation.PadTensors does."""
    import tonic.transforms as transforms

    from core.events import SENSOR_SIZE, read_nmnist

    transform = transforms.Compose(
        [transforms.Denoise(filter_time=10000), transforms.ToFrame(sensor_size=SENSOR_SIZE, time_window=1000)]
    )
    samples = [torch.from_numpy(transform(read_nmnist(f)).astype(np.float32)) for f in files]
    n_steps = max(s.shape[0] for s in samples)
    frames = torch.zeros((n_steps, len(samples), *samples[0].shape[1:]))
    for b, s in enumerate(samples):
        frames[: s.shape[0], b] = s
    return frames.to(dtype)


@pytest.fixture(scope="module")
def recordings(real_recordings: list[Path]) -> list[Path]:
    """Three real recordings of different digits."""
    by_digit: dict[str, Path] = {}
    for f in real_recordings:
        by_digit.setdefault(f.parent.name, f)
    return [by_digit[d] for d in sorted(by_digit)[:3]]


@pytest.mark.slow  # the float64 snnTorch loop on real recordings
def test_real_recordings_float64(recordings: list[Path]) -> None:
    frames = real_frames(recordings, torch.float64)
    assert frames.shape[0] > 250 and float((frames != 0).double().mean()) < 0.01
    rates = compare(ModelConfig(learn_beta=True, learn_threshold=True), frames)
    assert all(r > 0.0 for r in rates), rates


def test_real_recordings_float32_agree_on_most_entries(recordings: list[Path]) -> None:
    """In float32 the two summation orders round differently; spikes still agree almost everywhere."""
    torch.manual_seed(0)
    model = active_model(ModelConfig(), dtype=torch.float32)
    frames = real_frames(recordings, torch.float32)
    spk, mem = model(frames)
    ref_spk, ref_mem, _ = oracle(model, frames)
    assert spk.dtype == torch.float32 and spk.sum() > 0
    assert float((spk == ref_spk).float().mean()) > 0.99
    counts, ref_counts = spk.sum(0), ref_spk.detach().sum(0)
    assert float((counts - ref_counts).abs().max().detach()) <= 0.05 * float(ref_counts.max()) + 2


@pytest.mark.slow  # the float64 snnTorch loop on real recordings
def test_real_recordings_average_pooling_float64(recordings: list[Path]) -> None:
    frames = real_frames(recordings, torch.float64)
    rates = compare(ModelConfig(pool="avg", reset_mechanism="zero", learn_beta=True, learn_threshold=True), frames)
    assert all(r > 0.0 for r in rates), rates


def test_tutorial_iteration_float32_matches(recordings: list[Path]) -> None:
    """One training step as the tutorial runs it, float32, default initialisation: same loss and gradients."""
    torch.manual_seed(0)
    model = build_model()
    frames = real_frames(recordings, torch.float32)
    targets = torch.tensor([int(f.parent.name) for f in recordings])
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    spk, _ = model(frames)
    loss = loss_fn(spk, targets)
    loss.backward()
    fast = grads(model)
    ref_spk = forward_pass(model.net, frames)
    ref_loss = loss_fn(ref_spk, targets)
    ref_loss.backward()
    assert torch.equal(spk, ref_spk)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    assert_same_gradients(fast, grads(model), rtol=1e-3)


# ----------------------------------------------------------------------------- pieces and plumbing


@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "triangular", "heaviside"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_lif_scan_matches_snn_leaky(surrogate: str, reset: str) -> None:
    """The output layer's scan, with gradients through both spikes and membrane."""
    config = ModelConfig(surrogate=surrogate, reset_mechanism=reset, learn_beta=True, learn_threshold=True, beta=0.6)
    g = torch.Generator().manual_seed(7)
    cur = (torch.randn(25, 4, 10, generator=g, dtype=torch.float64) * 0.8 + 0.4).requires_grad_()
    leaky = build_model(config).net[8].double()
    spk, mem = engine.LIFScan.apply(cur, leaky.beta, leaky.threshold, config.neuron)
    loss_of(spk, mem).backward()
    fast = [cur.grad.clone(), leaky.beta.grad.clone(), leaky.threshold.grad.clone()]
    cur.grad = leaky.beta.grad = leaky.threshold.grad = None
    leaky.reset_mem()
    steps = [leaky(cur[t]) for t in range(cur.shape[0])]
    ref_spk, ref_mem = torch.stack([s for s, _ in steps]), torch.stack([m for _, m in steps])
    loss_of(ref_spk, ref_mem).backward()
    assert spk.sum() > 0 and torch.equal(spk, ref_spk.double())
    torch.testing.assert_close(mem, ref_mem, rtol=0, atol=0)
    # snnTorch rounds the spike's incoming gradient to float32 (its spikes are float32), hence rtol 1e-4
    assert_same_gradients(dict(zip("abc", fast)), dict(zip("abc", [cur.grad, leaky.beta.grad, leaky.threshold.grad])))


def test_retain_graph_keeps_saved_buffers() -> None:
    """Buffers return to the pool only when autograd frees them: a second backward still sees them."""
    model = active_model(ModelConfig())
    spk, mem = model(sparse_frames(seed=8))
    loss = loss_of(spk, mem)
    loss.backward(retain_graph=True)
    first = grads(model)
    _ = model(sparse_frames(seed=9))  # may take pooled buffers; must not take the retained ones
    loss.backward()
    assert_same_gradients(grads(model), first, rtol=1e-12)


def test_thread_count_does_not_change_results() -> None:
    model = active_model(ModelConfig(learn_beta=True))
    frames = sparse_frames(b=5, seed=10)
    old = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            spk, mem = model(frames)
            loss_of(spk, mem).backward()
            results.append((spk, grads(model)))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(results[0][0], results[1][0])
    assert_same_gradients(results[1][1], results[0][1], rtol=1e-10)


def test_concurrent_models_in_threads() -> None:
    """Two models training in two threads (as two dashboard jobs would) do not disturb each other."""
    frames = sparse_frames(seed=11)
    models = {seed: active_model(ModelConfig(), seed=seed) for seed in (0, 1)}  # seeding is global: build first
    expected = {seed: m(frames)[0] for seed, m in models.items()}
    got: dict[int, torch.Tensor] = {}

    def work(seed: int) -> None:
        for _ in range(3):
            spk, mem = models[seed](frames)
            loss_of(spk, mem).backward()
        got[seed] = spk

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_unsupported_inputs_fall_back_to_the_loop_and_say_why() -> None:
    model = active_model(ModelConfig(), dtype=torch.float32)  # snnTorch's loop itself needs float32
    frames = sparse_frames(dtype=torch.float32).requires_grad_()
    spk, _ = model(frames)
    assert model.engine_reason is not None and "gradient" in model.engine_reason
    assert model.engine_name == "loop"
    torch.testing.assert_close(spk, forward_pass(model.net, frames))
    model(sparse_frames(dtype=torch.float32))
    assert model.engine_reason is None
    fast_only = active_model(ModelConfig(engine="fast"), dtype=torch.float32)
    with pytest.raises(RuntimeError, match="engine='fast'"):
        fast_only(sparse_frames(dtype=torch.float32).requires_grad_())
    half = build_model().to(torch.bfloat16)
    assert "float32" in (engine.unsupported_reason(half.net, half.config.neuron) or "")


def test_unsupported_network_changes_are_detected() -> None:
    model = build_model()
    model.net[2].graded_spikes_factor = torch.tensor(2.0)
    assert "graded" in engine.unsupported_reason(model.net, model.config.neuron)
    model = build_model()
    model.net[5] = snn.Leaky(beta=torch.full((800,), 0.5), init_hidden=True)
    assert engine.unsupported_reason(model.net, model.config.neuron) is not None
