"""Figures of the dashboard: plotly views of events, frames, training and output spikes, and the spike-count MP4.

Plain functions from arrays to figures (or MP4 bytes), so every view a page
shows can be built and tested without Streamlit. Matplotlib is used only for
the MP4, through explicit ``Figure`` objects on the Agg canvas (never the
``pyplot`` global state, which is not safe across the app's sessions).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.events import SENSOR_SIZE

ON_COLOR = "#d62728"  # ON events (brightness up)
OFF_COLOR = "#1f77b4"  # OFF events (brightness down)
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
SACCADE_US = 105_000  # nominal duration of one N-MNIST saccade (Orchard et al. 2015)

# snntorch.spikeplot.spike_count's look
_SC_BLUE = "#007ACC"
_SC_TEXT = "#333F4B"
_SC_ORANGE = "#ff7f0e"  # matplotlib's tab:orange


# --------------------------------------------------------------------------- events


def _as_events(events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(events["x"]), np.asarray(events["y"]), np.asarray(events["t"]), np.asarray(events["p"]))


def accumulate(events: np.ndarray, sensor_size: tuple[int, int, int] = SENSOR_SIZE) -> np.ndarray:
    """Event counts per polarity and pixel, shape (2, height, width): index 0 OFF, 1 ON (tonic's order)."""
    x, y, _, p = _as_events(events)
    width, height, _ = sensor_size
    counts = np.zeros((2, height, width), dtype=np.int64)
    np.add.at(counts, (p.astype(np.int64).clip(0, 1), y.astype(np.int64), x.astype(np.int64)), 1)
    return counts


def bin_frames(
    events: np.ndarray, window_us: int, sensor_size: tuple[int, int, int] = SENSOR_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Events binned into frames of ``window_us`` microseconds from the first event.

    For display only (playback): returns ``(frames (T, 2, H, W) int64, start times in us)``.
    Training frames come from the exact ToFrame of ``core.transforms``.
    """
    if window_us <= 0:
        raise ValueError(f"window_us must be positive, got {window_us}")
    x, y, t, p = _as_events(events)
    width, height, _ = sensor_size
    if len(t) == 0:
        return np.zeros((0, 2, height, width), dtype=np.int64), np.zeros(0, dtype=np.int64)
    t0 = int(t.min())
    index = ((t - t0) // window_us).astype(np.int64)
    frames = np.zeros((int(index.max()) + 1, 2, height, width), dtype=np.int64)
    np.add.at(frames, (index, p.astype(np.int64).clip(0, 1), y.astype(np.int64), x.astype(np.int64)), 1)
    return frames, t0 + window_us * np.arange(len(frames), dtype=np.int64)


def estimate_saccade_boundaries(events: np.ndarray, n_saccades: int = 3, search_us: int = 20_000) -> list[int]:
    """Times (us) where one saccade ends and the next begins.

    The sensor stops for an instant at each corner of the saccade triangle, so
    the event rate dips there: take the quietest 5 ms within ``search_us`` of
    each nominal boundary (every 105 ms).
    """
    t = np.sort(np.asarray(events["t"], dtype=np.int64))
    if len(t) < 10:
        return []
    t0 = int(t[0])
    boundaries = []
    for k in range(1, n_saccades):
        nominal = t0 + k * SACCADE_US
        lo, hi = nominal - search_us, nominal + search_us
        if hi > t[-1]:
            break
        centres = np.arange(lo, hi + 1, 1000)
        counts = np.searchsorted(t, centres + 2500) - np.searchsorted(t, centres - 2500)
        quiet = np.flatnonzero(counts == counts.min())
        boundaries.append(int(centres[quiet[len(quiet) // 2]]))
    return boundaries


def event_cloud_figure(events: np.ndarray, max_points: int = 15_000, seed: int = 0) -> go.Figure:
    """Interactive 3D point cloud of x, time (ms) and y, coloured by polarity.

    Above ``max_points`` events a uniform random subset is drawn (the browser
    stays responsive; the subset is said in the title).
    """
    x, y, t, p = _as_events(events)
    n = len(t)
    keep = np.arange(n)
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    fig = go.Figure()
    for polarity, name, color in ((1, "ON", ON_COLOR), (0, "OFF", OFF_COLOR)):
        sel = keep[p[keep] == polarity]
        fig.add_trace(
            go.Scatter3d(
                x=x[sel], y=t[sel] / 1000.0, z=y[sel], mode="markers", name=f"{name} ({int((p == polarity).sum())})",
                marker=dict(size=1.6, color=color, opacity=0.7),
                hovertemplate="x=%{x}<br>y=%{z}<br>t=%{y:.3f} ms<extra>" + name + "</extra>",
            )
        )
    shown = f"{len(keep):,} of {n:,} events" if n > max_points else f"{n:,} events"
    fig.update_layout(
        title=f"Events in space and time ({shown})",
        scene=dict(
            xaxis=dict(title="x", range=[0, SENSOR_SIZE[0]]),
            yaxis=dict(title="time (ms)"),
            zaxis=dict(title="y", range=[SENSOR_SIZE[1], 0]),
            aspectmode="manual", aspectratio=dict(x=1, y=2.2, z=1),
        ),
        margin=dict(l=0, r=0, t=40, b=0), height=480, legend=dict(itemsizing="constant"),
    )
    return fig


def event_image_figure(events: np.ndarray, sensor_size: tuple[int, int, int] = SENSOR_SIZE) -> go.Figure:
    """The recording accumulated into images: ON count, OFF count and ON minus OFF."""
    counts = accumulate(events, sensor_size)
    on, off = counts[1], counts[0]
    diff = on - off
    fig = make_subplots(rows=1, cols=3, subplot_titles=("ON", "OFF", "ON − OFF"), horizontal_spacing=0.06)
    lim = max(1, int(np.abs(diff).max()))
    fig.add_trace(go.Heatmap(z=on, colorscale="Reds", showscale=False, hovertemplate="x=%{x} y=%{y} ON=%{z}<extra></extra>"), 1, 1)
    fig.add_trace(go.Heatmap(z=off, colorscale="Blues", showscale=False, hovertemplate="x=%{x} y=%{y} OFF=%{z}<extra></extra>"), 1, 2)
    fig.add_trace(
        go.Heatmap(z=diff, colorscale="RdBu", reversescale=True, zmin=-lim, zmax=lim, colorbar=dict(len=0.9, thickness=12),
                   hovertemplate="x=%{x} y=%{y} ON−OFF=%{z}<extra></extra>"), 1, 3,
    )
    for col in (1, 2, 3):
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", showticklabels=False, row=1, col=col)
        fig.update_xaxes(showticklabels=False, constrain="domain", row=1, col=col)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def event_rate_figure(events: np.ndarray, bin_us: int = 1000, boundaries_us: Sequence[int] = ()) -> go.Figure:
    """ON and OFF events per millisecond over time, saccade boundaries as dashed lines."""
    _, _, t, p = _as_events(events)
    fig = go.Figure()
    if len(t):
        edges = np.arange(int(t.min()), int(t.max()) + bin_us + 1, bin_us)
        centres_ms = (edges[:-1] + bin_us / 2) / 1000.0
        scale = 1000.0 / bin_us
        for polarity, name, color in ((1, "ON", ON_COLOR), (0, "OFF", OFF_COLOR)):
            hist, _ = np.histogram(t[p == polarity], bins=edges)
            fig.add_trace(go.Scatter(x=centres_ms, y=hist * scale, name=name, mode="lines", line=dict(color=color, width=1.5)))
    for i, b in enumerate(boundaries_us):
        fig.add_vline(x=b / 1000.0, line=dict(color="#555", dash="dash", width=1.5),
                      annotation_text=f"saccade {i + 1} | {i + 2}", annotation_position="top")
    fig.update_layout(
        title="Event rate", xaxis_title="time (ms)", yaxis_title="events per ms", height=300,
        margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return fig


def frames_figure(frames: np.ndarray, labels: Sequence[str] | None = None, title: str = "Frames") -> go.Figure:
    """Frames (T, 2, H, W) as ON minus OFF images with a play button and a time slider.

    The animation runs in the browser (plotly frames), so scrubbing never
    reruns the page.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise ValueError(f"frames must have shape (T, 2, H, W), got {frames.shape}")
    n = len(frames)
    diff = (frames[:, 1].astype(np.float32) - frames[:, 0].astype(np.float32)) if n else np.zeros((1, *frames.shape[2:]))
    lim = float(max(1.0, np.abs(diff).max()))
    labels = [str(s) for s in (labels if labels is not None else range(n))]
    heat = dict(colorscale="RdBu", reversescale=True, zmin=-lim, zmax=lim, colorbar=dict(thickness=12, title="ON−OFF"),
                hovertemplate="x=%{x} y=%{y} ON−OFF=%{z}<extra></extra>")
    fig = go.Figure(data=[go.Heatmap(z=diff[0], **heat)])
    fig.update(frames=[dict(data=[dict(type="heatmap", z=diff[i].tolist())], traces=[0], name=labels[i]) for i in range(n)])
    steps = [dict(method="animate", label=labels[i],
                  args=[[labels[i]], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])
             for i in range(n)]
    fig.update_layout(
        title=title, height=460, margin=dict(l=10, r=10, t=40, b=10),
        yaxis=dict(autorange="reversed", scaleanchor="x", constrain="domain"), xaxis=dict(constrain="domain"),
        sliders=[dict(steps=steps, active=0, currentvalue=dict(prefix="frame: "), pad=dict(t=30))] if n else [],
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0, y=0, xanchor="right", yanchor="top", pad=dict(t=30, r=10),
                          buttons=[dict(label="▶", method="animate",
                                        args=[None, dict(frame=dict(duration=80, redraw=True), fromcurrent=True, transition=dict(duration=0))]),
                                   dict(label="❚❚", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])] if n else [],
    )
    return fig


def event_grid_frames(events: np.ndarray, sensor_size: tuple[int, int, int] = SENSOR_SIZE, n_time_bins: int = 3) -> np.ndarray:
    """The frames ``tonic.utils.plot_event_grid`` draws, but on the true sensor size.

    plot_event_grid sizes the sensor from the largest x and y in the events;
    here the grid is always ``sensor_size`` (34 x 34 for N-MNIST), so a
    recording that never touches the last row or column is not cropped.
    """
    from core.functional import to_frame  # exactly tonic's ToFrame, without importing tonic (and torch)

    width, height, polarities = sensor_size
    if len(events) == 0:
        return np.zeros((n_time_bins, polarities, height, width), dtype=np.int16)
    return to_frame(events, sensor_size, n_time_bins=n_time_bins)


def event_grid_figure(frames: np.ndarray, title: str = "") -> go.Figure:
    """Frames side by side as ``frame[1] - frame[0]`` in viridis, axes off: plot_event_grid's look."""
    frames = np.asarray(frames)
    n = len(frames)
    fig = make_subplots(rows=1, cols=max(1, n), horizontal_spacing=0.02)
    for i in range(n):
        z = frames[i][1].astype(np.int64) - frames[i][0].astype(np.int64) if frames.shape[1] > 1 else frames[i][0]
        fig.add_trace(go.Heatmap(z=z, colorscale="Viridis", showscale=False, hovertemplate="x=%{x} y=%{y} %{z}<extra></extra>"), 1, i + 1)
        anchor = "x" if i == 0 else f"x{i + 1}"
        fig.update_yaxes(autorange="reversed", scaleanchor=anchor, visible=False, row=1, col=i + 1)
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=i + 1)
    fig.update_layout(title=title or None, height=260, margin=dict(l=5, r=5, t=40 if title else 5, b=5))
    return fig


# --------------------------------------------------------------------------- training


def training_curves_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[tuple[str, str]] = (("loss", "loss"), ("accuracy", "minibatch accuracy")),
    x: str = "iteration",
) -> go.Figure:
    """One column per metric, one line per run: ``histories[run][column]`` are equal-length lists.

    Optional test points (``test_iteration``, ``test_accuracy``) are drawn as
    markers on the accuracy panel.
    """
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[title for _, title in metrics], horizontal_spacing=0.08)
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52"]
    for k, (name, history) in enumerate(histories.items()):
        color = palette[k % len(palette)]
        xs = list(history.get(x, range(len(next(iter(history.values()), [])))))
        for col, (key, _) in enumerate(metrics, start=1):
            if key in history and len(history[key]):
                fig.add_trace(go.Scatter(x=xs[: len(history[key])], y=list(history[key]), mode="lines", name=name,
                                         legendgroup=name, showlegend=col == 1, line=dict(color=color, width=1.8)), 1, col)
        if "test_accuracy" in history and len(history["test_accuracy"]) and "accuracy" in [m for m, _ in metrics]:
            col = [m for m, _ in metrics].index("accuracy") + 1
            fig.add_trace(go.Scatter(x=list(history.get("test_iteration", [])), y=list(history["test_accuracy"]),
                                     mode="markers+lines", name=f"{name} (test)", legendgroup=name, showlegend=False,
                                     marker=dict(color=color, symbol="diamond", size=8), line=dict(color=color, dash="dot")), 1, col)
    for col, (key, _) in enumerate(metrics, start=1):
        fig.update_xaxes(title_text=x, row=1, col=col)
        if "acc" in key:
            fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=col)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def confusion_matrix_figure(matrix: np.ndarray, labels: Sequence[str] = DIGITS) -> go.Figure:
    """Confusion matrix (rows: true class, columns: predicted), counts annotated."""
    m = np.asarray(matrix)
    fig = go.Figure(go.Heatmap(z=m, x=list(labels), y=list(labels), colorscale="Blues", text=m, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>", showscale=False))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis=dict(autorange="reversed", scaleanchor="x"),
                      height=420, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(side="bottom", type="category"))
    fig.update_yaxes(type="category")
    return fig


# --------------------------------------------------------------------------- output spikes


def _spike_array(spk) -> np.ndarray:
    """(time, neurons) float array from a tensor or array, batch dimension not allowed."""
    arr = spk.detach().cpu().numpy() if hasattr(spk, "detach") else np.asarray(spk)
    if arr.ndim != 2:
        raise ValueError(f"expected a (time, neurons) record of one sample, got shape {arr.shape}")
    return arr.astype(np.float32)


def spike_count_figure(spk, labels: Sequence[str] = DIGITS, target: int | None = None, max_frames: int = 400) -> go.Figure:
    """Interactive spike-count histogram of the output neurons, with a time slider and play button.

    The plotly twin of ``snntorch.spikeplot.spike_count``: bars and dots
    grow with the running spike count, an orange line marks the time step.
    """
    data = _spike_array(spk)
    steps, n = data.shape
    counts = np.vstack([np.zeros((1, n), np.float32), np.cumsum(data, axis=0)])  # counts[i] = spikes in steps [0, i)
    idx = np.unique(np.linspace(0, steps, min(steps + 1, max_frames)).round().astype(int))
    ys = list(range(1, n + 1))
    colors = ["#2ca02c" if target is not None and k == target else _SC_BLUE for k in range(n)]

    last = counts[int(idx[-1])]
    data = [
        go.Bar(x=last, y=ys, orientation="h", marker=dict(color=colors, opacity=0.5), width=0.3,
               hovertemplate="neuron %{customdata}: %{x:.0f} spikes<extra></extra>", customdata=list(labels)),
        go.Scatter(x=last, y=ys, mode="markers", marker=dict(color=colors, size=11, opacity=0.7), hoverinfo="skip"),
        go.Scatter(x=[int(idx[-1])] * 2, y=[0.4, n + 0.6], mode="lines", line=dict(color=_SC_ORANGE, width=3), hoverinfo="skip"),
    ]
    # frames as plain dicts that only move x: hundreds of validated go.Frame objects take seconds
    frames = [dict(name=str(int(i)), traces=[0, 1, 2],
                   data=[dict(type="bar", x=counts[i].tolist()), dict(type="scatter", x=counts[i].tolist()),
                         dict(type="scatter", x=[int(i), int(i)])]) for i in idx]
    fig = go.Figure(data=data)
    fig.update(frames=frames)
    slider_steps = [dict(method="animate", label=str(int(i)),
                         args=[[str(int(i))], dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))])
                    for i in idx]
    fig.update_layout(
        showlegend=False, height=440, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
        title="Output spike count" + (f" (true label {labels[target]} in green)" if target is not None else ""),
        xaxis=dict(title="Time Step", range=[0, steps], showgrid=False, zeroline=False, linecolor=_SC_TEXT),
        yaxis=dict(title="Labels", tickvals=ys, ticktext=list(labels), range=[0.4, n + 0.6], showgrid=False, linecolor=_SC_TEXT),
        sliders=[dict(steps=slider_steps, active=len(idx) - 1, currentvalue=dict(prefix="time step: "), pad=dict(t=40))],
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0, y=0, xanchor="right", yanchor="top", pad=dict(t=40, r=10),
                          buttons=[dict(label="▶", method="animate",
                                        args=[[str(int(i)) for i in idx], dict(frame=dict(duration=25, redraw=False), mode="immediate", transition=dict(duration=0))]),
                                   dict(label="❚❚", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])],
    )
    return fig


def spike_raster_figure(spk, labels: Sequence[str] = DIGITS) -> go.Figure:
    """Output spikes as a raster: one row per output neuron, a tick per spike."""
    data = _spike_array(spk)
    t, k = np.nonzero(data > 0)
    fig = go.Figure(go.Scatter(x=t, y=k, mode="markers", marker=dict(symbol="line-ns-open", size=9, color="#222", line=dict(width=1.2)),
                               hovertemplate="step %{x}, neuron %{y}<extra></extra>"))
    fig.update_layout(title="Output spike raster", xaxis_title="time step", yaxis_title="output neuron", height=300,
                      xaxis=dict(range=[-0.5, data.shape[0] - 0.5]),
                      yaxis=dict(tickvals=list(range(data.shape[1])), ticktext=list(labels), range=[-0.6, data.shape[1] - 0.4]),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def membrane_figure(mem, labels: Sequence[str] = DIGITS, threshold: float | None = 1.0) -> go.Figure:
    """Membrane potential of each output neuron over time, the firing threshold dashed."""
    data = _spike_array(mem)
    fig = go.Figure()
    for k in range(data.shape[1]):
        fig.add_trace(go.Scatter(y=data[:, k], mode="lines", name=labels[k], line=dict(width=1.2)))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="#555", dash="dash", width=1), annotation_text="threshold")
    fig.update_layout(title="Output membrane potentials", xaxis_title="time step", yaxis_title="membrane", height=320,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(title="neuron"))
    return fig


# --------------------------------------------------------------------------- spike-count MP4


@dataclass(frozen=True)
class SpikeVideoConfig:
    """How the spike-count MP4 is drawn; defaults reproduce the tutorial's ``spike_count`` call."""

    figsize: tuple[float, float] = (12.0, 7.0)  # the tutorial's plt.subplots(figsize=(12, 7))
    dpi: int = 100  # matplotlib's default figure dpi, which anim.save uses
    interpolate: int = 1  # frames per time step (spike_count's `interpolate`)
    fps: float = 40.0  # spike_count's interval=25 ms -> 40 frames per second
    gridshader: bool = True
    crf: int = 23  # libx264 quality (lower is better)
    preset: str = "veryfast"  # libx264 speed/size trade-off

    def __post_init__(self) -> None:
        if self.interpolate < 1:
            raise ValueError(f"interpolate must be at least 1, got {self.interpolate}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.dpi <= 0 or min(self.figsize) <= 0:
            raise ValueError("figsize and dpi must be positive")


# spike_count sets these rcParams after the tutorial made its axes, so they
# reach the ticks and texts but not the spines, which keep matplotlib's black.
_SC_RC = {
    "axes.edgecolor": "black", "axes.linewidth": 0.8, "xtick.color": _SC_TEXT,
    "ytick.color": _SC_TEXT, "text.color": _SC_TEXT, "figure.facecolor": "white",
}


def _spike_count_axes(data: np.ndarray, labels: Sequence[str], config: SpikeVideoConfig):
    """One Agg figure styled as spike_count draws it, and its moving artists (bars, dots, time line)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, n = data.shape
    with matplotlib.rc_context(_SC_RC):
        fig = Figure(figsize=config.figsize, dpi=config.dpi, facecolor="w")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_xlim([0, steps])
        ys = np.arange(1, n + 1)
        bars = ax.hlines(y=ys, xmin=0, xmax=np.zeros(n), color=_SC_BLUE, alpha=0.5, linewidth=8)
        (dots,) = ax.plot(np.zeros(n), ys, "o", markersize=8, color=_SC_BLUE, alpha=0.6)
        ax.set_xlabel("Time Step", fontsize=15, fontweight="black", color=_SC_TEXT)
        ax.set_ylabel("Labels", fontsize=15, fontweight="black", color=_SC_TEXT)
        ax.tick_params(axis="both", which="major", labelsize=12)
        ax.set_yticks(ys, list(labels))
        ax.spines["top"].set_color("none")
        ax.spines["right"].set_color("none")
        ax.spines["bottom"].set_position(("axes", -0.04))
        ax.spines["left"].set_position(("axes", 0.0))
        # pin the y range spike_count ends up with (its first frame autoscales on the dots)
        ax.set_ylim(1 - 0.05 * (n - 1), n + 0.05 * (n - 1))
        if config.gridshader:  # _GridShader(first=False): shade every other gap between x ticks
            xticks = ax.get_xticks()
            lo, hi = ax.get_xlim()
            xticks = xticks[(xticks > lo) & (xticks < hi)]
            locs = np.concatenate(([lo], xticks, [hi]))
            for s, e in zip(locs[1::2], locs[2::2]):
                ax.axvspan(s, e, zorder=0, facecolor="lightgrey", alpha=0.7)
            ax.set_xlim([lo, hi])
        line = ax.axvline(x=0, color="tab:orange", linewidth=3)
    return fig, ax, bars, dots, line


def spike_count_frames(spk, labels: Sequence[str] = DIGITS, config: SpikeVideoConfig = SpikeVideoConfig()):
    """Yield the RGBA frames (H, W, 4) uint8 of the spike-count animation, one per frame.

    Draws the static parts once, then per frame restores that background and
    redraws only the bars, the dots and the time line (blitting): the same
    picture spike_count's Camera animation produces, at a fraction of the cost.
    """
    data = _spike_array(spk)
    steps, n = data.shape
    counts = np.vstack([np.zeros((1, n), np.float32), np.cumsum(data, axis=0)])
    fig, ax, bars, dots, line = _spike_count_axes(data, labels, config)
    for artist in (bars, dots, line):
        artist.set_visible(False)
    canvas = fig.canvas
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    for artist in (bars, dots, line):
        artist.set_visible(True)
    ys = np.arange(1, n + 1)
    renderer = canvas.get_renderer()
    for i in range(steps * config.interpolate):
        c = counts[min(i // config.interpolate, steps)]
        bars.set_segments([[(0.0, y), (float(v), y)] for y, v in zip(ys, c)])
        dots.set_xdata(c)
        line.set_xdata([i / config.interpolate] * 2)
        canvas.restore_region(background)
        # spike_count's zorders: spans (0) < bars, dots, time line (2) < spines and ticks (2.5)
        bars.draw(renderer)
        dots.draw(renderer)
        line.draw(renderer)
        ax.spines["left"].draw(renderer)  # the bars are clipped at x = 0, so only the spine needs redrawing
        yield np.asarray(canvas.buffer_rgba())


def spike_count_video(
    spk,
    labels: Sequence[str] = DIGITS,
    config: SpikeVideoConfig = SpikeVideoConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """The animated spike-count histogram as H.264 MP4 bytes, drawn as snntorch.spikeplot.spike_count draws it.

    Frames are piped as raw RGBA into ffmpeg (imageio-ffmpeg's bundled binary);
    ``progress(frames_done, frames_total)`` is called every 25 frames.
    """
    import imageio_ffmpeg

    data = _spike_array(spk)
    if data.shape[0] == 0:
        raise ValueError("the spike record has no time steps")
    width, height = int(round(config.figsize[0] * config.dpi)), int(round(config.figsize[1] * config.dpi))
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="spike_count_")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), pix_fmt_in="rgba", pix_fmt_out="yuv420p", fps=config.fps, codec="libx264",
            macro_block_size=2, quality=None,
            output_params=["-preset", config.preset, "-crf", str(config.crf), "-movflags", "+faststart"],
        )
        writer.send(None)
        total = data.shape[0] * config.interpolate
        for i, frame in enumerate(spike_count_frames(data, labels, config)):
            if progress is not None and i % 25 == 0:
                progress(i, total)
            if frame.shape[:2] != (height, width):
                raise RuntimeError(f"canvas is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
            writer.send(frame)  # the canvas buffer itself: no copy
        writer.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)
