"""Fast engine for the tutorial's spiking CNN: the same numbers as the step-by-step loop, computed faster.

The tutorial calls ``net(data[step])`` for every time step, and autograd keeps
every intermediate of every step (8 GB for a batch of 128). Here the whole
network runs as one ``torch.autograd.Function`` whose forward and
hand-written backward are numba loops over (sample, time step), split over
threads by sample. A short driver per direction calls one kernel per layer:

- the first convolution is event-driven: input frames are > 99% zeros, so
  each frame's events (nonzero pixels, :func:`_events`) are listed once (and
  the list kept for backward, up to :data:`EVENT_ROOM` events a frame), or
  come listed (:class:`EventFrames`, a training batch: no dense frames), and
  each scatters its 5 x 5 kernel, a kernel row at a time as one contiguous
  run (the weights are stored with each kernel row reversed,
  :func:`_conv_rows`); only pool cells that an event reaches are pooled (the
  rest hold the pooled bias); the weight gradient is gathered at the same
  events, in runs too, from the share of those cells unpooled into a map
  (:func:`_unpool_cell`). No gradient flows to the frames.
- 2 x 2 pooling is max pooling (torch's rule: the first maximum wins; the
  argmax is kept for backward) or average pooling (summed in torch's order,
  then divided by 4), written once each in :func:`_max_cell` and :func:`_average_cell`.
  Where the channels are last (layer 1: 12 of them) a cell's channels go 16 at
  a time through masked vector registers (:func:`_cell_max`, and in backward
  :func:`_cell_unpool`, :func:`_cell_fill`): numba's loops ran them one by one.
- the second convolution sees binary spikes, listed per step
  (:func:`_spikes`): each adds one kernel column in runs, as above (forward;
  a step without spikes is the pooled bias), its weight gradient is gathered
  at the spikes (in runs from the whole unpooled map, once a step has more
  than a couple of spikes).
  Its input gradient (:func:`_conv2_back_input`) is the one dense part: the
  surrogate gradient reaches every neuron, so every pooled position sends a
  5 x 5 x C1 patch back: a third to a half of an iteration's CPU time. Its inner
  sum is written as LLVM vector code (:func:`_add_weighted_rows`, a numba
  intrinsic), because numba's own loops keep such accumulators in memory; its
  weight starts on a cache line (:func:`_zeros_on_lines`), and each cell's
  channels are grouped by argmax with compressing stores (:func:`_group_by_argmax`).
- events and spikes are listed with a compressing vector store
  (:func:`_compressing`), not a branch per hit.
- the linear layer adds the weight rows of the spiking neurons.
- each ``snn.Leaky`` layer is a scan over time with snnTorch's exact
  semantics (:func:`_lif_step`, :func:`_lif_back_step`): the reset comes from
  the previous membrane (detached), spikes from the surrogate's Heaviside
  forward (mem - threshold > 0), its derivative in backward, beta clamped to
  [0, 1]. The output layer is a separate :class:`LIFScan` so its membrane
  record can carry a gradient too.

Every forward sum is taken in the order of a dense per-pixel loop, so the
spikes do not depend on these layouts; backward sums in other orders (float64
accumulators for the parameter gradients).

Memory: only the membranes of the two hidden layers (float), the pooled
argmax (uint8; layer 1's only where events reach) and the frames' event lists
(20 MB at the tutorial's size) are kept for backward; spikes are recomputed
from the membranes. Large buffers are reused across
iterations (a small pool), because faulting in fresh pages costs about a
second per GB on a small VM. Where the time goes, and the limit on a 2-core
machine: see ``benchmarks/bench_engine.py``.

This module also owns the neuron vocabulary (:data:`SURROGATES`,
:data:`RESET_MECHANISMS`, :class:`NeuronSpec`): :mod:`core.model` builds its
``snn.Leaky`` layers from the same table, so the dependency goes one way.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import llvmlite.binding
import numba
import numpy as np
import snntorch as snn
import torch
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from torch import nn

# ----------------------------------------------------------------------------- neuron settings

# snnTorch surrogate name -> (its shape parameter's keyword, snnTorch's default value).
# The stochastic SSO, the broken LSO and custom surrogates are left out on purpose.
SURROGATES: dict[str, tuple[str | None, float | None]] = {
    "atan": ("alpha", 2.0),
    "fast_sigmoid": ("slope", 25.0),
    "sigmoid": ("slope", 25.0),
    "spike_rate_escape": ("slope", 25.0),
    "SFS": ("slope", 25.0),
    "triangular": ("threshold", 1.0),
    "straight_through_estimator": (None, None),
    "heaviside": (None, None),
}
RESET_MECHANISMS: tuple[str, ...] = ("subtract", "zero", "none")
POOLING: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}  # 2 x 2 pooling of conv currents
_SPIKE_RATE_ESCAPE_BETA = 1.0  # snnTorch's default; not exposed by ModelConfig
_SFS_B = 1.0  # snnTorch's default; not exposed by ModelConfig

# The kernels' codes: a setting's position in the tables above.
_ATAN, _FAST_SIGMOID, _SIGMOID, _SPIKE_RATE_ESCAPE, _SFS, _TRIANGULAR, _STRAIGHT_THROUGH, _HEAVISIDE = (
    list(SURROGATES).index(name)
    for name in (
        "atan", "fast_sigmoid", "sigmoid", "spike_rate_escape", "SFS", "triangular", "straight_through_estimator",
        "heaviside",
    )
)
_SUBTRACT, _ZERO = RESET_MECHANISMS.index("subtract"), RESET_MECHANISMS.index("zero")


@dataclass(frozen=True)
class NeuronSpec:
    """What a LIF layer needs besides tensors: reset mechanism and surrogate with its shape parameter."""

    reset_mechanism: str = "subtract"  # any of RESET_MECHANISMS
    surrogate: str = "atan"  # any key of SURROGATES
    slope: float | None = 2.0  # the surrogate's shape parameter as used (None where it has none)

    def __post_init__(self) -> None:
        if self.surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate!r}; choose one of {sorted(SURROGATES)}")
        if self.reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {self.reset_mechanism!r}")

    def surrogate_params(self) -> tuple[float, float]:
        """Two constants, precomputed in double as snnTorch's Python code does."""
        s, k = self.surrogate, self.slope
        if s == "atan":
            return k / 2, math.pi / 2 * k
        if s == "spike_rate_escape":
            return float(k), -_SPIKE_RATE_ESCAPE_BETA
        if s == "SFS":
            return float(k), _SFS_B
        if s in ("fast_sigmoid", "sigmoid", "triangular"):
            return float(k), 0.0
        return 0.0, 0.0


# ----------------------------------------------------------------------------- threads and buffers


_POOL: ThreadPoolExecutor | None = None


def _parallel(fn: Callable[[int, int], Any], n: int, min_chunk: int = 1) -> list[Any]:
    """Run ``fn(start, stop)`` over ``range(n)`` on up to torch's thread count (the kernels release the GIL).

    Four parts a thread, or parts of four items where that makes more (a batch of 128: 32 parts), each taken by
    whichever thread is free next (the caller's included), so that a thread the OS holds back on a busy machine
    does not hold up the rest, and the last part to finish is short; results come back in part order.
    """
    global _POOL
    threads = max(1, min(torch.get_num_threads(), n // max(1, min_chunk)))
    if threads == 1:
        return [fn(0, n)]
    parts = min(max(4 * threads, n // 4), n // max(1, min_chunk))
    bounds = [n * i // parts for i in range(parts + 1)]
    results: list[Any] = [None] * parts
    claim = itertools.count()  # next() is atomic under the GIL

    def work() -> None:
        while (i := next(claim)) < parts:
            results[i] = fn(bounds[i], bounds[i + 1])

    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="snn-engine")
    futures = [_POOL.submit(work) for _ in range(threads - 1)]
    work()
    for f in futures:
        f.result()
    return results


class BufferPool:
    """Large scratch buffers reused across iterations.

    A buffer goes back to the pool when the last array viewing it dies (after
    backward, autograd frees the saved tensors), so a graph kept alive for
    ``retain_graph`` keeps its buffers.
    """

    def __init__(self, limit_bytes: int = 3 << 30) -> None:
        self.limit_bytes = limit_bytes
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised array of ``shape``, from the pool where one fits."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = None
        with self._lock:
            fits = [b for b in self._free if nbytes <= b.nbytes <= 2 * nbytes + 4096]
            if fits:
                raw = min(fits, key=lambda b: b.nbytes)
                self._free = [b for b in self._free if b is not raw]
        if raw is None:
            raw = np.empty(nbytes + nbytes // 8 + 64, dtype=np.uint8)  # headroom for a slightly longer batch
        view = raw[:nbytes].view(dtype).reshape(shape)
        weakref.finalize(view, self._give, raw)
        return view

    def _give(self, raw: np.ndarray) -> None:
        with self._lock:
            if sum(b.nbytes for b in self._free) + raw.nbytes <= self.limit_bytes:
                self._free.append(raw)

    def clear(self) -> None:
        """Drop every pooled buffer."""
        with self._lock:
            self._free = []


BUFFERS = BufferPool()


# ----------------------------------------------------------------------------- frames given as their events


@dataclass(frozen=True, eq=False)
class EventFrames:
    """A batch of frames ``(T, B, C, H, W)`` given as its events: what the engine lists from each frame anyway.

    Frame ``(t, b)``'s events are ``positions[start[t, b]:start[t, b] + count[t, b]]`` (flat ``(c, y, x)`` indices
    into the frame, ascending: the order :func:`_events` lists a dense frame in) and the same slice of ``values``
    (float32, none zero). The engine reads them instead of scanning dense frames, so a training batch never has
    to be made dense (368 MB at the tutorial's size; :meth:`core.frames.FramesDataset.event_batch` makes these
    from the frame cache). Anything else that takes frames gets :meth:`dense`: the same frames, zeros elsewhere.
    """

    shape: torch.Size
    start: np.ndarray  # (T, B) int64
    count: np.ndarray  # (T, B) int64
    positions: np.ndarray  # int32
    values: np.ndarray  # float32

    dtype = torch.float32
    device = torch.device("cpu")
    requires_grad = False

    def __post_init__(self) -> None:
        if len(self.shape) != 5 or self.start.shape != tuple(self.shape[:2]) or self.count.shape != self.start.shape:
            raise ValueError(f"EventFrames: start and count must be (T, B) of shape {tuple(self.shape)}")
        if (self.positions.ndim != 1 or self.positions.shape != self.values.shape or self.positions.dtype != np.int32
                or self.values.dtype != np.float32):
            raise ValueError("EventFrames: positions (int32) and values (float32) must be one array each of the same length")
        per_frame = int(np.prod(self.shape[2:]))
        end = self.start + self.count
        if self.count.size and (self.count.min() < 0 or self.start.min() < 0 or end.max() > self.positions.size):
            raise ValueError("EventFrames: a frame's events lie outside the event arrays")
        if self.positions.size and (self.positions.min() < 0 or self.positions.max() >= per_frame):
            raise ValueError(f"EventFrames: a position lies outside a frame of {per_frame} values")
        problem = _listed_problem(
            np.ascontiguousarray(self.start, np.int64).reshape(-1), np.ascontiguousarray(self.count, np.int64).reshape(-1),
            self.positions, self.values,
        )
        if problem == 1:
            raise ValueError("EventFrames: an event of value 0 (a frame lists only its non-zero pixels)")
        if problem == 2:
            raise ValueError("EventFrames: a frame's positions must ascend (the order the engine scans a frame in)")

    @classmethod
    def from_dense(cls, frames: torch.Tensor) -> EventFrames:
        """The events of float32 frames ``(T, B, C, H, W)`` on the CPU."""
        if frames.dtype != torch.float32 or frames.device.type != "cpu" or frames.dim() != 5:
            raise ValueError(f"EventFrames: from float32 frames (T, B, C, H, W) on the CPU, not {frames.dtype} "
                             f"{tuple(frames.shape)} on {frames.device}")
        n_steps, batch = frames.shape[:2]
        flat = frames.detach().reshape(n_steps * batch, -1).numpy()
        frame, position = np.nonzero(flat)  # frame by frame, ascending within each
        count = np.bincount(frame, minlength=n_steps * batch)
        start = np.cumsum(count) - count
        return cls(frames.shape, start.reshape(n_steps, batch), count.reshape(n_steps, batch),
                   position.astype(np.int32), flat[frame, position])

    def dense(self) -> torch.Tensor:
        """The frames as one float32 tensor ``(T, B, C, H, W)``."""
        per_frame = int(np.prod(self.shape[2:]))
        frame = np.repeat(np.arange(self.count.size, dtype=np.int64), self.count.reshape(-1))
        listed = self._listed()
        out = torch.zeros(self.shape, dtype=torch.float32)
        out.view(-1)[torch.from_numpy(frame * per_frame + self.positions[listed])] = torch.from_numpy(self.values[listed])
        return out

    def _listed(self) -> np.ndarray:
        """Where each frame's events lie in the event arrays, frame after frame in (t, b) order."""
        count = self.count.reshape(-1)
        before = np.cumsum(count) - count  # events of the frames before, in this order
        return np.arange(int(count.sum()), dtype=np.int64) + np.repeat(self.start.reshape(-1) - before, count)


@numba.njit(cache=True, nogil=True)
def _listed_problem(start, count, pos, val):  # pragma: no cover - compiled
    """0 where every frame's events have values other than 0 and ascending positions; 1: a 0; 2: out of order."""
    for f in range(start.shape[0]):
        s = start[f]
        for e in range(s, s + count[f]):
            if val[e] == 0:
                return 1
            if e > s and pos[e] <= pos[e - 1]:
                return 2
    return 0


class _Events(NamedTuple):
    """The kernels' view of :class:`EventFrames` (values in the data's dtype); all empty for dense frames."""

    start: np.ndarray
    count: np.ndarray
    pos: np.ndarray
    val: np.ndarray


def _events_of(frames: EventFrames | None, dtype: np.dtype) -> _Events:
    if frames is None:
        return _Events(np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64), np.zeros(0, np.int32), np.zeros(0, dtype))
    return _Events(
        np.ascontiguousarray(frames.start, np.int64), np.ascontiguousarray(frames.count, np.int64),
        np.ascontiguousarray(frames.positions), np.ascontiguousarray(frames.values, dtype),
    )


# ----------------------------------------------------------------------------- what the kernels read


class _Lif(NamedTuple):
    """One LIF layer's constants in the data's dtype, its codes, and which parameter gradients backward sums."""

    beta: Any  # clamped to [0, 1], as snnTorch clamps it in forward
    threshold: Any
    zero: Any
    one: Any
    p0: Any  # the surrogate's two constants (NeuronSpec.surrogate_params)
    p1: Any
    reset: int  # position in RESET_MECHANISMS
    surrogate: int  # position in SURROGATES
    want_beta: bool
    want_threshold: bool


class _Pool(NamedTuple):
    """2 x 2 pooling: max (argmax kept for backward) or average; quarter and zero in the data's dtype."""

    average: bool
    quarter: Any
    zero: Any


class _Layer(NamedTuple):
    """A convolution's or the linear layer's weight (in the kernel's layout) and bias."""

    weight: np.ndarray
    bias: np.ndarray


class _Shape(NamedTuple):
    """Sizes of the network for one frame size: kernel, channels, pooled maps (P1 x P1 x C1, C2 x P2 x P2), classes."""

    k: int
    cin: int
    height: int
    width: int
    c1: int
    ph1: int
    pw1: int
    c2: int
    ph2: int
    pw2: int
    n_out: int


class _Net(NamedTuple):
    """Forward's parameters: conv weights (Cin, K, K * C) as :func:`_conv_rows` lays them out, linear weight
    (C2 * P2 * P2, classes)."""

    conv1: _Layer
    lif1: _Lif
    conv2: _Layer
    lif2: _Lif
    fc: _Layer
    pool: _Pool


class _NetBack(NamedTuple):
    """Backward's parameters: conv2 weight (C2, K * R), each kernel row's K * C1 values in [kx][ci] order zero-padded
    to R (a multiple of ROW_BLOCK), linear weight (classes, n2 rounded up to ROW_BLOCK, zero-padded)."""

    conv2_weight: np.ndarray
    fc_weight: np.ndarray
    lif1: _Lif
    lif2: _Lif
    pool: _Pool


class _Record(NamedTuple):
    """What forward keeps for backward, each (T, B, n): membranes and pooled argmax of the two hidden layers, and
    each frame's events.

    Layer 1 is cell-major with channels last (P1 * P1 * C1); layer 2's membranes channels first (C2 * P2 * P2), as
    nn.Flatten orders them, its argmax cell-major (P2 * P2 * C2), as backward reads it. Layer 1's argmax is written
    only at the pool cells that a step's events reach (the only ones its backward reads); elsewhere the buffer keeps
    whatever it held. A frame's event list (:func:`_events`) is kept
    where it has at most EVENT_ROOM events: n_events (T, B) is its length, or -1 where backward lists it again.
    """

    mem1: np.ndarray
    arg1: np.ndarray
    mem2: np.ndarray
    arg2: np.ndarray
    event_pos: np.ndarray  # (T, B, EVENT_ROOM) int32
    event_val: np.ndarray  # (T, B, EVENT_ROOM), the frames' dtype
    n_events: np.ndarray  # (T, B) int32


EVENT_ROOM = 64  # events kept per frame: 99.99 % of the tutorial's 1 ms frames have fewer (mean 12)


def _new_record(
    take: Callable[[tuple[int, ...], Any], np.ndarray], n_steps: int, batch: int, shape: _Shape, dtype: np.dtype
) -> _Record:
    """A record for ``n_steps`` x ``batch`` samples, its arrays from ``take(shape, dtype)``."""
    n1, n2 = shape.ph1 * shape.pw1 * shape.c1, shape.c2 * shape.ph2 * shape.pw2
    return _Record(
        mem1=take((n_steps, batch, n1), dtype), arg1=take((n_steps, batch, n1), np.uint8),
        mem2=take((n_steps, batch, n2), dtype), arg2=take((n_steps, batch, n2), np.uint8),
        event_pos=take((n_steps, batch, EVENT_ROOM), np.int32), event_val=take((n_steps, batch, EVENT_ROOM), dtype),
        n_events=take((n_steps, batch), np.int32),
    )


class _Grads(NamedTuple):
    """Float64 gradient sums of one thread: weights in the kernels' layouts, and (d beta, d threshold) per LIF layer."""

    conv1_weight: np.ndarray  # (Cin, K, K * C1), kernel rows reversed (_conv_rows)
    conv1_bias: np.ndarray
    conv2_weight: np.ndarray  # (C1, K, K * C2), likewise
    conv2_bias: np.ndarray
    fc_weight: np.ndarray  # (C2 * P2 * P2, classes)
    lif1: np.ndarray
    lif2: np.ndarray


# ----------------------------------------------------------------------------- numba kernels: the LIF layer

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")  # numpy: IEEE division, no zero checks
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")  # small helpers of hot loops


# ----------------------------------------------------------------------------- explicit vector kernels

_LANES, _CHUNKS = 16, 4  # an LLVM <16 x float> (one AVX-512 register; two AVX2 ones), four of them a block
ROW_BLOCK = _LANES * _CHUNKS  # conv 2's backward weight pads each kernel row to a multiple of this
_FEW_SPIKES = 2  # conv 2's weight gradient gathers up to this many spikes of a step without filling a map


def _as_i64(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    return builder.sext(value, ir.IntType(64)) if value.type.width < 64 else value


def _splat(builder: ir.IRBuilder, value: ir.Value, ty: ir.VectorType) -> ir.Value:
    """``value`` in every lane of a vector of type ``ty``."""
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(ty, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(ty, ir.Undefined), ir.Constant(ir.VectorType(i32, ty.count), [0] * ty.count))


def _weighted_rows_kernel(n_kernel_rows: int) -> Any:
    """A numba intrinsic ``(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step)``
    for ``n_kernel_rows`` kernel rows at once: for each r < n_kernel_rows,
    ``acc[r] = sum(coefs[q] * weight[rows[q], col + r * weight_step : ... + ROW_BLOCK] for q < n_rows)``, then for
    each of the first ``n_dests`` offsets d in ``dests``: ``out[d + r * out_step : ... + n_valid] += acc[r][:n_valid]``.

    The sums run in ``n_kernel_rows * ROW_BLOCK / 16`` vector registers (fused multiply-adds, q in order), so each
    weight block is read once per row and nothing else goes through memory: numba's own loops keep such
    accumulators in memory. Five kernel rows (20 registers, AVX-512's 32 leave room) read each group's channel list
    and coefficients once instead of five times and keep 20 sums in flight instead of 4. Lanes past ``n_valid`` are
    read and written back unchanged, so ``out`` needs ``ROW_BLOCK - n_valid`` elements of room past the last offset.
    ``weight`` must be C-contiguous, 2-D, of ``out``'s dtype.
    """

    def kernel(typingctx, out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step):
        name = kernel.__name__
        wrong = numba.core.errors.TypingError
        for label, array in {"out": out, "dests": dests, "rows": rows, "coefs": coefs}.items():
            if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
                raise wrong(f"{name}: {label} must be a contiguous 1-D array, got {array}")  # .data indexed
        if not (isinstance(weight, types.Array) and weight.ndim == 2 and weight.layout == "C"):
            raise wrong(f"{name}: weight must be a C-contiguous 2-D array, got {weight}")
        if out.dtype not in (types.float32, types.float64) or not out.dtype == weight.dtype == coefs.dtype:
            raise wrong(f"{name}: out, weight and coefs must share one float dtype, got {out}, {weight}")
        sig = types.void(out, dests, n_dests, weight, rows, coefs, n_rows, col, n_valid, weight_step, out_step)

        def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
            n_dests_v, n_rows_v, col_v, n_valid_v = args[2], args[6], args[7], args[8]
            weight_step, out_step = _as_i64(builder, args[9]), _as_i64(builder, args[10])
            out_a, dests_a, weight_a, rows_a, coefs_a = (
                context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 1, 3, 4, 5)
            )
            fty = context.get_value_type(signature.args[0].dtype)
            vty = ir.VectorType(fty, _LANES)
            i64 = ir.IntType(64)
            fma_name = f"llvm.fma.v{_LANES}{'f32' if isinstance(fty, ir.FloatType) else 'f64'}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), fma_name)
            def vector_at(data: ir.Value, index: ir.Value) -> ir.Value:
                return builder.bitcast(builder.gep(data, [index]), vty.as_pointer())

            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * _LANES)
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(_CHUNKS)] for _ in range(n_kernel_rows)]
            n_cols = builder.extract_value(weight_a.shape, 1)
            col = _as_i64(builder, col_v)
            with cgutils.for_range(builder, _as_i64(builder, n_rows_v)) as loop:
                row = _as_i64(builder, builder.load(builder.gep(rows_a.data, [loop.index])))
                coef = _splat(builder, builder.load(builder.gep(coefs_a.data, [loop.index])), vty)
                start = builder.add(builder.mul(row, n_cols), col)
                for r, row_accs in enumerate(accs):
                    at = builder.add(start, builder.mul(weight_step, ir.Constant(i64, r)))
                    for i, acc in enumerate(row_accs):
                        w = builder.load(vector_at(weight_a.data, builder.add(at, ir.Constant(i64, i * _LANES))), align=4)
                        builder.store(builder.call(fma, [coef, w, builder.load(acc)]), acc)
            sums = [[builder.load(acc) for acc in row_accs] for row_accs in accs]
            lanes = ir.Constant(ir.VectorType(i64, _LANES), list(range(_LANES)))
            n_valid = _as_i64(builder, n_valid_v)
            masks = [
                builder.icmp_signed(
                    "<", lanes, _splat(builder, builder.sub(n_valid, ir.Constant(i64, i * _LANES)), ir.VectorType(i64, _LANES))
                )
                for i in range(_CHUNKS)
            ]
            with cgutils.for_range(builder, _as_i64(builder, n_dests_v)) as loop:
                dest = _as_i64(builder, builder.load(builder.gep(dests_a.data, [loop.index])))
                for r, row_sums in enumerate(sums):
                    base = builder.add(dest, builder.mul(out_step, ir.Constant(i64, r)))
                    for i, total in enumerate(row_sums):
                        at = vector_at(out_a.data, builder.add(base, ir.Constant(i64, i * _LANES)))
                        old = builder.load(at, align=4)
                        builder.store(builder.select(masks[i], builder.fadd(old, total), old), at, align=4)
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = f"_add_weighted_rows_{n_kernel_rows}"
    return intrinsic(kernel)


_add_weighted_rows = _weighted_rows_kernel(1)  # one kernel row a call
# Five at once where the CPU has 32 vector registers (AVX-512); with AVX2's 16 the 20 sums would spill.
_MANY_KERNEL_ROWS = 5 if "+avx512f" in llvmlite.binding.get_host_cpu_features().flatten() else 1
_add_many_weighted_rows = _weighted_rows_kernel(_MANY_KERNEL_ROWS)


def _lane_mask(builder: ir.IRBuilder, m: ir.Value) -> ir.Value:
    """<16 x i1>: lane < m."""
    ty = ir.VectorType(ir.IntType(64), _LANES)
    return builder.icmp_signed("<", ir.Constant(ty, list(range(_LANES))), _splat(builder, _as_i64(builder, m), ty))


class _Lanes:
    """Masked loads and stores of up to 16 lanes of one element type at ``array.data + index`` (LLVM's
    ``llvm.masked.load`` / ``llvm.masked.store``): lanes past the mask are neither read nor written, so no array
    needs room past its end and no other thread's entries are touched."""

    def __init__(self, builder: ir.IRBuilder, element: ir.Type, mask: ir.Value) -> None:
        self.builder, self.mask = builder, mask
        self.vty = ir.VectorType(element, _LANES)
        name = {"float": "f32", "double": "f64", "i8": "i8"}[str(element)]
        self.align = ir.Constant(ir.IntType(32), {"f32": 4, "f64": 8, "i8": 1}[name])
        ptr, i1s = self.vty.as_pointer(), ir.VectorType(ir.IntType(1), _LANES)
        module = builder.module
        self._load = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.vty, [ptr, self.align.type, i1s, self.vty]), f"llvm.masked.load.v{_LANES}{name}.p0"
        )
        self._store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [self.vty, ptr, self.align.type, i1s]),
            f"llvm.masked.store.v{_LANES}{name}.p0",
        )

    def _at(self, array: Any, index: ir.Value) -> ir.Value:
        return self.builder.bitcast(self.builder.gep(array.data, [_as_i64(self.builder, index)]), self.vty.as_pointer())

    def load(self, array: Any, index: ir.Value) -> ir.Value:
        undefined = ir.Constant(self.vty, ir.Undefined)
        return self.builder.call(self._load, [self._at(array, index), self.align, self.mask, undefined])

    def store(self, value: ir.Value, array: Any, index: ir.Value) -> None:
        self.builder.call(self._store, [value, self._at(array, index), self.align, self.mask])


def _check_cell_arrays(name: str, floats: dict[str, Any], arg: Any = None) -> None:
    """The pooling kernels' typing rule: contiguous 1-D arrays, the floats of one dtype, the argmax uint8."""
    wrong = numba.core.errors.TypingError
    for label, array in {**floats, **({"arg": arg} if arg is not None else {})}.items():
        if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
            raise wrong(f"{name}: {label} must be a contiguous 1-D array, got {array}")
    dtypes = {array.dtype for array in floats.values()}
    if len(dtypes) != 1 or not dtypes <= {types.float32, types.float64}:
        raise wrong(f"{name}: {', '.join(floats)} must share one float dtype, got {', '.join(map(str, dtypes))}")
    if arg is not None and arg.dtype != types.uint8:
        raise wrong(f"{name}: arg must be uint8, got {arg}")


def _cell_positions(builder: ir.IRBuilder, i: ir.Value, n: ir.Value) -> list[ir.Value]:
    """Offsets of a pool cell's four positions (row 0, row 0 + n, row 1, row 1 + n) from i, in argmax order."""
    i, n = _as_i64(builder, i), _as_i64(builder, n)
    shifted = builder.add(i, n)
    return [i, shifted, i, shifted]


@intrinsic
def _cell_max(typingctx, r0, r1, i, n, m, out, o, out_arg, oa):
    """2 x 2 max pooling of m <= 16 channels in vector registers: ``out[o:o + m]`` and ``out_arg[oa:oa + m]`` get
    the maximum and argmax of r0[i + c], r0[i + n + c], r1[i + c], r1[i + n + c] (c < m), in that order, by
    :func:`_max_cell`'s rule (the first maximum wins, NaN wins; the argmax counts 0..3). Nothing else is read or
    written."""
    _check_cell_arrays("_cell_max", {"r0": r0, "r1": r1, "out": out}, out_arg)
    sig = types.void(r0, r1, i, n, m, out, o, out_arg, oa)

    def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
        r0_a, r1_a, out_a, arg_a = (context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 1, 5, 7))
        mask = _lane_mask(builder, args[4])
        floats = _Lanes(builder, context.get_value_type(signature.args[0].dtype), mask)
        codes = _Lanes(builder, ir.IntType(8), mask)
        at = _cell_positions(builder, args[2], args[3])
        best = floats.load(r0_a, at[0])
        arg = ir.Constant(codes.vty, [0] * _LANES)
        for j, rows in ((1, r0_a), (2, r1_a), (3, r1_a)):
            value = floats.load(rows, at[j])
            take = builder.or_(builder.fcmp_ordered(">", value, best), builder.fcmp_unordered("uno", value, value))
            best = builder.select(take, value, best)
            arg = builder.select(take, ir.Constant(codes.vty, [j] * _LANES), arg)
        floats.store(best, out_a, args[6])
        codes.store(arg, arg_a, args[8])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _cell_unpool(typingctx, share, arg, s, r0, r1, i, n, m):
    """The reverse of :func:`_cell_max` for m <= 16 channels: share[s + c] goes to the position arg[s + c] names
    among r0[i + c], r0[i + n + c], r1[i + c], r1[i + n + c], zero to the other three (c < m)."""
    _check_cell_arrays("_cell_unpool", {"share": share, "r0": r0, "r1": r1}, arg)
    sig = types.void(share, arg, s, r0, r1, i, n, m)

    def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
        share_a, arg_a, r0_a, r1_a = (context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 1, 3, 4))
        mask = _lane_mask(builder, args[7])
        fty = context.get_value_type(signature.args[0].dtype)
        floats, codes = _Lanes(builder, fty, mask), _Lanes(builder, ir.IntType(8), mask)
        value, arg = floats.load(share_a, args[2]), codes.load(arg_a, args[2])
        zero = ir.Constant(floats.vty, [ir.Constant(fty, 0.0)] * _LANES)
        at = _cell_positions(builder, args[5], args[6])
        for j, rows in enumerate((r0_a, r0_a, r1_a, r1_a)):
            hit = builder.icmp_unsigned("==", arg, ir.Constant(codes.vty, [j] * _LANES))
            floats.store(builder.select(hit, value, zero), rows, at[j])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _cell_fill(typingctx, src, s, r0, r1, i, n, m):
    """src[s + c] to all four positions of a pool cell: r0[i + c], r0[i + n + c], r1[i + c], r1[i + n + c], c < m
    (m <= 16)."""
    _check_cell_arrays("_cell_fill", {"src": src, "r0": r0, "r1": r1})
    sig = types.void(src, s, r0, r1, i, n, m)

    def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
        src_a, r0_a, r1_a = (context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 2, 3))
        floats = _Lanes(builder, context.get_value_type(signature.args[0].dtype), _lane_mask(builder, args[6]))
        value = floats.load(src_a, args[1])
        at = _cell_positions(builder, args[4], args[5])
        for j, rows in enumerate((r0_a, r0_a, r1_a, r1_a)):
            floats.store(value, rows, at[j])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _group_by_argmax(typingctx, share, arg, s, n, rows, coefs, counts, g0, average):
    """Sort one pool cell's n channels (share[s:s + n], arg[s:s + n]) into groups g0..g0 + 3 by argmax: group
    g0 + j gets the channels whose argmax is j, ascending, in ``rows[(g0 + j) * n:]`` and their shares in
    ``coefs`` at the same places, their number in ``counts[g0 + j]`` (average pooling: every channel in group g0,
    the other three empty). 16 channels a vector compare and a compressing store per group, as
    :func:`_compressing`; a plain loop took 1.8-2.6 us a step of 25 cells x 32 channels, this 0.7-0.8. ``rows``
    (int32) and ``coefs`` are flat (cells * 4 * n), ``counts`` int64."""
    _check_cell_arrays("_group_by_argmax", {"share": share, "coefs": coefs}, arg)
    wrong = numba.core.errors.TypingError
    for label, array, dtype in (("rows", rows, types.int32), ("counts", counts, types.int64)):
        if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C" and array.dtype == dtype):
            raise wrong(f"_group_by_argmax: {label} must be a contiguous 1-D {dtype} array, got {array}")
    sig = types.void(share, arg, s, n, rows, coefs, counts, g0, average)

    def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
        share_a, arg_a, rows_a, coefs_a, counts_a = (
            context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 1, 4, 5, 6)
        )
        i1, i16, i32, i64 = ir.IntType(1), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        fty = context.get_value_type(signature.args[0].dtype)
        vty, ity, bty, mty = (ir.VectorType(t, _LANES) for t in (fty, i32, ir.IntType(8), i1))
        float_name = {"float": "f32", "double": "f64"}[str(fty)]
        store_floats, store_ints = (
            cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [ty, el.as_pointer(), mty]),
                f"llvm.masked.compressstore.v{_LANES}{name}",
            )
            for ty, el, name in ((vty, fty, float_name), (ity, i32, "i32"))
        )
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i16, [i16]), "llvm.ctpop.i16")
        s, n, g0 = (_as_i64(builder, args[k]) for k in (2, 3, 7))
        average = context.cast(builder, args[8], signature.args[8], types.boolean)
        found = [cgutils.alloca_once_value(builder, ir.Constant(i64, 0)) for _ in range(4)]
        n_blocks = builder.udiv(builder.add(n, ir.Constant(i64, _LANES - 1)), ir.Constant(i64, _LANES))
        with cgutils.for_range(builder, n_blocks) as loop:
            c0 = builder.mul(loop.index, ir.Constant(i64, _LANES))
            valid = _lane_mask(builder, builder.sub(n, c0))
            values = _Lanes(builder, fty, valid).load(share_a, builder.add(s, c0))
            codes = _Lanes(builder, ir.IntType(8), valid).load(arg_a, builder.add(s, c0))
            channels = builder.add(_splat(builder, builder.trunc(c0, i32), ity), ir.Constant(ity, list(range(_LANES))))
            for j in range(4):
                hit = builder.and_(valid, builder.icmp_unsigned("==", codes, ir.Constant(bty, [j] * _LANES)))
                hit = builder.select(average, valid if j == 0 else ir.Constant(mty, [0] * _LANES), hit)
                k = builder.load(found[j])
                at = builder.add(builder.mul(builder.add(g0, ir.Constant(i64, j)), n), k)
                builder.call(store_ints, [channels, builder.gep(rows_a.data, [at]), hit])
                builder.call(store_floats, [values, builder.gep(coefs_a.data, [at]), hit])
                count = builder.zext(builder.call(popcount, [builder.bitcast(hit, i16)]), i64)
                builder.store(builder.add(k, count), found[j])
        for j in range(4):
            builder.store(builder.load(found[j]), builder.gep(counts_a.data, [builder.add(g0, ir.Constant(i64, j))]))
        return context.get_dummy_value()

    return sig, codegen


def _compressing(name: str, compare: Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value], doc: str) -> Any:
    """A numba intrinsic ``name(values, threshold, idx) -> n``: the positions i < ``values.size // 16 * 16`` where
    ``compare(values[i], threshold)`` holds, ascending, into ``idx[0:n]`` (int32). Whole blocks of 16 only: the
    caller takes the rest.

    Each block is compared in one vector and its positions stored with a compressing store (AVX-512's
    ``vpcompressd``; LLVM lowers it to plain code elsewhere), so a hit costs no mispredicted branch. Exactly n
    entries of idx are written. ``values`` float32 or float64, fewer than 2**31 of them (the positions are
    int32); both arrays contiguous and 1-D.
    """

    def kernel(typingctx, values, threshold, idx):
        wrong = numba.core.errors.TypingError
        if not (isinstance(values, types.Array) and values.ndim == 1 and values.layout == "C"
                and values.dtype in (types.float32, types.float64)):
            raise wrong(f"{name}: values must be a contiguous 1-D float array, got {values}")
        if not (isinstance(idx, types.Array) and idx.ndim == 1 and idx.layout == "C" and idx.dtype == types.int32):
            raise wrong(f"{name}: idx must be a contiguous 1-D int32 array, got {idx}")
        if not isinstance(threshold, types.Float):
            raise wrong(f"{name}: threshold must be a float (cast to values' dtype), got {threshold}")
        sig = types.int64(values, threshold, idx)

        def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
            values_a = context.make_array(signature.args[0])(context, builder, args[0])
            idx_a = context.make_array(signature.args[2])(context, builder, args[2])
            fty = context.get_value_type(signature.args[0].dtype)
            i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
            vty, ity = ir.VectorType(fty, _LANES), ir.VectorType(i32, _LANES)
            store = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [ity, i32.as_pointer(), ir.VectorType(ir.IntType(1), _LANES)]),
                f"llvm.masked.compressstore.v{_LANES}i32",
            )
            popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i16, [i16]), "llvm.ctpop.i16")
            threshold = context.cast(builder, args[1], signature.args[1], signature.args[0].dtype)
            threshold_v = _splat(builder, threshold, vty)
            lanes = ir.Constant(ity, list(range(_LANES)))
            n_blocks = builder.sdiv(builder.extract_value(values_a.shape, 0), ir.Constant(i64, _LANES))
            count = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
            with cgutils.for_range(builder, n_blocks) as loop:
                base = builder.mul(loop.index, ir.Constant(i64, _LANES))
                block = builder.load(builder.bitcast(builder.gep(values_a.data, [base]), vty.as_pointer()), align=4)
                hits = compare(builder, block, threshold_v)
                n = builder.load(count)
                positions = builder.add(_splat(builder, builder.trunc(base, i32), ity), lanes)
                builder.call(store, [positions, builder.gep(idx_a.data, [n]), hits])
                found = builder.zext(builder.call(popcount, [builder.bitcast(hits, i16)]), i64)
                builder.store(builder.add(n, found), count)
            return builder.load(count)

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc
    return intrinsic(kernel)


_compress_above = _compressing(
    "_compress_above",
    # values - threshold > 0, as snnTorch's Heaviside: subtract, then compare (ordered: NaN is not above)
    lambda builder, block, thr: builder.fcmp_ordered(
        ">", builder.fsub(block, thr), ir.Constant(block.type, [ir.Constant(block.type.element, 0.0)] * _LANES)
    ),
    "Positions where values - threshold > 0 (a layer's spikes); see _compressing.",
)
_compress_nonzero = _compressing(
    "_compress_nonzero",
    lambda builder, block, zero: builder.fcmp_unordered("!=", block, zero),  # NaN is nonzero, as v != 0
    "Positions where values != threshold (pass 0: a frame's events, NaN included); see _compressing.",
)


def _prefetching(write: bool) -> Any:
    """A numba intrinsic ``(array) -> None`` that asks the CPU to bring every 64-byte line of a contiguous 1-D
    ``array`` into its L1 cache (LLVM's ``llvm.prefetch``: ``prefetchw`` to write, ``prefetcht0`` to read). It
    reads and writes nothing.

    The record of one time step (layer 1's membranes: 10.8 KB at the tutorial's size) lies 1.4 MB past the
    previous step's, so each step's rows start cold: the hardware prefetcher learns a stream only after a few
    misses in each 4 KB page. Asked for one step ahead, the lines arrive while the current step computes: on one
    thread, LIF 1 forward took 0.040-0.042 against 0.080-0.088 s of a trained iteration, listing layer 1's spikes
    in backward 0.015 against 0.054-0.066 s.
    """

    def kernel(typingctx, array):
        if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
            raise numba.core.errors.TypingError(f"prefetch: array must be a contiguous 1-D array, got {array}")
        sig = types.void(array)

        def codegen(context, builder, signature, args):  # pragma: no cover - runs at compile time
            a = context.make_array(signature.args[0])(context, builder, args[0])
            i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            prefetch = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            data = builder.bitcast(a.data, i8p)
            n_bytes = builder.mul(builder.extract_value(a.shape, 0), context.get_constant(types.intp, context.get_abi_sizeof(
                context.get_data_type(signature.args[0].dtype))))
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_bytes, ir.Constant(i64, 64)) as (at, _):
                # (address, write, locality 3 = keep in all levels, data cache)
                builder.call(prefetch, [builder.gep(data, [at]), ir.Constant(i32, int(write)), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = "_prefetch_write" if write else "_prefetch_read"
    return intrinsic(kernel)


_prefetch_read, _prefetch_write = _prefetching(False), _prefetching(True)


@_jit
def _lif_step(prev, cur, mem, lif):  # pragma: no cover - compiled
    """One snn.Leaky step for a row of neurons: the new membrane from the previous one and the input current."""
    beta, thr, zero = lif.beta, lif.threshold, lif.zero
    if lif.reset == _SUBTRACT:  # beta * mem + input - reset * threshold
        for i in range(mem.size):
            base = beta * prev[i] + cur[i]
            mem[i] = base - thr if prev[i] - thr > zero else base
    elif lif.reset == _ZERO:  # beta * ((1 - reset) * mem) + input
        for i in range(mem.size):
            mem[i] = beta * (zero if prev[i] - thr > zero else prev[i]) + cur[i]
    else:
        for i in range(mem.size):
            mem[i] = beta * prev[i] + cur[i]


@_jit
def _surrogate_row(mem, g, out, lif):  # pragma: no cover - compiled
    """out = g * dS/dx at x = mem - threshold, as snnTorch's surrogate backward computes it."""
    thr, p0, p1, one, zero = lif.threshold, lif.p0, lif.p1, lif.one, lif.zero
    code = lif.surrogate
    n = mem.size
    if code == _ATAN:  # alpha / 2 / (1 + (pi / 2 * alpha * x) ** 2) * g
        for i in range(n):
            u = p1 * (mem[i] - thr)
            out[i] = p0 / (one + u * u) * g[i]
    elif code == _FAST_SIGMOID:  # g / (slope * |x| + 1) ** 2
        for i in range(n):
            d = p0 * abs(mem[i] - thr) + one
            out[i] = g[i] / (d * d)
    elif code == _SIGMOID:  # g * slope * exp(-slope * x) / (exp(-slope * x) + 1) ** 2
        for i in range(n):
            e = math.exp(-p0 * (mem[i] - thr))
            d = e + one
            out[i] = g[i] * p0 * e / (d * d)
    elif code == _SPIKE_RATE_ESCAPE:  # g * slope * exp(-beta * |x - 1|)
        for i in range(n):
            out[i] = g[i] * p0 * math.exp(p1 * abs(mem[i] - thr - one))
    elif code == _SFS:  # g / (slope * |x| + 1) ** 2 * (x > B)
        for i in range(n):
            x = mem[i] - thr
            d = p0 * abs(x) + one
            out[i] = g[i] / (d * d) * (one if x > p1 else zero)
    elif code == _TRIANGULAR:  # g * threshold, negated where x >= 0
        for i in range(n):
            r = g[i] * p0
            out[i] = -r if mem[i] - thr >= zero else r
    elif code == _STRAIGHT_THROUGH:
        for i in range(n):
            out[i] = g[i]
    else:  # heaviside: g * (x > 0)
        for i in range(n):
            out[i] = g[i] * (one if mem[i] - thr > zero else zero)


@_jit
def _lif_back_step(mem, prev, g_spk, carry, d, s, lif, sums):  # pragma: no cover - compiled
    """Reverse of one snn.Leaky step for a row of neurons.

    On entry ``carry`` is dL/d(this membrane) from later steps, ``g_spk`` dL/d(this step's spikes) (empty: none).
    On return ``d`` is dL/d(input current), ``carry`` dL/d(previous membrane), and ``sums`` (float64) has
    d beta and d threshold added where ``lif`` asks for them; ``s`` is scratch.
    """
    beta, thr, zero = lif.beta, lif.threshold, lif.zero
    if g_spk.size:
        _surrogate_row(mem, g_spk, s, lif)
    else:
        s[:] = zero
    for i in range(d.size):
        d[i] = carry[i] + s[i]
    if lif.want_threshold:
        total = 0.0
        for i in range(d.size):
            total += s[i]
        sums[1] -= total
    if lif.reset == _ZERO:  # mem = beta * (1 - reset) * prev + input
        for i in range(d.size):
            carry[i] = zero if prev[i] - thr > zero else beta * d[i]
        if lif.want_beta:
            total = 0.0
            for i in range(d.size):
                total += zero if prev[i] - thr > zero else d[i] * prev[i]
            sums[0] += total
    else:  # subtract (or none): mem = beta * prev + input - reset * threshold
        for i in range(d.size):
            carry[i] = beta * d[i]
        if lif.want_beta:
            total = 0.0
            for i in range(d.size):
                total += d[i] * prev[i]
            sums[0] += total
        if lif.want_threshold and lif.reset == _SUBTRACT:
            total = 0.0
            for i in range(d.size):
                total += d[i] if prev[i] - thr > zero else zero
            sums[1] -= total


@_jit
def _lif_scan(cur, mem, spk, lif, m0, m1):  # pragma: no cover - compiled
    """snn.Leaky over all time steps for neurons m0..m1 of cur, mem, spk (T, M)."""
    prev = np.zeros(m1 - m0, dtype=mem.dtype)
    for t in range(cur.shape[0]):
        if t > 0:
            prev = mem[t - 1, m0:m1]
        mt = mem[t, m0:m1]
        _lif_step(prev, cur[t, m0:m1], mt, lif)
        st = spk[t, m0:m1]
        for i in range(mt.size):
            st[i] = 1 if mt[i] - lif.threshold > lif.zero else 0


@_jit
def _lif_scan_back(mem, g_spk, g_mem, dcur, lif, m0, m1):  # pragma: no cover - compiled
    """Reverse scan for neurons m0..m1: dcur (T, M), and the float64 sums (d beta, d threshold).

    g_spk, g_mem: (T, M), or (T, 0) where no gradient arrives there.
    """
    size = m1 - m0
    carry = np.zeros(size, dtype=mem.dtype)
    s = np.empty(size, dtype=mem.dtype)
    zeros = np.zeros(size, dtype=mem.dtype)
    sums = np.zeros(2)
    for t in range(mem.shape[0] - 1, -1, -1):
        if g_mem.shape[1]:
            gm = g_mem[t, m0:m1]
            for i in range(size):
                carry[i] += gm[i]
        prev = mem[t - 1, m0:m1] if t > 0 else zeros
        _lif_back_step(mem[t, m0:m1], prev, g_spk[t, m0:m1], carry, dcur[t, m0:m1], s, lif, sums)
    return sums[0], sums[1]


# ----------------------------------------------------------------------------- numba kernels: the other layers


@_inline
def _max_cell(r0, r1, x0, n, out, base, stride, out_arg, arg_base):  # pragma: no cover - compiled
    """One 2 x 2 max-pool cell of n channels into out[base + c * stride] and out_arg[arg_base + c], c < n.

    r0, r1 are the cell's two map rows, flat with channels last (width * n); the cell's left column starts at x0.
    torch's rule: the first maximum wins and NaN wins. The argmax counts 0..3 in row-major order within the cell.
    Written with selects, not branches, so that the channels run in vector registers. Callers choose between this
    and :func:`_average_cell` outside their loop over cells: with both loops behind a branch in one function, conv
    1's pooling took 1.5 times as long (the tutorial's frames, 42 cells a step: 8.3 against 5.4 us).
    Channels last (stride 1) run 16 at a time in masked vector registers (:func:`_cell_max`): numba's loop over
    layer 1's 12 channels ran one channel at a time. The argmax is always channels last: backward reads it a cell
    at a time.
    """
    if stride == 1:
        for c0 in range(0, n, _LANES):
            _cell_max(r0, r1, x0 + c0, n, min(_LANES, n - c0), out, base + c0, out_arg, arg_base + c0)
        return
    for c in range(n):
        i = x0 + c
        best, b, c0, d = r0[i], r0[i + n], r1[i], r1[i + n]
        m = (b > best) | (b != b)
        best = b if m else best
        a = np.uint8(1) if m else np.uint8(0)
        m = (c0 > best) | (c0 != c0)
        best = c0 if m else best
        a = np.uint8(2) if m else a
        m = (d > best) | (d != d)
        best = d if m else best
        a = np.uint8(3) if m else a
        out[base + c * stride] = best
        out_arg[arg_base + c] = a


@_inline
def _average_cell(r0, r1, x0, n, quarter, out, base, stride, out_arg, arg_base):  # pragma: no cover - compiled
    """:func:`_max_cell` for average pooling: summed in torch's order, then times a quarter; the argmax is 0."""
    for c in range(n):
        i = x0 + c
        out[base + c * stride] = (((r0[i] + r0[i + n]) + r1[i]) + r1[i + n]) * quarter
        out_arg[arg_base + c] = 0


@_inline
def _touch(oy0, oy1, ox0, ox1, pw, touched, cells, n_cells):  # pragma: no cover - compiled
    """List the pool cells holding outputs oy0..oy1 x ox0..ox1 (inclusive) that are not listed yet; the new count."""
    for py in range(oy0 >> 1, (oy1 >> 1) + 1):
        for px in range(ox0 >> 1, (ox1 >> 1) + 1):
            if not touched[py, px]:
                touched[py, px] = True
                cells[n_cells] = py * pw + px
                n_cells += 1
    return n_cells


@_inline
def _reach(y, x, k, oh, ow, c):  # pragma: no cover - compiled
    """Where an input at (y, x) lands among a K x K convolution's first oh x ow outputs (those 2 x 2 pooling keeps).

    Kernel rows ky0..ky1 - 1 reach output rows y - ky; in each, kernel columns kx0..kx1 - 1 reach output columns
    x - kx1 + 1 .. x - kx0: one run of ``length`` values (C channels each) from ``out`` in the channels-last map
    row and from ``w`` in the kernel row, whose columns :func:`_conv_rows` stores reversed. Returns
    (ky0, ky1, kx0, kx1, out, w, length); it reaches nothing where ky0 >= ky1 or length <= 0.
    """
    ky0, ky1 = max(0, y - oh + 1), min(k, y + 1)
    kx0, kx1 = max(0, x - ow + 1), min(k, x + 1)
    return ky0, ky1, kx0, kx1, (x - kx1 + 1) * c, (k - kx1) * c, (kx1 - kx0) * c


@_jit
def _events(frame, pos, val):  # pragma: no cover - compiled
    """The nonzero pixels of one frame (Cin, H, W) in (ci, y, x) order: flat positions into pos (int32), values into
    val. Returns their number.

    Blocks of 16 with :func:`_compress_nonzero`, the last few here: a tutorial frame's scan is then about the time
    of reading it (a plain loop took about twice as long, though its branch predicts well).
    """
    flat = frame.reshape(-1)
    n = _compress_nonzero(flat, 0.0, pos)
    for i in range(flat.size - flat.size % _LANES, flat.size):
        if flat[i] != 0:
            pos[n] = i
            n += 1
    for e in range(n):
        val[e] = flat[pos[e]]
    return n


@_inline
def _copy_events(events, t, b, pos, val):  # pragma: no cover - compiled
    """Frame (t, b)'s events from :class:`EventFrames` into pos and val, as :func:`_events` lists them; their number."""
    start, n = events.start[t, b], events.count[t, b]
    for e in range(n):
        pos[e] = events.pos[start + e]
        val[e] = events.val[start + e]
    return n


@_jit
def _spikes(mem, lif, idx):  # pragma: no cover - compiled
    """The positions where mem > threshold (the layer's spikes), ascending, into idx (int32); returns their number.

    Blocks of 16 with :func:`_compress_above` (a step's scan of layer 1 is then bound by reading the membranes;
    the branch per spike of a plain loop cost 2 to 6 times as much in a trained network), the last few here.
    """
    thr, zero = lif.threshold, lif.zero
    n = _compress_above(mem, thr, idx)
    for i in range(mem.size - mem.size % _LANES, mem.size):
        if mem[i] - thr > zero:
            idx[n] = i
            n += 1
    return n


@_jit
def _conv1_pool(pos, val, n_events, conv, pool, shape, conv_map, touched, cells, cur, arg):  # pragma: no cover
    """First convolution + pooling of one frame from its events (pos, val from :func:`_events`).

    Each event adds its kernel into ``conv_map`` (2 P1, 2 P1 * C1: rows, channels last), which holds the bias
    between calls. conv.weight is (Cin, K, K * C1) with each kernel row's columns reversed, so that what one event
    adds to one map row is a single contiguous run (the event at column x reaches columns x - K + 1 .. x). Only the
    pool cells an event reaches are pooled, into cur and arg (cell-major, channels last) at those cells. Returns
    the number of such cells, listed in ``cells``; every other entry of cur and arg is left as it was (the caller
    keeps the pooled bias in cur; backward reads arg only where events reach). ``touched`` (all False between
    calls) is scratch.
    """
    k, c1, pw1, width = shape.k, shape.c1, shape.pw1, shape.width
    oh1, ow1 = 2 * shape.ph1, 2 * pw1
    plane = shape.height * width
    n_cells = 0
    for e in range(n_events):
        p = pos[e]
        v = val[e]
        ci = p // plane
        y = (p - ci * plane) // width
        x = p - ci * plane - y * width
        ky0, ky1, kx0, kx1, out0, w0, length = _reach(y, x, k, oh1, ow1, c1)
        if ky0 >= ky1 or length <= 0:
            continue
        for ky in range(ky0, ky1):
            dst = conv_map[y - ky, out0 : out0 + length]
            src = conv.weight[ci, ky, w0 : w0 + length]
            for j in range(length):
                dst[j] += v * src[j]
        n_cells = _touch(y - ky1 + 1, y - ky0, x - kx1 + 1, x - kx0, pw1, touched, cells, n_cells)
    if pool.average:  # two loops, not a branch in one: see _max_cell
        for i in range(n_cells):
            py, px = cells[i] // pw1, cells[i] % pw1
            r0, r1 = conv_map[2 * py], conv_map[2 * py + 1]
            _average_cell(r0, r1, 2 * px * c1, c1, pool.quarter, cur, cells[i] * c1, 1, arg, cells[i] * c1)
    else:
        for i in range(n_cells):
            py, px = cells[i] // pw1, cells[i] % pw1
            r0, r1 = conv_map[2 * py], conv_map[2 * py + 1]
            _max_cell(r0, r1, 2 * px * c1, c1, cur, cells[i] * c1, 1, arg, cells[i] * c1)
    for i in range(n_cells):
        cell = cells[i]
        py, px = cell // pw1, cell % pw1
        touched[py, px] = False
        for c0 in range(0, c1, _LANES):
            _cell_fill(conv.bias, c0, conv_map[2 * py], conv_map[2 * py + 1], 2 * px * c1 + c0, c1, min(_LANES, c1 - c0))
    return n_cells


@_jit
def _conv2_pool(spikes, n_spikes, conv, pool, shape, conv_map, pooled, rest, cur, arg):  # pragma: no cover - compiled
    """Second convolution + pooling on the spikes of layer 1 (positions from :func:`_spikes`): each adds a kernel
    column.

    conv.weight is (C1, K, K * C2), kernel rows reversed as in :func:`_conv1_pool`; conv_map (2 P2, 2 P2 * C2)
    and pooled (P2 * P2 * C2) are scratch. Writes cur channels first (C2 * P2 * P2), as the linear layer reads it,
    and arg cell-major (P2 * P2 * C2), as backward reads it. The cells are pooled channels last, in vector registers
    (:func:`_max_cell`), then turned channels first (a step with 10 spikes: 1.6 against 2.5 us pooling channels
    first, one channel at a time). Without spikes every pooled value is ``rest`` (the pooled bias, channels first)
    and every argmax 0, which is what pooling the bias gives.
    """
    k, c1, c2, pw1, ph2, pw2 = shape.k, shape.c1, shape.c2, shape.pw1, shape.ph2, shape.pw2
    oh2, ow2 = 2 * ph2, 2 * pw2
    cells2 = ph2 * pw2
    if n_spikes == 0:
        for i in range(cur.size):
            cur[i] = rest[i]
            arg[i] = 0
        return
    for oy in range(oh2):
        row = conv_map[oy]
        for ox in range(ow2):
            for c in range(c2):
                row[ox * c2 + c] = conv.bias[c]
    for s in range(n_spikes):  # ascending (y, x, ci): the summation order of a dense scan
        i = spikes[s]
        cell = i // c1
        ci = i - cell * c1
        y, x = cell // pw1, cell % pw1
        ky0, ky1, _, _, out0, w0, length = _reach(y, x, k, oh2, ow2, c2)
        if ky0 >= ky1 or length <= 0:
            continue
        for ky in range(ky0, ky1):
            dst = conv_map[y - ky, out0 : out0 + length]
            src = conv.weight[ci, ky, w0 : w0 + length]
            for j in range(length):
                dst[j] += src[j]
    if pool.average:  # two loops, not a branch in one: see _max_cell
        for cell in range(cells2):
            py, px = cell // pw2, cell % pw2
            r0, r1 = conv_map[2 * py], conv_map[2 * py + 1]
            _average_cell(r0, r1, 2 * px * c2, c2, pool.quarter, pooled, cell * c2, 1, arg, cell * c2)
    else:
        for cell in range(cells2):
            py, px = cell // pw2, cell % pw2
            _max_cell(conv_map[2 * py], conv_map[2 * py + 1], 2 * px * c2, c2, pooled, cell * c2, 1, arg, cell * c2)
    for cell in range(cells2):
        for c in range(c2):
            cur[c * cells2 + cell] = pooled[cell * c2 + c]


@_jit
def _linear(spikes, n_spikes, fc, out):  # pragma: no cover - compiled
    """The linear layer on the spikes of layer 2: out = bias + the weight rows of the spiking neurons, ascending."""
    for kk in range(out.size):
        out[kk] = fc.bias[kk]
    for s in range(n_spikes):
        wr = fc.weight[spikes[s]]
        for kk in range(out.size):
            out[kk] += wr[kk]


@_jit
def _linear_back(spikes, n_spikes, weight, dout, rows, dests, g2, dweight):  # pragma: no cover - compiled
    """The linear layer in reverse: g2 = dL/d(spikes of layer 2); dweight (n2, classes) gathers dout at the spikes.

    weight (classes, n2 rounded up to ROW_BLOCK, zero-padded) and g2 (as long) give ``dout @ weight`` a block of
    columns at a time in vector registers (:func:`_weighted_rows_kernel`; numba's loop over the classes read and
    wrote g2 once per class). rows holds 0..classes-1 (int32); dests (1) is scratch.
    """
    n = g2.size
    for j in range(n):
        g2[j] = 0
    n_out = dout.size
    col = 0
    wide = _MANY_KERNEL_ROWS * ROW_BLOCK
    while _MANY_KERNEL_ROWS > 1 and col + wide <= n:
        dests[0] = col
        _add_many_weighted_rows(g2, dests, 1, weight, rows, dout, n_out, col, ROW_BLOCK, ROW_BLOCK, ROW_BLOCK)
        col += wide
    while col < n:
        dests[0] = col
        _add_weighted_rows(g2, dests, 1, weight, rows, dout, n_out, col, ROW_BLOCK, ROW_BLOCK, ROW_BLOCK)
        col += ROW_BLOCK
    for s in range(n_spikes):
        row = dweight[spikes[s]]
        for kk in range(n_out):
            row[kk] += dout[kk]


@_jit
def _unpool_channels_first(d2, pool, shape, share):  # pragma: no cover - compiled
    """Pooled gradient of layer 2 (C2 * P2 * P2) to what each pooled position receives, cell-major (cells, C2): the
    whole gradient (max: at the argmax, which forward stores cell-major) or a quarter of it (average: at all four).
    """
    cells2, c2 = shape.ph2 * shape.pw2, shape.c2
    if pool.average:  # two loops, not a branch in one
        for cell in range(cells2):
            for c in range(c2):
                share[cell, c] = d2[c * cells2 + cell] * pool.quarter
    else:  # cells outer, floats only: 250 ns a step (channels outer, the argmax alongside: 1000)
        for cell in range(cells2):
            for c in range(c2):
                share[cell, c] = d2[c * cells2 + cell]


@_jit
def _unpool_channels_last(d1, pool, share):  # pragma: no cover - compiled
    """Pooled gradient of layer 1 to what each pooled position receives: d1 itself (max) or a quarter (average)."""
    if not pool.average:
        return d1
    for i in range(d1.size):
        share[i] = d1[i] * pool.quarter
    return share


@_jit
def _conv2_back_input(share, arg, weight, pool, shape, g1, rows, coefs, counts, dests):  # pragma: no cover
    """dL/d(spikes of layer 1) into g1 (P1 * P1 * C1, then ROW_BLOCK elements of room) from conv 2's pooled positions.

    share (cells, C2) from :func:`_unpool_channels_first`, arg (cells, C2) as forward keeps it; weight (C2, K * R):
    for each kernel row ky its K * C1 values in [kx][ci] order, zero-padded to R (a multiple of ROW_BLOCK); faster
    where it starts on a cache line (:func:`_zeros_on_lines`). The channels of one cell are grouped by argmax first
    (:func:`_group_by_argmax`; average: one group, added at all four positions), so a group adds one K x K x C1
    patch: its weighted sum of weight rows, a block at a time in vector registers, five kernel rows a call where
    the CPU has the registers (:func:`_weighted_rows_kernel`; the rest one row a call). rows (cells * 4, C2) int32, coefs
    (cells * 4, C2), counts (cells * 4) and dests (4) are scratch. This is backward's one dense part: a transposed
    convolution.
    """
    k, c1, c2, pw1, pw2 = shape.k, shape.c1, shape.c2, shape.pw1, shape.pw2
    cells = shape.ph2 * pw2
    kc = k * c1
    row = weight.shape[1] // k
    flat_share, flat_arg = share.reshape(share.size), arg.reshape(arg.size)
    flat_rows, flat_coefs = rows.reshape(rows.size), coefs.reshape(coefs.size)
    for cell in range(cells):
        _group_by_argmax(flat_share, flat_arg, cell * c2, c2, flat_rows, flat_coefs, counts, cell * 4, pool.average)
    for i in range(g1.size):
        g1[i] = pool.zero
    map_row = pw1 * c1  # g1's step from one kernel row's destination to the next
    ky = 0
    while ky < k:
        many = _MANY_KERNEL_ROWS > 1 and k - ky >= _MANY_KERNEL_ROWS
        for col in range(0, kc, ROW_BLOCK):
            n_valid = min(ROW_BLOCK, kc - col)
            start = ky * row + col
            for cell in range(cells):
                py, px = cell // pw2, cell % pw2
                for j in range(4):
                    g = cell * 4 + j
                    if counts[g] == 0:
                        continue
                    n_dests = 0
                    for jj in range(4) if pool.average else range(j, j + 1):
                        oy, ox = 2 * py + (jj >> 1), 2 * px + (jj & 1)
                        dests[n_dests] = ((oy + ky) * pw1 + ox) * c1 + col
                        n_dests += 1
                    if many:
                        _add_many_weighted_rows(
                            g1, dests, n_dests, weight, rows[g], coefs[g], counts[g], start, n_valid, row, map_row
                        )
                    else:
                        _add_weighted_rows(
                            g1, dests, n_dests, weight, rows[g], coefs[g], counts[g], start, n_valid, row, map_row
                        )
        ky += _MANY_KERNEL_ROWS if many else 1


@_jit
def _conv2_back_weight(spikes, n_spikes, share, arg, pool, shape, share_map, dweight):  # pragma: no cover - compiled
    """Conv 2's weight gradient (C1, K, K * C2; kernel rows reversed as forward's), gathered at the spikes of
    layer 1 from the pooled positions' share.

    share (cells, C2) from :func:`_unpool_channels_first`, arg (cells, C2) as forward keeps it. share_map (2 P2,
    2 P2 * C2, scratch) is filled with what each conv 2 output receives (:func:`_unpool_map`), so that a spike's gradient for one kernel row is
    one contiguous run, as in forward; up to ``_FEW_SPIKES`` spikes gather from share directly, which costs less
    than filling the map. The two give the same sums in the same order.
    """
    if n_spikes <= _FEW_SPIKES:
        _conv2_back_weight_sparse(spikes, n_spikes, share, arg, pool, shape, dweight)
        return
    _unpool_map(share, arg, pool, shape.pw2, share_map)
    k, c1, c2, pw1 = shape.k, shape.c1, shape.c2, shape.pw1
    oh2, ow2 = 2 * shape.ph2, 2 * shape.pw2
    for s in range(n_spikes):
        i = spikes[s]
        cell1 = i // c1
        ci = i - cell1 * c1
        y, x = cell1 // pw1, cell1 % pw1
        ky0, ky1, _, _, out0, w0, length = _reach(y, x, k, oh2, ow2, c2)
        if ky0 >= ky1 or length <= 0:
            continue
        for ky in range(ky0, ky1):
            src = share_map[y - ky, out0 : out0 + length]
            dst = dweight[ci, ky, w0 : w0 + length]
            for j in range(length):
                dst[j] += src[j]


@_jit
def _unpool_map(share, arg, pool, pw, share_map):  # pragma: no cover - compiled
    """What every conv output receives (:func:`_unpool_cell` at every cell), into share_map (2 P, 2 pw * C: rows,
    channels last), from the pooled positions' share and argmax (cells, C), cells row-major with pw to a row."""
    n = share.shape[1]
    flat_share, flat_arg = share.reshape(share.size), arg.reshape(arg.size)
    for cell in range(share.shape[0]):
        py, px = cell // pw, cell % pw
        _unpool_cell(flat_share, flat_arg, cell * n, n, pool, share_map[2 * py], share_map[2 * py + 1], 2 * px * n)


@_jit
def _conv2_back_weight_sparse(spikes, n_spikes, share, arg, pool, shape, dweight):  # pragma: no cover - compiled
    """:func:`_conv2_back_weight` for a few spikes: each kernel position gathers its pool cell's share directly."""
    k, c1, c2, pw1, pw2 = shape.k, shape.c1, shape.c2, shape.pw1, shape.pw2
    oh2, ow2 = 2 * shape.ph2, 2 * pw2
    zero = pool.zero
    for s in range(n_spikes):
        i = spikes[s]
        cell1 = i // c1
        ci = i - cell1 * c1
        y, x = cell1 // pw1, cell1 % pw1
        ky0, ky1, kx0, kx1, _, _, _ = _reach(y, x, k, oh2, ow2, c2)
        for ky in range(ky0, ky1):
            oy = y - ky
            drow = dweight[ci, ky]
            for kx in range(kx0, kx1):
                ox = x - kx
                cell = (oy >> 1) * pw2 + (ox >> 1)
                dst = drow[(k - 1 - kx) * c2 :]
                dl = share[cell]
                if pool.average:
                    for c in range(c2):
                        dst[c] += dl[c]
                else:
                    j = (oy & 1) * 2 + (ox & 1)
                    al = arg[cell]
                    for c in range(c2):
                        dst[c] += dl[c] if al[c] == j else zero


@_inline
def _unpool_cell(share, arg, base, n, pool, r0, r1, x0):  # pragma: no cover - compiled
    """What the four positions of one pool cell receive, n channels, into map rows r0, r1 from column x0 on.

    Max: the cell's share (share[base:base + n]) at its argmax, zero at the other three; average: the share at all
    four (it is already a quarter of the pooled gradient). 16 channels at a time in masked vector registers
    (:func:`_cell_unpool`, :func:`_cell_fill`).
    """
    for c0 in range(0, n, _LANES):
        m = min(_LANES, n - c0)
        if pool.average:
            _cell_fill(share, base + c0, r0, r1, x0 + c0, n, m)
        else:
            _cell_unpool(share, arg, base + c0, r0, r1, x0 + c0, n, m)


@_jit
def _conv1_back_weight(  # pragma: no cover - compiled
    pos, val, n_events, share, arg, pool, shape, share_map, touched, cells, dweight
):
    """Conv 1's weight gradient (Cin, K, K * C1; kernel rows reversed as forward's), gathered at the frame's events
    from the pooled positions' share.

    share and arg are cell-major with channels last; arg holds the argmax at every cell an event reaches, from
    :func:`_conv1_pool`. share_map (2 P1, 2 P1 * C1) is scratch, filled (:func:`_unpool_cell`) at those cells
    only, the only ones the events read; touched (all False between calls) and cells are scratch too.
    """
    k, c1, pw1, width = shape.k, shape.c1, shape.pw1, shape.width
    oh1, ow1 = 2 * shape.ph1, 2 * pw1
    plane = shape.height * width
    n_cells = 0
    for e in range(n_events):
        p = pos[e]
        ci = p // plane
        y = (p - ci * plane) // width
        x = p - ci * plane - y * width
        ky0, ky1, kx0, kx1, _, _, length = _reach(y, x, k, oh1, ow1, c1)
        if ky0 < ky1 and length > 0:
            n_cells = _touch(y - ky1 + 1, y - ky0, x - kx1 + 1, x - kx0, pw1, touched, cells, n_cells)
    for i in range(n_cells):
        cell = cells[i]
        py, px = cell // pw1, cell % pw1
        touched[py, px] = False
        _unpool_cell(share, arg, cell * c1, c1, pool, share_map[2 * py], share_map[2 * py + 1], 2 * px * c1)
    for e in range(n_events):
        p = pos[e]
        v = val[e]
        ci = p // plane
        y = (p - ci * plane) // width
        x = p - ci * plane - y * width
        ky0, ky1, _, _, out0, w0, length = _reach(y, x, k, oh1, ow1, c1)
        if ky0 >= ky1 or length <= 0:
            continue
        for ky in range(ky0, ky1):
            src = share_map[y - ky, out0 : out0 + length]
            dst = dweight[ci, ky, w0 : w0 + length]
            for j in range(length):
                dst[j] += v * src[j]


@_jit
def _channel_sums(d, n_channels, channels_last, out):  # pragma: no cover - compiled
    """out[c] += the sum of d over the cells of channel c (a bias gradient); d is (cells, C) or (C, cells)."""
    cells = d.size // n_channels
    if channels_last:
        for i in range(cells):
            row = d[i * n_channels :]
            for c in range(n_channels):
                out[c] += row[c]
    else:
        for c in range(n_channels):
            part = d[c * cells :]
            total = 0.0
            for i in range(cells):
                total += part[i]
            out[c] += total


# ----------------------------------------------------------------------------- numba kernels: the network


@_jit
def _pooled_bias(bias, pool, conv_map):  # pragma: no cover - compiled
    """Fill conv_map (rows, columns * C, channels last) with the bias; return what a pool cell of bias alone holds,
    per channel."""
    n = bias.size
    for oy in range(conv_map.shape[0]):
        for i in range(conv_map.shape[1]):
            conv_map[oy, i] = bias[i % n]
    rest = np.empty(n, dtype=conv_map.dtype)
    arg = np.empty(n, dtype=np.uint8)
    if pool.average:
        _average_cell(conv_map[0], conv_map[1], 0, n, pool.quarter, rest, 0, 1, arg, 0)
    else:
        _max_cell(conv_map[0], conv_map[1], 0, n, rest, 0, 1, arg, 0)
    return rest


@_jit
def _net_forward(frames, events, net, shape, rec, cur3, b_lo, b_hi):  # pragma: no cover - compiled
    """Samples b_lo..b_hi over all time steps: conv1 + pool -> LIF1 -> conv2 + pool -> LIF2 -> linear -> cur3.

    Each frame's events come from ``events`` where it holds any (:class:`EventFrames`), else from a scan of the
    dense ``frames``.
    """
    dtype = rec.mem1.dtype
    n1, n2 = rec.mem1.shape[2], rec.mem2.shape[2]
    c1, c2, cells2 = shape.c1, shape.c2, shape.ph2 * shape.pw2
    conv_map1 = np.empty((2 * shape.ph1, 2 * shape.pw1 * c1), dtype=dtype)
    rest1 = _pooled_bias(net.conv1.bias, net.pool, conv_map1)
    bias_rest2 = _pooled_bias(net.conv2.bias, net.pool, np.empty((2, 2 * c2), dtype=dtype))
    rest2 = np.empty(n2, dtype=dtype)  # what layer 2's pooled current is when layer 1 does not spike
    for c in range(c2):
        rest2[c * cells2 : (c + 1) * cells2] = bias_rest2[c]
    touched = np.zeros((shape.ph1, shape.pw1), dtype=np.bool_)
    cells = np.empty(shape.ph1 * shape.pw1, dtype=np.int64)
    conv_map2 = np.empty((2 * shape.ph2, 2 * shape.pw2 * c2), dtype=dtype)
    n_pixels = shape.cin * shape.height * shape.width
    pos = np.empty(n_pixels, dtype=np.int32)
    val = np.empty(n_pixels, dtype=dtype)
    cur1 = np.empty(n1, dtype=dtype)  # the pooled bias everywhere except, during a step, where events reach
    for i in range(n1 // c1):
        cur1[i * c1 : (i + 1) * c1] = rest1
    cur2, pooled2 = np.empty(n2, dtype=dtype), np.empty(n2, dtype=dtype)
    spikes1 = np.empty(n1, dtype=np.int32)
    spikes2 = np.empty(n2, dtype=np.int32)
    zeros1 = np.zeros(n1, dtype=dtype)
    zeros2 = np.zeros(n2, dtype=dtype)
    listed = events.count.shape[0] > 0
    n_steps = rec.mem1.shape[0]
    for b in range(b_lo, b_hi):
        for t in range(n_steps):
            if t + 1 < n_steps:  # the next step's record rows, while this one computes
                _prefetch_write(rec.mem1[t + 1, b])
                _prefetch_write(rec.mem2[t + 1, b])
                _prefetch_write(rec.arg2[t + 1, b])
            if listed:  # backward reads them from events again
                n_events = _copy_events(events, t, b, pos, val)
            else:
                n_events = _events(frames[t, b], pos, val)
                if n_events <= EVENT_ROOM:
                    rec.event_pos[t, b, :n_events] = pos[:n_events]
                    rec.event_val[t, b, :n_events] = val[:n_events]
                    rec.n_events[t, b] = n_events
                else:
                    rec.n_events[t, b] = -1
            n_cells = _conv1_pool(
                pos, val, n_events, net.conv1, net.pool, shape, conv_map1, touched, cells, cur1, rec.arg1[t, b]
            )
            mem1 = rec.mem1[t, b]
            _lif_step(rec.mem1[t - 1, b] if t > 0 else zeros1, cur1, mem1, net.lif1)
            for i in range(n_cells):
                cur1[cells[i] * c1 : (cells[i] + 1) * c1] = rest1
            n_spikes1 = _spikes(mem1, net.lif1, spikes1)
            _conv2_pool(spikes1, n_spikes1, net.conv2, net.pool, shape, conv_map2, pooled2, rest2, cur2, rec.arg2[t, b])
            mem2 = rec.mem2[t, b]
            _lif_step(rec.mem2[t - 1, b] if t > 0 else zeros2, cur2, mem2, net.lif2)
            n_spikes2 = _spikes(mem2, net.lif2, spikes2)
            _linear(spikes2, n_spikes2, net.fc, cur3[t, b])


@_jit
def _net_backward(frames, events, net, shape, rec, dcur3, grads, b_lo, b_hi):  # pragma: no cover - compiled
    """Reverse time for samples b_lo..b_hi: adds the parameter gradients to ``grads`` (float64)."""
    dtype = rec.mem1.dtype
    n1, n2 = rec.mem1.shape[2], rec.mem2.shape[2]
    cells2 = shape.ph2 * shape.pw2
    zero = net.lif1.zero
    zeros1, zeros2 = np.zeros(n1, dtype=dtype), np.zeros(n2, dtype=dtype)
    carry1, carry2 = np.empty(n1, dtype=dtype), np.empty(n2, dtype=dtype)
    s1, s2 = np.empty(n1, dtype=dtype), np.empty(n2, dtype=dtype)
    g1_room = np.empty(n1 + ROW_BLOCK, dtype=dtype)  # _conv2_back_input writes past the end (values unchanged)
    g2_room = np.empty(net.fc_weight.shape[1], dtype=dtype)  # n2 rounded up to ROW_BLOCK: see _linear_back
    g1, g2 = g1_room[:n1], g2_room[:n2]
    classes = np.arange(net.fc_weight.shape[0], dtype=np.int32)
    bias1, bias2 = np.zeros(n1), np.zeros(n2)  # float64 sums over time of d1, d2: the bias gradients per neuron
    d1, d2 = np.empty(n1, dtype=dtype), np.empty(n2, dtype=dtype)
    share1 = np.empty(n1, dtype=dtype)
    share2 = np.empty((cells2, shape.c2), dtype=dtype)
    rows = np.empty((cells2 * 4, shape.c2), dtype=np.int32)
    coefs = np.empty((cells2 * 4, shape.c2), dtype=dtype)
    counts = np.empty(cells2 * 4, dtype=np.int64)
    dests = np.empty(4, dtype=np.int64)
    n_pixels = shape.cin * shape.height * shape.width
    pos = np.empty(n_pixels, dtype=np.int32)
    val = np.empty(n_pixels, dtype=dtype)
    spikes1 = np.empty(n1, dtype=np.int32)
    spikes2 = np.empty(n2, dtype=np.int32)
    share_map1 = np.empty((2 * shape.ph1, 2 * shape.pw1 * shape.c1), dtype=dtype)
    share_map2 = np.empty((2 * shape.ph2, 2 * shape.pw2 * shape.c2), dtype=dtype)
    touched = np.zeros((shape.ph1, shape.pw1), dtype=np.bool_)
    cells = np.empty(shape.ph1 * shape.pw1, dtype=np.int64)
    listed = events.count.shape[0] > 0
    for b in range(b_lo, b_hi):
        carry1[:] = zero
        carry2[:] = zero
        for t in range(rec.mem1.shape[0] - 1, -1, -1):
            if t > 1:  # the rows the next step reads first (this one's previous membranes are read now)
                _prefetch_read(rec.mem1[t - 2, b])
                _prefetch_read(rec.mem2[t - 2, b])
            if t > 0:
                _prefetch_read(rec.arg2[t - 1, b])
            mem1, mem2 = rec.mem1[t, b], rec.mem2[t, b]
            n_spikes2 = _spikes(mem2, net.lif2, spikes2)
            _linear_back(spikes2, n_spikes2, net.fc_weight, dcur3[t, b], classes, dests, g2_room, grads.fc_weight)
            _lif_back_step(mem2, rec.mem2[t - 1, b] if t > 0 else zeros2, g2, carry2, d2, s2, net.lif2, grads.lif2)
            for i in range(n2):
                bias2[i] += d2[i]
            _unpool_channels_first(d2, net.pool, shape, share2)
            arg2_cells = rec.arg2[t, b].reshape((cells2, shape.c2))
            _conv2_back_input(
                share2, arg2_cells, net.conv2_weight, net.pool, shape, g1_room, rows, coefs, counts, dests
            )
            n_spikes1 = _spikes(mem1, net.lif1, spikes1)
            _conv2_back_weight(spikes1, n_spikes1, share2, arg2_cells, net.pool, shape, share_map2, grads.conv2_weight)
            _lif_back_step(mem1, rec.mem1[t - 1, b] if t > 0 else zeros1, g1, carry1, d1, s1, net.lif1, grads.lif1)
            for i in range(n1):
                bias1[i] += d1[i]
            share = _unpool_channels_last(d1, net.pool, share1)
            n_events = _copy_events(events, t, b, pos, val) if listed else rec.n_events[t, b]
            if listed:
                ev_pos, ev_val = pos, val
            elif n_events >= 0:  # the list forward kept: the frame itself is not read again
                ev_pos, ev_val = rec.event_pos[t, b], rec.event_val[t, b]
            else:
                n_events = _events(frames[t, b], pos, val)
                ev_pos, ev_val = pos, val
            _conv1_back_weight(
                ev_pos, ev_val, n_events, share, rec.arg1[t, b], net.pool, shape, share_map1, touched, cells,
                grads.conv1_weight,
            )
    _channel_sums(bias1, shape.c1, True, grads.conv1_bias)
    _channel_sums(bias2, shape.c2, False, grads.conv2_bias)


# ----------------------------------------------------------------------------- autograd Functions


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _zeros_on_lines(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeros whose data starts on a 64-byte boundary. numpy starts a buffer on any multiple of 16 bytes; a
    16-float vector load from a row that does not start on a cache line reads two lines, and
    :func:`_add_weighted_rows` then ran at 1.6-2.0 instead of 3.0-3.7 G vector multiply-adds a second."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.zeros(size + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size].view(dtype).reshape(shape)


def _padded_last_axis(w: np.ndarray) -> np.ndarray:
    """``w`` with its last axis zero-padded to a multiple of ROW_BLOCK, starting on a cache line: a weight as
    :func:`_weighted_rows_kernel` reads it."""
    padded = _zeros_on_lines((*w.shape[:-1], -(-w.shape[-1] // ROW_BLOCK) * ROW_BLOCK), w.dtype)
    padded[..., : w.shape[-1]] = w
    return padded


def _conv_rows(w: torch.Tensor) -> np.ndarray:
    """A convolution weight (Cout, Cin, K, K) in the kernels' layout: (Cin, K, K * Cout), each kernel row's columns
    reversed, channels last."""
    cout, cin, k, _ = w.shape
    return _np(w.detach().permute(1, 2, 3, 0).flip(2).reshape(cin, k, k * cout))


def _from_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """A gradient in the kernels' layout (Cin, K, K * Cout, columns reversed) as torch's (Cout, Cin, K, K)."""
    cin = rows.shape[0]
    return np.ascontiguousarray(rows.reshape(cin, k, k, -1)[:, :, ::-1].transpose(3, 0, 1, 2))


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == torch.float32 else np.dtype(np.float64)


def _lif(
    beta: torch.Tensor, threshold: torch.Tensor, spec: NeuronSpec, dtype: torch.dtype,
    want_beta: bool = False, want_threshold: bool = False,
) -> _Lif:
    """A LIF layer's constants for the kernels, each rounded to the data's dtype as torch would."""
    scalar = _np_dtype(dtype).type
    beta_c = float(beta.detach().to(dtype).clamp(0, 1))
    p0, p1 = spec.surrogate_params()
    return _Lif(
        scalar(beta_c), scalar(float(threshold.detach().to(dtype))), scalar(0.0), scalar(1.0), scalar(p0), scalar(p1),
        RESET_MECHANISMS.index(spec.reset_mechanism), list(SURROGATES).index(spec.surrogate),
        bool(want_beta), bool(want_threshold),
    )


def _pool(kind: str, dtype: torch.dtype) -> _Pool:
    scalar = _np_dtype(dtype).type
    return _Pool(kind == "avg", scalar(0.25), scalar(0.0))


def _shape(frames_shape: torch.Size, w1: torch.Tensor, w2: torch.Tensor, n_out: int) -> _Shape:
    _, _, cin, height, width = frames_shape
    c1, k, c2 = w1.shape[0], w1.shape[2], w2.shape[0]
    ph1, pw1 = (height - k + 1) // 2, (width - k + 1) // 2
    return _Shape(k, cin, height, width, c1, ph1, pw1, c2, (ph1 - k + 1) // 2, (pw1 - k + 1) // 2, n_out)


def _beta_grad(total: float, beta: torch.Tensor) -> torch.Tensor:
    """d loss / d beta through ``beta.clamp(0, 1)``, which passes gradient strictly inside (0, 1)."""
    b = float(beta.detach())
    return torch.tensor(total if 0.0 < b < 1.0 else 0.0, dtype=beta.dtype).reshape(beta.shape)


def _scalar_grad(total: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(total, dtype=like.dtype).reshape(like.shape)


class LIFScan(torch.autograd.Function):
    """``snn.Leaky`` over all time steps: input current ``(T, ...)`` -> spikes, membrane ``(T, ...)``."""

    @staticmethod
    def forward(
        ctx: Any, cur: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, spec: NeuronSpec
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = cur.dtype
        n_steps = cur.shape[0]
        lif = _lif(beta, threshold, spec, dtype)
        c = _np(cur).reshape(n_steps, -1)
        mem = torch.empty(cur.shape, dtype=dtype)
        spk8 = torch.empty(cur.shape, dtype=torch.uint8)
        mv, sv = mem.numpy().reshape(n_steps, -1), spk8.numpy().reshape(n_steps, -1)
        _parallel(lambda m0, m1: _lif_scan(c, mv, sv, lif, m0, m1), c.shape[1], 4096)
        ctx.save_for_backward(mem, beta, threshold)
        ctx.spec = spec
        ctx.set_materialize_grads(False)
        return spk8.to(dtype), mem

    @staticmethod
    def backward(
        ctx: Any, g_spk: torch.Tensor | None, g_mem: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        mem, beta, threshold = ctx.saved_tensors
        if g_spk is None and g_mem is None:
            return None, None, None, None
        dtype = mem.dtype
        n_steps = mem.shape[0]
        want_beta, want_thr = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        lif = _lif(beta, threshold, ctx.spec, dtype, want_beta, want_thr)
        m = mem.numpy().reshape(n_steps, -1)
        none = np.zeros((n_steps, 0), dtype=m.dtype)  # no gradient arrives there
        gs = _np(g_spk.to(dtype)).reshape(n_steps, -1) if g_spk is not None else none
        gm = _np(g_mem.to(dtype)).reshape(n_steps, -1) if g_mem is not None else none
        dcur = torch.empty(mem.shape, dtype=dtype)
        dv = dcur.numpy().reshape(n_steps, -1)
        parts = _parallel(lambda m0, m1: _lif_scan_back(m, gs, gm, dv, lif, m0, m1), m.shape[1], 4096)
        d_beta = _beta_grad(sum(p[0] for p in parts), beta) if want_beta else None
        d_thr = _scalar_grad(sum(p[1] for p in parts), threshold) if want_thr else None
        return dcur, d_beta, d_thr, None


class HiddenLayers(torch.autograd.Function):
    """Frames -> input current of the output layer: conv1, pool, LIF1, conv2, pool, LIF2, linear, all time steps."""

    @staticmethod
    def forward(
        ctx: Any,
        frames: torch.Tensor,
        w1: torch.Tensor, b1: torch.Tensor, beta1: torch.Tensor, thr1: torch.Tensor,
        w2: torch.Tensor, b2: torch.Tensor, beta2: torch.Tensor, thr2: torch.Tensor,
        w3: torch.Tensor, b3: torch.Tensor,
        spec: NeuronSpec,
        pool: str,
    ) -> torch.Tensor:
        dtype = w1.dtype
        npd = _np_dtype(dtype)
        listed = frames if isinstance(frames, EventFrames) else None
        n_steps, batch = frames.shape[:2]
        shape = _shape(frames.shape, w1, w2, w3.shape[0])
        if listed is None:
            frames = frames.detach().to(dtype).contiguous()
        else:  # no frames to scan: an empty stand-in of the same kind
            frames = torch.empty((0, 0, *frames.shape[2:]), dtype=dtype)
        events = _events_of(listed, npd)
        rec = _new_record(BUFFERS.take, n_steps, batch, shape, npd)
        net = _Net(
            conv1=_Layer(_conv_rows(w1), _np(b1)),
            lif1=_lif(beta1, thr1, spec, dtype),
            conv2=_Layer(_conv_rows(w2), _np(b2)),
            lif2=_lif(beta2, thr2, spec, dtype),
            fc=_Layer(_np(w3.t()), _np(b3)),
            pool=_pool(pool, dtype),
        )
        cur3 = torch.empty((n_steps, batch, shape.n_out), dtype=dtype)
        x, out = frames.numpy(), cur3.numpy()
        _parallel(lambda lo, hi: _net_forward(x, events, net, shape, rec, out, lo, hi), batch)
        ctx.save_for_backward(frames, w1, w2, w3, beta1, thr1, beta2, thr2, *(torch.from_numpy(a) for a in rec))
        ctx.spec, ctx.pool, ctx.shape, ctx.events, ctx.batch = spec, pool, shape, events, batch
        return cur3

    @staticmethod
    def backward(ctx: Any, dcur3: torch.Tensor) -> tuple[Any, ...]:
        frames, w1, w2, w3, beta1, thr1, beta2, thr2, *saved = ctx.saved_tensors
        spec: NeuronSpec = ctx.spec
        shape: _Shape = ctx.shape
        dtype = w1.dtype
        need = ctx.needs_input_grad
        conv2_weight = _padded_last_axis(_np(w2.permute(0, 2, 3, 1)).reshape(shape.c2, shape.k, shape.k * shape.c1))
        net = _NetBack(
            conv2_weight=conv2_weight.reshape(shape.c2, -1),
            fc_weight=_padded_last_axis(_np(w3)),
            lif1=_lif(beta1, thr1, spec, dtype, need[3], need[4]),
            lif2=_lif(beta2, thr2, spec, dtype, need[7], need[8]),
            pool=_pool(ctx.pool, dtype),
        )
        rec = _Record(*(t.numpy() for t in saved))
        x, g = frames.numpy(), _np(dcur3.to(dtype))

        def part(lo: int, hi: int) -> _Grads:
            grads = _Grads(
                conv1_weight=np.zeros((shape.cin, shape.k, shape.k * shape.c1)), conv1_bias=np.zeros(shape.c1),
                conv2_weight=np.zeros((shape.c1, shape.k, shape.k * shape.c2)), conv2_bias=np.zeros(shape.c2),
                fc_weight=np.zeros((rec.mem2.shape[2], shape.n_out)), lif1=np.zeros(2), lif2=np.zeros(2),
            )
            _net_backward(x, ctx.events, net, shape, rec, g, grads, lo, hi)
            return grads

        grads = _Grads(*(sum(arrays) for arrays in zip(*_parallel(part, ctx.batch))))

        def tensor(array: np.ndarray, *perm: int) -> torch.Tensor:
            t = torch.from_numpy(array)
            return (t.permute(*perm) if perm else t).to(dtype).contiguous()

        return (
            None,
            tensor(_from_rows(grads.conv1_weight, shape.k)), tensor(grads.conv1_bias),
            _beta_grad(grads.lif1[0], beta1) if need[3] else None,
            _scalar_grad(grads.lif1[1], thr1) if need[4] else None,
            tensor(_from_rows(grads.conv2_weight, shape.k)), tensor(grads.conv2_bias),
            _beta_grad(grads.lif2[0], beta2) if need[7] else None,
            _scalar_grad(grads.lif2[1], thr2) if need[8] else None,
            tensor(grads.fc_weight, 1, 0), dcur3.sum((0, 1)),
            None,
            None,
        )


# ----------------------------------------------------------------------------- the network


def _leaky_reason(layer: nn.Module, where: str) -> str | None:
    if type(layer) is not snn.Leaky:
        return f"{where} is {type(layer).__name__}, not snn.Leaky"
    if layer.inhibition or layer.state_quant or layer.surrogate_disable or not layer.reset_delay:
        return f"{where} uses inhibition, state quantisation, surrogate_disable or reset_delay=False"
    if layer.beta.numel() != 1 or layer.threshold.numel() != 1:
        return f"{where} has per-neuron beta or threshold"
    gsf = layer.graded_spikes_factor
    if isinstance(gsf, nn.Parameter) or float(gsf) != 1.0:
        return f"{where} uses graded spikes"
    return None


def _pool_reason(layer: nn.Module, where: str) -> str | None:
    """Why ``layer`` is not plain 2 x 2 pooling of a kind in POOLING (None if it is)."""
    if type(layer) not in POOLING.values():
        return f"{where} is {type(layer).__name__}, not MaxPool2d(2) or AvgPool2d(2)"
    two = (2, (2, 2))
    if layer.kernel_size not in two or layer.stride not in two or layer.padding not in (0, (0, 0)) or layer.ceil_mode:
        return f"{where} is not {type(layer).__name__}(2)"
    if isinstance(layer, nn.MaxPool2d) and (layer.dilation not in (1, (1, 1)) or layer.return_indices):
        return f"{where} is not MaxPool2d(2)"
    if isinstance(layer, nn.AvgPool2d) and layer.divisor_override is not None:
        return f"{where} is not AvgPool2d(2)"
    return None


def pooling_of(net: nn.Sequential) -> str:
    """The pooling the tutorial-shaped ``net`` uses: a key of POOLING."""
    return next(name for name, kind in POOLING.items() if type(net[1]) is kind)


def unsupported_reason(net: nn.Sequential, spec: NeuronSpec) -> str | None:
    """Why the fast engine cannot run this net with these neurons (None if it can)."""
    kinds = [nn.Conv2d, None, snn.Leaky, nn.Conv2d, None, snn.Leaky, nn.Flatten, nn.Linear, snn.Leaky]
    if len(net) != len(kinds) or any(kind and type(layer) is not kind for layer, kind in zip(net, kinds)):
        return "the network is not the tutorial's 9-layer Sequential"
    for i in (0, 3):
        conv = net[i]
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1:
            return f"net.{i} is not a plain stride-1 convolution"
        if conv.bias is None or conv.kernel_size[0] != conv.kernel_size[1] or conv.padding_mode != "zeros":
            return f"net.{i} has no bias or a non-square kernel"
    for i in (1, 4):
        reason = _pool_reason(net[i], f"net.{i}")
        if reason:
            return reason
    if type(net[1]) is not type(net[4]):
        return "net.1 and net.4 pool differently"
    for i in (2, 5, 8):
        reason = _leaky_reason(net[i], f"net.{i}")
        if reason:
            return reason
    if not net[8].output:
        return "net.8 must be an output layer (output=True)"
    if net[0].weight.device.type != "cpu":
        return f"the fast engine runs on the CPU; the model is on {net[0].weight.device}"
    if net[0].weight.dtype not in (torch.float32, torch.float64):
        return f"the fast engine supports float32 and float64, not {net[0].weight.dtype}"
    return None


def unsupported_frames_reason(frames: torch.Tensor | EventFrames) -> str | None:
    """Why the fast engine cannot run on these frames (None if it can)."""
    if isinstance(frames, EventFrames):
        return None
    if frames.device.type != "cpu":
        return f"the fast engine runs on the CPU; frames are on {frames.device}"
    if frames.dtype not in (torch.float32, torch.float64):
        return f"the fast engine supports float32 and float64 frames, not {frames.dtype}"
    if frames.requires_grad:
        return "frames require a gradient, which the event-driven first layer does not compute"
    return None


def fast_forward(
    net: nn.Sequential, spec: NeuronSpec, frames: torch.Tensor | EventFrames
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial network on frames ``(T, B, 2, H, W)`` (or their events): output spikes and membrane
    ``(T, B, output neurons)``."""
    cur3 = HiddenLayers.apply(
        frames,
        net[0].weight, net[0].bias, net[2].beta, net[2].threshold,
        net[3].weight, net[3].bias, net[5].beta, net[5].threshold,
        net[7].weight, net[7].bias,
        spec,
        pooling_of(net),
    )
    return LIFScan.apply(cur3, net[8].beta, net[8].threshold, spec)


class LayerTrace(NamedTuple):
    """Every LIF layer of one sample over time: membranes (float, as the engine computes them) and spikes (bool).

    Hidden layers are channels first, (T, C, P, P); the output layer is (T, classes).
    """

    mem1: np.ndarray
    spk1: np.ndarray
    mem2: np.ndarray
    spk2: np.ndarray
    mem3: np.ndarray
    spk3: np.ndarray


def record_layers(net: nn.Sequential, spec: NeuronSpec, frames: torch.Tensor) -> LayerTrace:
    """The tutorial network on ONE sample's frames ``(T, 2, H, W)``, every layer kept: the layer view's record.

    The same kernels as :func:`fast_forward` (so the same numbers), without autograd or the buffer pool; the
    pooled argmax the kernel writes is dropped on return, and spikes are the membranes above threshold (bool).
    """
    with torch.no_grad():
        w1, b1, w2, b2, w3, b3 = net[0].weight, net[0].bias, net[3].weight, net[3].bias, net[7].weight, net[7].bias
        dtype = w1.dtype
        x = frames.detach().to(dtype).contiguous()[:, None]
        n_steps = x.shape[0]
        shape = _shape(x.shape, w1, w2, w3.shape[0])
        npd = _np_dtype(dtype)
        rec = _new_record(np.empty, n_steps, 1, shape, npd)
        lif1, lif2 = _lif(net[2].beta, net[2].threshold, spec, dtype), _lif(net[5].beta, net[5].threshold, spec, dtype)
        lif3 = _lif(net[8].beta, net[8].threshold, spec, dtype)
        model = _Net(
            conv1=_Layer(_conv_rows(w1), _np(b1)), lif1=lif1,
            conv2=_Layer(_conv_rows(w2), _np(b2)), lif2=lif2,
            fc=_Layer(_np(w3.t()), _np(b3)), pool=_pool(pooling_of(net), dtype),
        )
        cur3 = np.empty((n_steps, 1, shape.n_out), npd)
        _net_forward(x.numpy(), _events_of(None, npd), model, shape, rec, cur3, 0, 1)
    mem3 = np.empty((n_steps, shape.n_out), npd)
    spk3 = np.empty((n_steps, shape.n_out), np.uint8)
    _lif_scan(cur3[:, 0], mem3, spk3, lif3, 0, shape.n_out)
    mem1 = rec.mem1[:, 0].reshape(n_steps, shape.ph1, shape.pw1, shape.c1).transpose(0, 3, 1, 2).copy()
    mem2 = rec.mem2[:, 0].reshape(n_steps, shape.c2, shape.ph2, shape.pw2)
    del rec  # the pooled argmax is backward's, not the view's
    return LayerTrace(
        mem1=mem1, spk1=mem1 - lif1.threshold > lif1.zero,
        mem2=mem2, spk2=mem2 - lif2.threshold > lif2.zero,
        mem3=mem3, spk3=spk3.astype(bool),
    )
