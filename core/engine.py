"""Fast engine for the tutorial's spiking CNN: the same numbers as the step-by-step loop, computed faster.

The tutorial calls ``net(data[step])`` for every time step, and autograd keeps
every intermediate of every step (8 GB for a batch of 128). Here the whole
network runs as one ``torch.autograd.Function`` whose forward and
hand-written backward are numba loops over (sample, time step), split over
threads by sample:

- the first convolution is event-driven: input frames are > 99% zeros, so
  each nonzero pixel scatters its 5 x 5 kernel, and only pool cells that an
  event reaches are pooled (the rest equal the bias); the weight gradient is
  gathered at the same events and pooled argmax positions. No gradient flows
  to the frames.
- the second convolution sees binary spikes: each spike adds one kernel
  column (forward); its weight gradient is gathered at the spikes, and its
  input gradient touches only the pooled argmax positions (25 of 121).
- the linear layer adds the weight rows of the spiking neurons.
- each ``snn.Leaky`` layer is a scan over time with snnTorch's exact
  semantics: the reset comes from the previous membrane (detached), spikes
  from the surrogate's Heaviside forward (mem - threshold > 0), its derivative
  in backward, beta clamped to [0, 1]. The output layer is a separate
  :class:`LIFScan` so its membrane record can carry a gradient too.

Memory: only the membranes of the two hidden layers (float) and the pooled
argmax (uint8) are kept for backward; spikes are recomputed from the
membranes. Large buffers are reused across iterations (a small pool),
because faulting in fresh pages costs about a second per GB on a small VM.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np
import snntorch as snn
import torch
from torch import nn

# Surrogate codes shared with the numba kernels.
_SURROGATE_CODES: dict[str, int] = {
    "atan": 0,
    "fast_sigmoid": 1,
    "sigmoid": 2,
    "spike_rate_escape": 3,
    "SFS": 4,
    "triangular": 5,
    "straight_through_estimator": 6,
    "heaviside": 7,
}
_RESET_CODES: dict[str, int] = {"subtract": 0, "zero": 1, "none": 2}
_SPIKE_RATE_ESCAPE_BETA = 1.0  # snnTorch's default; not exposed by ModelConfig
_SFS_B = 1.0  # snnTorch's default; not exposed by ModelConfig


@dataclass(frozen=True)
class NeuronSpec:
    """What a LIF layer needs besides tensors: reset mechanism and surrogate with its shape parameter."""

    reset_mechanism: str = "subtract"
    surrogate: str = "atan"
    slope: float | None = 2.0

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
    """Run ``fn(start, stop)`` over ``range(n)`` split across torch's thread count (the kernels release the GIL)."""
    global _POOL
    k = max(1, min(torch.get_num_threads(), n // max(1, min_chunk)))
    if k == 1:
        return [fn(0, n)]
    bounds = [n * i // k for i in range(k + 1)]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="snn-engine")
    futures = [_POOL.submit(fn, bounds[i], bounds[i + 1]) for i in range(k)]
    return [f.result() for f in futures]


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


# ----------------------------------------------------------------------------- numba kernels

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")  # numpy: IEEE division, no zero checks


@_jit
def _lif_forward(cur, mem, spk, params, reset_code, m0, m1):  # pragma: no cover - compiled
    """cur, mem, spk (T, M); params = (clamped beta, threshold, 0) in the data's dtype; neurons m0..m1."""
    beta, thr, zero = params[0], params[1], params[2]
    prev = np.zeros(m1 - m0, dtype=mem.dtype)
    for t in range(cur.shape[0]):
        c = cur[t, m0:m1]
        mt = mem[t, m0:m1]
        st = spk[t, m0:m1]
        if t > 0:
            prev = mem[t - 1, m0:m1]
        if reset_code == 0:  # subtract: beta * mem + input - reset * threshold
            for i in range(mt.size):
                base = beta * prev[i] + c[i]
                mt[i] = base - thr if prev[i] - thr > zero else base
        elif reset_code == 1:  # zero: beta * ((1 - reset) * mem) + input
            for i in range(mt.size):
                mt[i] = beta * (zero if prev[i] - thr > zero else prev[i]) + c[i]
        else:
            for i in range(mt.size):
                mt[i] = beta * prev[i] + c[i]
        for i in range(mt.size):
            st[i] = 1 if mt[i] - thr > zero else 0


@_jit
def _surrogate_row(mt, g, thr, out, code, p0, p1, one, zero):  # pragma: no cover - compiled
    """out = g * dS/dx at x = mem - threshold, as snnTorch's surrogate backward computes it."""
    n = mt.size
    if code == 0:  # atan: alpha / 2 / (1 + (pi / 2 * alpha * x) ** 2) * g
        for i in range(n):
            u = p1 * (mt[i] - thr)
            out[i] = p0 / (one + u * u) * g[i]
    elif code == 1:  # fast_sigmoid: g / (slope * |x| + 1) ** 2
        for i in range(n):
            d = p0 * abs(mt[i] - thr) + one
            out[i] = g[i] / (d * d)
    elif code == 2:  # sigmoid: g * slope * exp(-slope * x) / (exp(-slope * x) + 1) ** 2
        for i in range(n):
            e = math.exp(-p0 * (mt[i] - thr))
            d = e + one
            out[i] = g[i] * p0 * e / (d * d)
    elif code == 3:  # spike_rate_escape: g * slope * exp(-beta * |x - 1|)
        for i in range(n):
            out[i] = g[i] * p0 * math.exp(p1 * abs(mt[i] - thr - one))
    elif code == 4:  # SFS: g / (slope * |x| + 1) ** 2 * (x > B)
        for i in range(n):
            x = mt[i] - thr
            d = p0 * abs(x) + one
            out[i] = g[i] / (d * d) * (one if x > p1 else zero)
    elif code == 5:  # triangular: g * threshold, negated where x >= 0
        for i in range(n):
            r = g[i] * p0
            out[i] = -r if mt[i] - thr >= zero else r
    elif code == 6:  # straight-through estimator
        for i in range(n):
            out[i] = g[i]
    else:  # heaviside: g * (x > 0)
        for i in range(n):
            out[i] = g[i] * (one if mt[i] - thr > zero else zero)


@_jit
def _lif_backward(mem, g_spk, g_mem, dcur, params, reset_code, code, flags, m0, m1):  # pragma: no cover
    """Reverse scan over neurons m0..m1: dcur (T, M) and the float64 sums for d beta and d threshold.

    flags = (has spike gradient, has membrane gradient, want d beta, want d threshold).
    """
    beta, thr, zero, one, p0, p1 = params[0], params[1], params[2], params[3], params[4], params[5]
    has_spk, has_mem, want_beta, want_thr = flags[0], flags[1], flags[2], flags[3]
    size = m1 - m0
    carry = np.zeros(size, dtype=mem.dtype)
    s = np.zeros(size, dtype=mem.dtype)
    prev = np.zeros(size, dtype=mem.dtype)
    acc_beta = np.zeros(size)
    acc_thr = np.zeros(size)
    for t in range(mem.shape[0] - 1, -1, -1):
        mt = mem[t, m0:m1]
        dt = dcur[t, m0:m1]
        if t > 0:
            prev = mem[t - 1, m0:m1]
        else:
            prev = np.zeros(size, dtype=mem.dtype)
        if has_spk:
            _surrogate_row(mt, g_spk[t, m0:m1], thr, s, code, p0, p1, one, zero)
            if want_thr:
                for i in range(size):
                    acc_thr[i] -= s[i]
        if has_mem:
            gm = g_mem[t, m0:m1]
            for i in range(size):
                dt[i] = carry[i] + gm[i] + s[i]
        else:
            for i in range(size):
                dt[i] = carry[i] + s[i]
        if reset_code == 1:  # zero: mem = beta * (1 - reset) * prev + input
            for i in range(size):
                keep = not (prev[i] - thr > zero)
                carry[i] = beta * dt[i] if keep else zero
                if want_beta and keep:
                    acc_beta[i] += dt[i] * prev[i]
        else:  # subtract (or none): mem = beta * prev + input - reset * threshold
            for i in range(size):
                carry[i] = beta * dt[i]
            if want_beta:
                for i in range(size):
                    acc_beta[i] += dt[i] * prev[i]
            if want_thr and reset_code == 0:
                for i in range(size):
                    acc_thr[i] -= dt[i] if prev[i] - thr > zero else zero
    return acc_beta.sum(), acc_thr.sum()


@_jit
def _lif_step(prev, cur, out, beta, thr, zero, reset_code):  # pragma: no cover - compiled
    """One snn.Leaky step for a row of neurons: out = new membrane from prev and input current."""
    if reset_code == 0:  # subtract: beta * mem + input - reset * threshold
        for i in range(out.size):
            base = beta * prev[i] + cur[i]
            out[i] = base - thr if prev[i] - thr > zero else base
    elif reset_code == 1:  # zero: beta * ((1 - reset) * mem) + input
        for i in range(out.size):
            out[i] = beta * (zero if prev[i] - thr > zero else prev[i]) + cur[i]
    else:
        for i in range(out.size):
            out[i] = beta * prev[i] + cur[i]


@_jit
def _lif_back_step(mt, prev, g, s, carry, d, params, code, reset_code, want_beta, want_thr, sums):  # pragma: no cover
    """Reverse of one snn.Leaky step: d = dL/d(input current), carry = dL/d(prev membrane); sums += (d beta, d thr)."""
    beta, thr, zero, one, p0, p1 = params[0], params[1], params[2], params[3], params[4], params[5]
    _surrogate_row(mt, g, thr, s, code, p0, p1, one, zero)
    for i in range(d.size):
        d[i] = carry[i] + s[i]
    if want_thr:
        total = 0.0
        for i in range(d.size):
            total += s[i]
        sums[1] -= total
    if reset_code == 1:
        for i in range(d.size):
            carry[i] = zero if prev[i] - thr > zero else beta * d[i]
        if want_beta:
            total = 0.0
            for i in range(d.size):
                total += zero if prev[i] - thr > zero else d[i] * prev[i]
            sums[0] += total
    else:
        for i in range(d.size):
            carry[i] = beta * d[i]
        if want_beta:
            total = 0.0
            for i in range(d.size):
                total += d[i] * prev[i]
            sums[0] += total
        if want_thr and reset_code == 0:
            total = 0.0
            for i in range(d.size):
                total += d[i] if prev[i] - thr > zero else zero
            sums[1] -= total


@_jit
def _net_forward(frames, w1, b1, w2, b2, w3t, b3, p1, p2, reset_code, mem1, arg1, mem2, arg2, cur3, b_lo, b_hi):  # pragma: no cover
    """Samples b_lo..b_hi over all time steps: conv1+pool -> LIF1 -> conv2+pool -> LIF2 -> linear.

    frames (T, B, Cin, H, W); w1 (Cin, K, K, C1); w2 (C1, K, K, C2); w3t (C2*P2*P2, classes).
    Writes mem1, arg1 (T, B, P1*P1*C1; cell-major, channels last), mem2, arg2
    (T, B, C2*P2*P2; channels first, as nn.Flatten orders them) and cur3.
    """
    n_steps, cin, height, width = frames.shape[0], frames.shape[2], frames.shape[3], frames.shape[4]
    k, c1, c2 = w1.shape[1], w1.shape[3], w2.shape[3]
    ph1, pw1 = (height - k + 1) // 2, (width - k + 1) // 2
    oh1, ow1 = 2 * ph1, 2 * pw1
    ph2, pw2 = (ph1 - k + 1) // 2, (pw1 - k + 1) // 2
    oh2, ow2 = 2 * ph2, 2 * pw2
    cells2 = ph2 * pw2
    n1, n2, n_out = ph1 * pw1 * c1, c2 * cells2, b3.size
    beta1, thr1, beta2, thr2, zero = p1[0], p1[1], p2[0], p2[1], p1[2]
    dtype = mem1.dtype
    conv1 = np.empty((oh1, ow1, c1), dtype=dtype)
    for oy in range(oh1):
        for ox in range(ow1):
            for c in range(c1):
                conv1[oy, ox, c] = b1[c]
    touched = np.zeros((ph1, pw1), dtype=np.bool_)
    cells = np.empty(ph1 * pw1, dtype=np.int64)
    cur1 = np.empty(n1, dtype=dtype)
    conv2 = np.empty((oh2, ow2, c2), dtype=dtype)
    cur2 = np.empty(n2, dtype=dtype)
    zeros1 = np.zeros(n1, dtype=dtype)
    zeros2 = np.zeros(n2, dtype=dtype)
    for b in range(b_lo, b_hi):
        for t in range(n_steps):
            # first convolution + max pool, event-driven
            a1 = arg1[t, b]
            for i in range(ph1 * pw1):
                for c in range(c1):
                    cur1[i * c1 + c] = b1[c]
                    a1[i * c1 + c] = 0
            n_cells = 0
            fr = frames[t, b]
            for ci in range(cin):
                for y in range(height):
                    ky0, ky1 = max(0, y - oh1 + 1), min(k, y + 1)
                    for x in range(width):
                        v = fr[ci, y, x]
                        if v == 0:
                            continue
                        kx0, kx1 = max(0, x - ow1 + 1), min(k, x + 1)
                        for ky in range(ky0, ky1):
                            oy = y - ky
                            for kx in range(kx0, kx1):
                                ox = x - kx
                                row = conv1[oy, ox]
                                wr = w1[ci, ky, kx]
                                for c in range(c1):
                                    row[c] += v * wr[c]
                                if not touched[oy >> 1, ox >> 1]:
                                    touched[oy >> 1, ox >> 1] = True
                                    cells[n_cells] = (oy >> 1) * pw1 + (ox >> 1)
                                    n_cells += 1
            for i in range(n_cells):
                py, px = cells[i] // pw1, cells[i] % pw1
                touched[py, px] = False
                r0, r1 = conv1[2 * py], conv1[2 * py + 1]
                base = cells[i] * c1
                for c in range(c1):
                    best = r0[2 * px, c]
                    arg = 0
                    v = r0[2 * px + 1, c]
                    if v > best or v != v:  # torch's rule: the first maximum wins, NaN wins
                        best, arg = v, 1
                    v = r1[2 * px, c]
                    if v > best or v != v:
                        best, arg = v, 2
                    v = r1[2 * px + 1, c]
                    if v > best or v != v:
                        best, arg = v, 3
                    cur1[base + c] = best
                    a1[base + c] = arg
                for j in range(4):
                    row = conv1[2 * py + (j >> 1), 2 * px + (j & 1)]
                    for c in range(c1):
                        row[c] = b1[c]
            # first LIF layer
            m1 = mem1[t, b]
            _lif_step(mem1[t - 1, b] if t > 0 else zeros1, cur1, m1, beta1, thr1, zero, reset_code)
            # second convolution + max pool on the spikes
            for oy in range(oh2):
                for ox in range(ow2):
                    row = conv2[oy, ox]
                    for c in range(c2):
                        row[c] = b2[c]
            for y in range(ph1):
                ky0, ky1 = max(0, y - oh2 + 1), min(k, y + 1)
                for x in range(pw1):
                    kx0, kx1 = max(0, x - ow2 + 1), min(k, x + 1)
                    base = (y * pw1 + x) * c1
                    for ci in range(c1):
                        if not m1[base + ci] - thr1 > zero:
                            continue
                        for ky in range(ky0, ky1):
                            for kx in range(kx0, kx1):
                                row = conv2[y - ky, x - kx]
                                wr = w2[ci, ky, kx]
                                for c in range(c2):
                                    row[c] += wr[c]
            a2 = arg2[t, b]
            for py in range(ph2):
                r0, r1 = conv2[2 * py], conv2[2 * py + 1]
                for px in range(pw2):
                    for c in range(c2):
                        best = r0[2 * px, c]
                        arg = 0
                        v = r0[2 * px + 1, c]
                        if v > best or v != v:
                            best, arg = v, 1
                        v = r1[2 * px, c]
                        if v > best or v != v:
                            best, arg = v, 2
                        v = r1[2 * px + 1, c]
                        if v > best or v != v:
                            best, arg = v, 3
                        cur2[c * cells2 + py * pw2 + px] = best
                        a2[c * cells2 + py * pw2 + px] = arg
            # second LIF layer, then the linear layer on its spikes
            m2 = mem2[t, b]
            _lif_step(mem2[t - 1, b] if t > 0 else zeros2, cur2, m2, beta2, thr2, zero, reset_code)
            o = cur3[t, b]
            for kk in range(n_out):
                o[kk] = b3[kk]
            for j in range(n2):
                if m2[j] - thr2 > zero:
                    wr = w3t[j]
                    for kk in range(n_out):
                        o[kk] += wr[kk]


@_jit
def _net_backward(
    frames, w1, w2b, w3, p1, p2, code, reset_code, flags, mem1, arg1, mem2, arg2, dcur3,
    dw1, db1, dw2, db2, dw3, sums, b_lo, b_hi,
):  # pragma: no cover - compiled
    """Reverse time for samples b_lo..b_hi: accumulates float64 parameter gradients.

    w2b (C2, K*K*C1) in [ky][kx][ci] order; w3 (classes, C2*P2*P2).
    dw1 (Cin, K, K, C1), dw2 (C1, K, K, C2), dw3 (C2*P2*P2, classes), db1, db2;
    sums = (d beta1, d thr1, d beta2, d thr2). flags = (want beta, want threshold).
    """
    n_steps, cin, height, width = frames.shape[0], frames.shape[2], frames.shape[3], frames.shape[4]
    c1, k, c2 = dw1.shape[3], dw1.shape[1], dw2.shape[3]
    kkc = k * k * c1
    ph1, pw1 = (height - k + 1) // 2, (width - k + 1) // 2
    oh1, ow1 = 2 * ph1, 2 * pw1
    ph2, pw2 = (ph1 - k + 1) // 2, (pw1 - k + 1) // 2
    oh2, ow2 = 2 * ph2, 2 * pw2
    cells2 = ph2 * pw2
    n1, n2, n_out = ph1 * pw1 * c1, c2 * cells2, w3.shape[0]
    thr1, thr2, zero = p1[1], p2[1], p1[2]
    want_beta, want_thr = flags[0], flags[1]
    dtype = mem1.dtype
    zeros1 = np.zeros(n1, dtype=dtype)
    zeros2 = np.zeros(n2, dtype=dtype)
    carry1 = np.empty(n1, dtype=dtype)
    carry2 = np.empty(n2, dtype=dtype)
    s1 = np.empty(n1, dtype=dtype)
    s2 = np.empty(n2, dtype=dtype)
    g1 = np.empty(n1, dtype=dtype)
    g2 = np.empty(n2, dtype=dtype)
    d1 = np.empty(n1, dtype=dtype)
    d2 = np.empty(n2, dtype=dtype)
    d2l = np.empty((cells2, c2), dtype=dtype)
    a2l = np.empty((cells2, c2), dtype=np.uint8)
    acc = np.empty((4, kkc), dtype=dtype)
    used = np.zeros(4, dtype=np.bool_)
    sums1 = np.zeros(2)
    sums2 = np.zeros(2)
    for b in range(b_lo, b_hi):
        carry1[:] = zero
        carry2[:] = zero
        for t in range(n_steps - 1, -1, -1):
            m2 = mem2[t, b]
            m1 = mem1[t, b]
            dc3 = dcur3[t, b]
            # linear layer: gradient to the spikes of layer 2 and to its weights
            for j in range(n2):
                g2[j] = zero
            for kk in range(n_out):
                dk = dc3[kk]
                wr = w3[kk]
                for j in range(n2):
                    g2[j] += dk * wr[j]
            for j in range(n2):
                if m2[j] - thr2 > zero:
                    row = dw3[j]
                    for kk in range(n_out):
                        row[kk] += dc3[kk]
            # second LIF layer
            _lif_back_step(m2, mem2[t - 1, b] if t > 0 else zeros2, g2, s2, carry2, d2, p2, code, reset_code,
                           want_beta, want_thr, sums2)
            for c in range(c2):
                total = 0.0
                for i in range(cells2):
                    total += d2[c * cells2 + i]
                db2[c] += total
            # second convolution: input gradient at the pooled argmax positions
            a2 = arg2[t, b]
            for i in range(n1):
                g1[i] = zero
            for cell in range(cells2):
                used[:] = False
                for c in range(c2):
                    dv = d2[c * cells2 + cell]
                    j = a2[c * cells2 + cell]
                    d2l[cell, c] = dv
                    a2l[cell, c] = j
                    if dv == 0:
                        continue
                    if not used[j]:
                        used[j] = True
                        acc[j, :] = zero
                    accj = acc[j]
                    wr = w2b[c]
                    for i in range(kkc):
                        accj[i] += dv * wr[i]
                py, px = cell // pw2, cell % pw2
                for j in range(4):
                    if not used[j]:
                        continue
                    oy, ox = 2 * py + (j >> 1), 2 * px + (j & 1)
                    accj = acc[j]
                    for ky in range(k):
                        start = ((oy + ky) * pw1 + ox) * c1
                        seg = g1[start : start + k * c1]
                        part = accj[ky * k * c1 : (ky + 1) * k * c1]
                        for i in range(k * c1):
                            seg[i] += part[i]
            # second convolution: weight gradient gathered at the spikes of layer 1
            for y in range(ph1):
                ky0, ky1 = max(0, y - oh2 + 1), min(k, y + 1)
                for x in range(pw1):
                    kx0, kx1 = max(0, x - ow2 + 1), min(k, x + 1)
                    base = (y * pw1 + x) * c1
                    for ci in range(c1):
                        if not m1[base + ci] - thr1 > zero:
                            continue
                        for ky in range(ky0, ky1):
                            oy = y - ky
                            for kx in range(kx0, kx1):
                                ox = x - kx
                                cell = (oy >> 1) * pw2 + (ox >> 1)
                                j = (oy & 1) * 2 + (ox & 1)
                                drow = dw2[ci, ky, kx]
                                dl = d2l[cell]
                                al = a2l[cell]
                                for c in range(c2):
                                    drow[c] += dl[c] if al[c] == j else zero
            # first LIF layer
            _lif_back_step(m1, mem1[t - 1, b] if t > 0 else zeros1, g1, s1, carry1, d1, p1, code, reset_code,
                           want_beta, want_thr, sums1)
            for i in range(ph1 * pw1):
                for c in range(c1):
                    db1[c] += d1[i * c1 + c]
            # first convolution: weight gradient gathered at the input events
            a1 = arg1[t, b]
            fr = frames[t, b]
            for ci in range(cin):
                for y in range(height):
                    ky0, ky1 = max(0, y - oh1 + 1), min(k, y + 1)
                    for x in range(width):
                        v = fr[ci, y, x]
                        if v == 0:
                            continue
                        kx0, kx1 = max(0, x - ow1 + 1), min(k, x + 1)
                        for ky in range(ky0, ky1):
                            oy = y - ky
                            for kx in range(kx0, kx1):
                                ox = x - kx
                                j = (oy & 1) * 2 + (ox & 1)
                                base = ((oy >> 1) * pw1 + (ox >> 1)) * c1
                                drow = dw1[ci, ky, kx]
                                for c in range(c1):
                                    drow[c] += v * d1[base + c] if a1[base + c] == j else zero
    sums[0] += sums1[0]
    sums[1] += sums1[1]
    sums[2] += sums2[0]
    sums[3] += sums2[1]


# ----------------------------------------------------------------------------- autograd Functions


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == torch.float32 else np.dtype(np.float64)


def _lif_params(beta: torch.Tensor, threshold: torch.Tensor, spec: NeuronSpec, dtype: torch.dtype) -> np.ndarray:
    """(clamped beta, threshold, 0, 1, surrogate p0, p1), each rounded to the data's dtype as torch would."""
    beta_c = float(beta.detach().to(dtype).clamp(0, 1))
    thr = float(threshold.detach().to(dtype))
    p0, p1 = spec.surrogate_params()
    return np.array([beta_c, thr, 0.0, 1.0, p0, p1], dtype=_np_dtype(dtype))


def _beta_grad(total: float, beta: torch.Tensor) -> torch.Tensor:
    """d loss / d beta through ``beta.clamp(0, 1)``, which passes gradient strictly inside (0, 1)."""
    b = float(beta.detach())
    return torch.tensor(total if 0.0 < b < 1.0 else 0.0, dtype=beta.dtype).reshape(beta.shape)


class LIFScan(torch.autograd.Function):
    """``snn.Leaky`` over all time steps: input current ``(T, ...)`` -> spikes, membrane ``(T, ...)``."""

    @staticmethod
    def forward(
        ctx: Any, cur: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, spec: NeuronSpec
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = cur.dtype
        n_steps = cur.shape[0]
        params = _lif_params(beta, threshold, spec, dtype)
        c = _np(cur).reshape(n_steps, -1)
        mem = torch.empty(cur.shape, dtype=dtype)
        spk8 = torch.empty(cur.shape, dtype=torch.uint8)
        mv, sv = mem.numpy().reshape(n_steps, -1), spk8.numpy().reshape(n_steps, -1)
        code = _RESET_CODES[spec.reset_mechanism]
        _parallel(lambda m0, m1: _lif_forward(c, mv, sv, params, code, m0, m1), c.shape[1], 4096)
        ctx.save_for_backward(mem, beta, threshold)
        ctx.spec = spec
        ctx.set_materialize_grads(False)
        return spk8.to(dtype), mem

    @staticmethod
    def backward(
        ctx: Any, g_spk: torch.Tensor | None, g_mem: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        mem, beta, threshold = ctx.saved_tensors
        spec: NeuronSpec = ctx.spec
        dtype = mem.dtype
        n_steps = mem.shape[0]
        if g_spk is None and g_mem is None:
            return None, None, None, None
        params = _lif_params(beta, threshold, spec, dtype)
        m = mem.numpy().reshape(n_steps, -1)
        empty = np.zeros((1, 1), dtype=m.dtype)
        gs = _np(g_spk.to(dtype)).reshape(n_steps, -1) if g_spk is not None else empty
        gm = _np(g_mem.to(dtype)).reshape(n_steps, -1) if g_mem is not None else empty
        dcur = torch.empty(mem.shape, dtype=dtype)
        dv = dcur.numpy().reshape(n_steps, -1)
        reset_code = _RESET_CODES[spec.reset_mechanism]
        code = _SURROGATE_CODES[spec.surrogate]
        flags = np.array(
            [g_spk is not None, g_mem is not None, ctx.needs_input_grad[1], ctx.needs_input_grad[2]], dtype=np.bool_
        )
        parts = _parallel(
            lambda m0, m1: _lif_backward(m, gs, gm, dv, params, reset_code, code, flags, m0, m1), m.shape[1], 4096
        )
        d_beta = _beta_grad(sum(p[0] for p in parts), beta) if ctx.needs_input_grad[1] else None
        d_thr = None
        if ctx.needs_input_grad[2]:
            d_thr = torch.tensor(sum(p[1] for p in parts), dtype=threshold.dtype).reshape(threshold.shape)
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
    ) -> torch.Tensor:
        dtype = w1.dtype
        frames = frames.detach().to(dtype).contiguous()
        n_steps, batch, _, height, width = frames.shape
        c1, k, c2 = w1.shape[0], w1.shape[2], w2.shape[0]
        p1h, p1w = (height - k + 1) // 2, (width - k + 1) // 2
        p2h, p2w = (p1h - k + 1) // 2, (p1w - k + 1) // 2
        n1, n2 = p1h * p1w * c1, c2 * p2h * p2w
        npd = _np_dtype(dtype)
        mem1 = BUFFERS.take((n_steps, batch, n1), npd)
        arg1 = BUFFERS.take((n_steps, batch, n1), np.uint8)
        mem2 = BUFFERS.take((n_steps, batch, n2), npd)
        arg2 = BUFFERS.take((n_steps, batch, n2), np.uint8)
        cur3 = torch.empty((n_steps, batch, w3.shape[0]), dtype=dtype)
        x = frames.numpy()
        w1r, w2r = _np(w1.permute(1, 2, 3, 0)), _np(w2.permute(1, 2, 3, 0))
        w3t, bb1, bb2, bb3 = _np(w3.t()), _np(b1), _np(b2), _np(b3)
        p1 = _lif_params(beta1, thr1, spec, dtype)
        p2 = _lif_params(beta2, thr2, spec, dtype)
        reset_code = _RESET_CODES[spec.reset_mechanism]
        out = cur3.numpy()
        _parallel(
            lambda lo, hi: _net_forward(x, w1r, bb1, w2r, bb2, w3t, bb3, p1, p2, reset_code, mem1, arg1, mem2, arg2,
                                        out, lo, hi),
            batch,
        )
        saved = [torch.from_numpy(a) for a in (mem1, arg1, mem2, arg2)]
        ctx.save_for_backward(frames, w1, w2, w3, beta1, thr1, beta2, thr2, *saved)
        ctx.spec = spec
        return cur3

    @staticmethod
    def backward(ctx: Any, dcur3: torch.Tensor) -> tuple[Any, ...]:
        frames, w1, w2, w3, beta1, thr1, beta2, thr2, mem1, arg1, mem2, arg2 = ctx.saved_tensors
        spec: NeuronSpec = ctx.spec
        dtype = w1.dtype
        batch = frames.shape[1]
        c2, c1, k, _ = w2.shape
        cin = w1.shape[1]
        n2 = mem2.shape[2]
        need = ctx.needs_input_grad
        want_beta = need[3] or need[7]
        want_thr = need[4] or need[8]
        p1 = _lif_params(beta1, thr1, spec, dtype)
        p2 = _lif_params(beta2, thr2, spec, dtype)
        x, m1, a1, m2, a2 = (t.numpy() for t in (frames, mem1, arg1, mem2, arg2))
        g = _np(dcur3.to(dtype))
        w1r = _np(w1.permute(1, 2, 3, 0))
        w2b = _np(w2.permute(0, 2, 3, 1)).reshape(c2, k * k * c1)
        w3n = _np(w3)
        code = _SURROGATE_CODES[spec.surrogate]
        reset_code = _RESET_CODES[spec.reset_mechanism]
        flags = np.array([want_beta, want_thr], dtype=np.bool_)

        def part(lo: int, hi: int) -> tuple[np.ndarray, ...]:
            dw1, db1 = np.zeros((cin, k, k, c1)), np.zeros(c1)
            dw2, db2 = np.zeros((c1, k, k, c2)), np.zeros(c2)
            dw3, sums = np.zeros((n2, g.shape[2])), np.zeros(4)
            _net_backward(x, w1r, w2b, w3n, p1, p2, code, reset_code, flags, m1, a1, m2, a2, g,
                          dw1, db1, dw2, db2, dw3, sums, lo, hi)
            return dw1, db1, dw2, db2, dw3, sums

        parts = _parallel(part, batch)
        dw1, db1, dw2, db2, dw3, sums = (sum(p[i] for p in parts) for i in range(6))

        def grad(array: np.ndarray, *perm: int) -> torch.Tensor:
            t = torch.from_numpy(array)
            return (t.permute(*perm) if perm else t).to(dtype).contiguous()

        def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
            return torch.tensor(value, dtype=like.dtype).reshape(like.shape)

        return (
            None,
            grad(dw1, 3, 0, 1, 2), grad(db1),
            _beta_grad(sums[0], beta1) if need[3] else None, scalar(sums[1], thr1) if need[4] else None,
            grad(dw2, 3, 0, 1, 2), grad(db2),
            _beta_grad(sums[2], beta2) if need[7] else None, scalar(sums[3], thr2) if need[8] else None,
            grad(dw3, 1, 0), dcur3.sum((0, 1)),
            None,
        )


# ----------------------------------------------------------------------------- the network


def neuron_spec(config: Any) -> NeuronSpec:
    """The ``NeuronSpec`` of a ``core.model.ModelConfig``."""
    return NeuronSpec(config.reset_mechanism, config.surrogate, config.slope)


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


def unsupported_reason(net: nn.Sequential, config: Any) -> str | None:
    """Why the fast engine cannot run this net and config (None if it can)."""
    if config.surrogate not in _SURROGATE_CODES:
        return f"surrogate {config.surrogate!r} has no fast implementation"
    if config.reset_mechanism not in _RESET_CODES:
        return f"reset_mechanism {config.reset_mechanism!r} has no fast implementation"
    kinds = [nn.Conv2d, nn.MaxPool2d, snn.Leaky, nn.Conv2d, nn.MaxPool2d, snn.Leaky, nn.Flatten, nn.Linear, snn.Leaky]
    if len(net) != len(kinds) or any(type(layer) is not kind for layer, kind in zip(net, kinds)):
        return "the network is not the tutorial's 9-layer Sequential"
    for i in (0, 3):
        conv = net[i]
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1:
            return f"net.{i} is not a plain stride-1 convolution"
        if conv.bias is None or conv.kernel_size[0] != conv.kernel_size[1] or conv.padding_mode != "zeros":
            return f"net.{i} has no bias or a non-square kernel"
    for i in (1, 4):
        pool = net[i]
        if (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode) not in (
            (2, 2, 0, 1, False),
            ((2, 2), (2, 2), 0, 1, False),
        ) or pool.return_indices:
            return f"net.{i} is not MaxPool2d(2)"
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


def unsupported_frames_reason(frames: torch.Tensor) -> str | None:
    """Why the fast engine cannot run on these frames (None if it can)."""
    if frames.device.type != "cpu":
        return f"the fast engine runs on the CPU; frames are on {frames.device}"
    if frames.dtype not in (torch.float32, torch.float64):
        return f"the fast engine supports float32 and float64 frames, not {frames.dtype}"
    if frames.requires_grad:
        return "frames require a gradient, which the event-driven first layer does not compute"
    return None


def fast_forward(net: nn.Sequential, config: Any, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial network on frames ``(T, B, 2, H, W)``: output spikes and membrane ``(T, B, n_classes)``."""
    spec = neuron_spec(config)
    cur3 = HiddenLayers.apply(
        frames,
        net[0].weight, net[0].bias, net[2].beta, net[2].threshold,
        net[3].weight, net[3].bias, net[5].beta, net[5].threshold,
        net[7].weight, net[7].bias,
        spec,
    )
    return LIFScan.apply(cur3, net[8].beta, net[8].threshold, spec)
