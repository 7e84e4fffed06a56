"""Figures of the dashboard: plotly views of events, frames, training and output spikes, and the spike-count MP4.

Also the two first views that must not wait for a chart script in the browser:
the Events page's event image and Home's digit gallery, PNGs drawn with Pillow.
Plain functions from arrays to figures (or bytes), so every view a page
shows can be built and tested without Streamlit. Matplotlib is used only for
the MP4, through explicit ``Figure`` objects on the Agg canvas (never the
``pyplot`` global state, which is not safe across the app's sessions).
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.events import SENSOR_SIZE

ON_COLOR = "#d62728"  # ON events (brightness up)
OFF_COLOR = "#1f77b4"  # OFF events (brightness down)
POLARITY_SCALE = [[0.0, OFF_COLOR], [0.5, "#ffffff"], [1.0, ON_COLOR]]  # ON minus OFF: blue < 0 < red
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
    """Interactive 3D point cloud of time (ms), x and y, coloured by polarity.

    The camera looks at the sensor from the front, a little from the side and from
    above, with an orthographic projection: the whole recording (all three saccades)
    lies along the time axis from left to right, and each saccade shows the digit
    upright and unmirrored. Above ``max_points`` events a uniform random subset is
    drawn (the browser stays responsive; the subset is said in the title).
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
                x=(t[sel] / 1000.0).astype(np.float32), y=x[sel].astype(np.int8), z=y[sel].astype(np.int8), mode="markers",
                name=f"{name} ({int((p == polarity).sum()):,})", marker=dict(size=1.6, color=color, opacity=0.7),
                hovertemplate="x=%{y}<br>y=%{z}<br>t=%{x:.3f} ms<extra>" + name + "</extra>",
            )
        )
    shown = f"{len(keep):,} of {n:,} events" if n > max_points else f"{n:,} events"
    t_end = float(t.max()) / 1000.0 if n else 1.0
    width, height, _ = SENSOR_SIZE
    fig.update_layout(
        title=f"Events in space and time ({shown})",
        scene=dict(
            # few ticks: at 1000 px the x ticks ran into each other and the axis titles sat on a tick label
            xaxis=dict(title="time (ms)", range=[min(0.0, float(t.min()) / 1000.0) if n else 0.0, max(t_end, 1.0)],
                       nticks=4),
            yaxis=dict(title="x", range=[width, 0], nticks=4),  # reversed: seen from the front, x grows to the right
            zaxis=dict(title="y", range=[height, 0], nticks=4),  # reversed: row 0 (the top of the digit) at the top
            # Orthographic scenes scale with the chart's height, not its width: 0.8 keeps the whole box
            # (and its tick labels) inside a 525 px wide chart, the Events page at a 1000 px window.
            aspectmode="manual", aspectratio=dict(x=1.92, y=0.8, z=0.8),
            camera=dict(eye=dict(x=-1.2, y=-1.8, z=0.45), up=dict(x=0, y=0, z=1), center=dict(x=0, y=0, z=0.05),
                        projection=dict(type="orthographic")),
        ),
        margin=dict(l=0, r=0, t=40, b=0), height=440,
        legend=dict(itemsizing="constant", orientation="h", x=0, xanchor="left", y=0, yanchor="bottom"),  # under the scene
    )
    return fig


@dataclass(frozen=True)
class Mosaic:
    """Sensor images laid out in a grid inside one array, for one heatmap on one pair of axes.

    A grid of one heatmap per panel, each on its own square axes, makes plotly solve
    one aspect-ratio constraint per panel at every redraw: a redraw of six panels
    settled in about 0.5 s on the busy 2-core machine, against 0.2 s for one heatmap
    holding every panel with empty (NaN: no colour, no hover) gaps between them.
    """

    z: np.ndarray  # float32 (rows * cell_h + gaps, cols * cell_w + gaps); NaN between and around panels
    origins: tuple[tuple[int, int], ...]  # (top, left) of each panel, in the order given
    titles: list[dict]  # one annotation over each titled panel
    x_ticks: dict[int, str]  # 0, 10, 20, 30 of every panel's own pixels, at their place in z
    y_ticks: dict[int, str]

    @classmethod
    def of(cls, rows: Sequence[Sequence[np.ndarray]], titles: Sequence[Sequence[str]] = ()) -> Mosaic:
        """``rows`` of 2-D images (a smaller one sits top-left in its cell), ``titles`` over them, row by row."""
        n_cols = max([1, *(len(row) for row in rows)])
        cell_h = max([1, *(image.shape[0] for row in rows for image in row)])
        cell_w = max([1, *(image.shape[1] for row in rows for image in row)])
        gap_x, gap_y = max(3, cell_w // 7), max(6, cell_h // 4)  # room for tick labels between panels, titles above
        z = np.full((max(1, len(rows) * (cell_h + gap_y) - gap_y), n_cols * (cell_w + gap_x) - gap_x), np.nan,
                    dtype=np.float32)
        origins, notes, x_ticks, y_ticks = [], [], {}, {}
        for r, row in enumerate(rows):
            top = r * (cell_h + gap_y)
            row_titles = list(titles[r]) if r < len(titles) else []
            for c, image in enumerate(row):
                left = c * (cell_w + gap_x)
                h, w = image.shape
                z[top:top + h, left:left + w] = image
                origins.append((top, left))
                x_ticks.update({left + t: str(t) for t in range(0, w, 10)})
                y_ticks.update({top + t: str(t) for t in range(0, h, 10)})
                if c < len(row_titles):
                    notes.append(dict(text=str(row_titles[c]), x=left + (w - 1) / 2, y=top - 0.5, xref="x", yref="y",
                                      xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=11)))
        return cls(z, tuple(origins), notes, x_ticks, y_ticks)

    def axes(self) -> dict:
        """Layout of the one pair of axes: square pixels, row 0 on top, each panel's own pixel ticks."""
        height, width = self.z.shape
        common = dict(showgrid=False, zeroline=False, ticks="", constrain="domain")
        return dict(
            xaxis=dict(common, range=[-0.5, width - 0.5], tickvals=list(self.x_ticks), ticktext=list(self.x_ticks.values()),
                       title=dict(text="x (pixel)", font=dict(size=12))),
            yaxis=dict(common, range=[height - 0.5, -0.5], tickvals=list(self.y_ticks), ticktext=list(self.y_ticks.values()),
                       scaleanchor="x", title=dict(text="y (pixel)", font=dict(size=12))),
        )

    def heatmap(self) -> dict:
        """The one heatmap trace, on the layout's shared colour axis."""
        return dict(type="heatmap", z=self.z, coloraxis="coloraxis", hoverongaps=False,
                    hovertemplate="ON − OFF=%{z}<extra></extra>")


def _diff(frame: np.ndarray) -> np.ndarray:
    """One frame (P, H, W) as ON minus OFF (a one-channel frame as it is)."""
    return frame[1].astype(np.int64) - frame[0].astype(np.int64) if frame.shape[0] > 1 else frame[0]


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
    fig.update_layout(  # the legend under the axis: at the top right it covered the last boundary's label
        title="Event rate", xaxis_title="time (ms)", yaxis_title="events per ms", height=330,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", y=-0.3, x=0.5, xanchor="center", yanchor="top"),
    )
    return fig


def event_projection_figure(events: np.ndarray, bin_us: int = 2000, boundaries_us: Sequence[int] = ()) -> go.Figure:
    """The recording seen along y and along x: ON minus OFF events per time bin and column (x-t), and per row (y-t).

    The three saccades show as three sweeps of the digit across the sensor, the
    boundaries between them as dashed lines.
    """
    x, y, t, p = _as_events(events)
    width, height, _ = SENSOR_SIZE
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("x over time (each column summed over y)", "y over time (each row summed over x)"))
    if len(t):
        t0 = int(t.min())
        n_bins = int((int(t.max()) - t0) // bin_us) + 1
        index = (t - t0) // bin_us
        sign = np.where(p > 0, 1, -1)
        xt = np.zeros((width, n_bins), dtype=np.int64)
        yt = np.zeros((height, n_bins), dtype=np.int64)
        np.add.at(xt, (x, index), sign)
        np.add.at(yt, (y, index), sign)
        lim = float(max(1, np.abs(xt).max(), np.abs(yt).max()))
        times = (t0 + bin_us * (np.arange(n_bins) + 0.5)) / 1000.0
        for row, z, name in ((1, xt, "x"), (2, yt, "y")):
            fig.add_trace(go.Heatmap(z=_compact(z), x=times.astype(np.float32), coloraxis="coloraxis",
                                     hovertemplate="t=%{x:.1f} ms " + name + "=%{y} ON − OFF=%{z}<extra></extra>"), row, 1)
        fig.update_layout(coloraxis=dict(colorscale=POLARITY_SCALE, cmin=-lim, cmax=lim, colorbar=dict(title=dict(text="ON − OFF", side="right"), thickness=10)))
    for b in boundaries_us:
        fig.add_vline(x=b / 1000.0, line=dict(color="#555", dash="dash", width=1.2), row="all", col=1)
    fig.update_yaxes(title_text="x (pixel)", range=[-0.5, width - 0.5], row=1, col=1)
    fig.update_yaxes(title_text="y (pixel)", range=[height - 0.5, -0.5], row=2, col=1)
    fig.update_xaxes(title_text="time (ms)", row=2, col=1)
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def ramp_rgb(values: np.ndarray, stops: Sequence[tuple[float, str]]) -> np.ndarray:
    """Values as RGB (uint8, ``values.shape + (3,)``) on a colour scale given as ``(value, "#rrggbb")`` stops in
    increasing order: linear between stops (plotly's rgb interpolation), the end colours beyond them."""
    at = [float(v) for v, _ in stops]
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c in stops], dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    return np.stack([np.rint(np.interp(values, at, rgb[:, k])) for k in range(3)], axis=-1).astype(np.uint8)


def polarity_stops(lim: float) -> tuple[tuple[float, str], ...]:
    """POLARITY_SCALE over ON minus OFF counts from -lim to lim: OFF blue, white where nothing (or a tie), ON red."""
    return tuple((lim * (2 * f - 1), colour) for f, colour in POLARITY_SCALE)


@dataclass(frozen=True)
class Picture:
    """Sensor images drawn into one PNG: panel i's top-left corner is ``boxes[i]`` (left, top), ``scale`` image
    pixels a sensor pixel, and ``stops[i]`` its colour scale (see :func:`ramp_rgb`)."""

    png: bytes
    boxes: list[tuple[int, int]]
    scale: int
    stops: list[tuple[tuple[float, str], ...]]


@functools.cache
def _font(size: float):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's own TrueType font: the same on every machine


def _rotated_text(text: str, font, fill: str = "#555"):
    """``text`` turned a quarter anticlockwise (a vertical axis's title), on white."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    label = Image.new("RGB", (right - left + 2, bottom - top + 2), "white")
    ImageDraw.Draw(label).text((1 - left, 1 - top), text, fill=fill, font=font)
    return label.rotate(90, expand=True)


def _colour_bar(image, draw, stops: Sequence[tuple[float, str]], box: tuple[int, int, int, int], font) -> None:
    """A colour bar in ``box`` (left, top, right, bottom): horizontal (low on the left, ticks under it) where the box
    is wider than tall, else vertical (high on top, ticks to the right); each stop's value is a tick."""
    from PIL import Image

    left, top, right, bottom = box
    low, high = stops[0][0], stops[-1][0]
    if right - left >= bottom - top:
        ramp = ramp_rgb(np.linspace(low, high, right - left)[None, :].repeat(bottom - top, axis=0), stops)
    else:
        ramp = ramp_rgb(np.linspace(high, low, bottom - top)[:, None].repeat(right - left, axis=1), stops)
    image.paste(Image.fromarray(ramp), (left, top))
    for value, _ in stops:
        f = (value - low) / (high - low) if high > low else 0.0
        text = f"{value:g}" if value >= 0 else f"-{-value:g}"
        if right - left >= bottom - top:
            draw.text((left + f * (right - left), bottom + 2), text, fill="#555", font=font, anchor="mt")
        else:
            draw.text((right + 4, bottom - f * (bottom - top)), text, fill="#555", font=font, anchor="lm")


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # mostly white: small anyway, and fast
    return out.getvalue()


def digit_gallery(recordings: Mapping[int, np.ndarray], columns: int = 5, window_us: int | None = SACCADE_US,
                  scale: int = 7, sensor_size: tuple[int, int, int] = SENSOR_SIZE) -> Picture:
    """One recording per digit (in digit order) as an ON minus OFF image of its first ``window_us`` (one saccade),
    on one colour scale.

    Over one saccade the digit's leading edges are ON (red) and its trailing edges
    OFF (blue), so the stroke reads clearly; over a whole recording the three
    saccades' directions cancel out. ``window_us=None`` takes every event.
    A picture (PNG, labels and colour bar drawn in) rather than a plotly chart: it
    is the first thing a visitor to Home sees, and an image needs none of plotly's
    4.7 MB script (2 s of a 2-core machine's browser); it scales with the window.
    At the default scale it is 1,456 px wide: Streamlit resamples (blurs) a picture
    wider than 1,460 px.
    """
    from PIL import Image, ImageDraw

    digits = sorted(recordings)

    def first(events: np.ndarray) -> np.ndarray:
        if window_us is None or not len(events):
            return events
        return events[events["t"] < int(events["t"].min()) + window_us]

    diffs = [_diff(accumulate(first(recordings[d]), sensor_size)) for d in digits]
    # The 99th percentile, not the maximum: one hot pixel would otherwise wash every image out.
    lim = float(max(1.0, *(np.percentile(np.abs(z[z != 0]), 99) if np.any(z) else 1.0 for z in diffs))) if diffs else 1.0
    stops = tuple((round(v), c) for v, c in polarity_stops(round(lim)))  # whole counts on the bar
    width, height = sensor_size[0] * scale, sensor_size[1] * scale
    font = _font(4.5 * scale)  # readable where a 1000 px window shows the image 540 px wide
    gap, band, bar = 3 * scale, 6 * scale, 3 * scale  # between panels; a panel's label; the colour bar's width
    rows = max(1, math.ceil(len(digits) / columns))
    panels_w, panels_h = columns * width + (columns - 1) * gap, rows * (band + height) + (rows - 1) * gap
    pad = scale  # white on the left, and under the panels for the colour bar's lowest tick (centred on its end)
    image = Image.new("RGB", (pad + panels_w + 2 * gap + bar + 16 * scale, panels_h + 3 * scale), "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    for i, (digit, diff) in enumerate(zip(digits, diffs)):
        left, top = pad + (i % columns) * (width + gap), (i // columns) * (band + height + gap) + band
        image.paste(Image.fromarray(ramp_rgb(diff, stops)).resize((width, height), Image.Resampling.NEAREST),
                    (left, top))
        draw.text((left + width // 2, top - scale), f"digit {digit}", fill="#555", font=font, anchor="md")
        boxes.append((left, top))
    x0 = pad + panels_w + 2 * gap
    _colour_bar(image, draw, stops, (x0, band, x0 + bar, panels_h - scale), font)
    draw.text((image.width - scale, band - scale), "ON - OFF", fill="#555", font=font, anchor="rd")  # no "−" in it
    return Picture(_png(image), boxes, scale, [stops] * len(digits))


def event_image(events: np.ndarray, sensor_size: tuple[int, int, int] = SENSOR_SIZE, scale: int = 8) -> Picture:
    """The recording accumulated into images, drawn into one PNG: ON count, OFF count and ON minus OFF.

    Each panel has its pixel axes (ticks every 10 pixels) and its colour bar under it,
    in the app's polarity colours. A picture rather than a chart: this is the first
    view a new visitor waits for, and a picture needs no chart script in the browser
    (Vega-Lite's charts took 0.4 s more of a cold first view, plotly's about 2 s); it
    scales with the window, three panels side by side at any width (1,156 px wide at
    the default scale: Streamlit resamples, and blurs, a picture wider than 1,460 px).
    """
    from PIL import Image, ImageDraw

    counts = accumulate(events, sensor_size)
    on, off = counts[1], counts[0]
    diff = on - off
    lim = max(1, int(np.abs(diff).max()))
    panels = (("ON events", on, ((0, "#ffffff"), (max(1, int(on.max())), ON_COLOR))),
              ("OFF events", off, ((0, "#ffffff"), (max(1, int(off.max())), OFF_COLOR))),
              ("ON - OFF", diff, polarity_stops(lim)))  # the font has no "−"
    w, h = sensor_size[0] * scale, sensor_size[1] * scale
    font = _font(3.5 * scale)
    left_m, top_m, gap = 10 * scale, 5 * scale, 3 * scale  # y label and ticks; the title; between panels
    pad = scale // 2  # white left of the first y label
    block = left_m + w + 2 * scale
    bar_top = top_m + h + 9 * scale  # under the x ticks and the x label
    image = Image.new("RGB", (pad + 3 * block + 2 * gap, bar_top + 7 * scale), "white")
    draw = ImageDraw.Draw(image)
    y_label = _rotated_text("y (pixel)", font)
    boxes = []
    for i, (title, values, stops) in enumerate(panels):
        left, top = pad + i * (block + gap) + left_m, top_m
        image.paste(Image.fromarray(ramp_rgb(values, stops)).resize((w, h), Image.Resampling.NEAREST), (left, top))
        draw.rectangle((left - 1, top - 1, left + w, top + h), outline="#dddddd")
        draw.text((left + w // 2, top - scale), title, fill="#31333f", font=font, anchor="md")
        for tick in range(0, max(sensor_size[:2]), 10):
            if tick < sensor_size[0]:
                draw.text((left + tick * scale + scale // 2, top + h + scale // 2), str(tick), fill="#555", font=font,
                          anchor="mt")
            if tick < sensor_size[1]:
                draw.text((left - scale, top + tick * scale + scale // 2), str(tick), fill="#555", font=font,
                          anchor="rm")
        draw.text((left + w // 2, top + h + 5 * scale), "x (pixel)", fill="#555", font=font, anchor="mt")
        image.paste(y_label, (left - left_m, top + (h - y_label.height) // 2))
        _colour_bar(image, draw, stops, (left + scale, bar_top, left + w - scale, bar_top + 2 * scale), font)
        boxes.append((left, top))
    return Picture(_png(image), boxes, scale, [stops for _, _, stops in panels])


def _polarity_heat(lim: float) -> dict:
    """Heatmap settings of ON minus OFF counts: the app's polarity colours (OFF blue, none white, ON red)."""
    return dict(colorscale=POLARITY_SCALE, zmin=-lim, zmax=lim)


def _compact(values: np.ndarray) -> np.ndarray:
    """Counts in the smallest integer type that holds them (plotly sends numpy arrays as typed binary)."""
    if values.dtype.kind not in "iu":
        return values.astype(np.float32)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.float64)


def event_count_figure(before: np.ndarray, after: np.ndarray, bin_us: int | None = None) -> go.Figure:
    """Events per millisecond over time, before and after a pipeline's event steps: what a filter removed, and when.

    ``bin_us`` defaults to about 150 bins over the recording, in whole milliseconds.
    Both curves share the bins (from the first to the last timestamp of either).
    """
    t_before = np.asarray(before["t"], dtype=np.float64)
    t_after = np.asarray(after["t"], dtype=np.float64)
    both = np.concatenate([t_before, t_after])
    data = []
    if len(both):
        first, last = float(both.min()), float(both.max())
        if bin_us is None:
            bin_us = max(1000, int(round((last - first) / 150 / 1000)) * 1000)
        edges = first + bin_us * np.arange(int((last - first) // bin_us) + 2)
        centres_ms = (edges[:-1] + bin_us / 2) / 1000.0
        scale = 1000.0 / bin_us
        kept = np.histogram(t_after, bins=edges)[0] * scale
        data = [dict(type="scatter", x=centres_ms, y=np.histogram(t_before, bins=edges)[0] * scale,
                     name=f"before ({len(t_before):,})", mode="lines", line=dict(color="#b0b0b0", width=1),
                     fill="tozeroy", fillcolor="rgba(176,176,176,0.35)"),
                dict(type="scatter", x=centres_ms, y=kept, name=f"after ({len(t_after):,})", mode="lines",
                     line=dict(color="#2b2b2b", width=1.6))]
    removed = len(t_before) - len(t_after)
    title = "Events over time" + (f": {removed:,} removed" if removed > 0 else "")
    # one constructor of plain dicts: add_trace and magic underscores validate the figure again each time, and
    # this chart is rebuilt at every edit on the Transforms page
    return go.Figure(data=data, layout=dict(
        title=dict(text=title), xaxis=dict(title=dict(text="time (ms)")), yaxis=dict(title=dict(text="events per ms")),
        height=280, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.3, x=0.5, xanchor="center", yanchor="top"),
    ))


def frames_figure(
    frames: np.ndarray, labels: Sequence[str] | None = None, title: str = "Frames", start: int = 0
) -> go.Figure:
    """Frames (T, 2, H, W) as ON minus OFF images with a play button and a time slider, opening on frame ``start``.

    The animation runs in the browser (plotly frames), so scrubbing never
    reruns the page. The images go to the browser as typed binary arrays (a few
    bytes a pixel), not as lists of numbers.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise ValueError(f"frames must have shape (T, 2, H, W), got {frames.shape}")
    n = len(frames)
    if frames.dtype.kind in "iub":
        diff = frames[:, 1].astype(np.int64) - frames[:, 0].astype(np.int64)
    else:
        diff = frames[:, 1].astype(np.float32) - frames[:, 0].astype(np.float32)
    if not n:
        diff = np.zeros((1, *frames.shape[2:]), dtype=np.int64)
    lim = float(max(1.0, np.abs(diff).max()))
    diff = _compact(diff)
    start = min(max(0, int(start)), max(0, n - 1))
    labels = [str(s) for s in (labels if labels is not None else range(n))]
    heat = dict(**_polarity_heat(lim), colorbar=dict(thickness=8, thicknessmode="pixels", len=0.8, lenmode="fraction",
                                                     title=dict(text="ON − OFF", side="right")),  # upright: no width
                hovertemplate="x=%{x} y=%{y} ON − OFF=%{z}<extra></extra>")
    steps = [dict(method="animate", label=labels[i],
                  args=[[labels[i]], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])
             for i in range(n)]
    layout = dict(
        title=dict(text=title), height=460, margin=dict(l=10, r=10, t=40, b=10),
        yaxis=dict(title=dict(text="y (pixel)"), autorange="reversed", scaleanchor="x", constrain="domain"),
        xaxis=dict(title=dict(text="x (pixel)"), constrain="domain"),
        # the slider under the plot, the play buttons under the slider: left of the plot they would narrow it
        sliders=[dict(steps=steps, active=start, currentvalue=dict(prefix="frame: "), pad=dict(t=30), x=0, len=1)] if n else [],
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0, y=0, xanchor="left", yanchor="top", pad=dict(t=105),
                          buttons=[dict(label="▶", method="animate",
                                        args=[None, dict(frame=dict(duration=80, redraw=True), fromcurrent=True, transition=dict(duration=0))]),
                                   dict(label="❚❚", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])] if n else [],
    )
    # one constructor (fig.update(frames=...) and update_layout validated every frame a second time: most of the
    # Transforms page's script time at each edit)
    return go.Figure(data=[dict(type="heatmap", z=diff[start], **heat)], layout=layout,
                     frames=[dict(data=[dict(type="heatmap", z=diff[i])], traces=[0], name=labels[i]) for i in range(n)])


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


def _polarity_diffs(rows: Sequence[np.ndarray]) -> tuple[list[list[np.ndarray]], float]:
    """Rows of frames (each (T, P, H, W)) as ``frame[1] - frame[0]`` images, and the limit of the symmetric colour
    scale they share (at least 1)."""
    diffs = [[_diff(frame) for frame in np.asarray(frames)] for frames in rows]
    return diffs, max([1.0, *(float(np.abs(z).max()) for row in diffs for z in row if z.size)])


def event_grid_figure(frames: np.ndarray, title: str = "", subtitles: Sequence[str] | None = None) -> go.Figure:
    """Frames side by side as ``frame[1] - frame[0]``, as plot_event_grid draws them, in the app's polarity colours.

    One colour scale for all panels (ON red, OFF blue, white where they cancel
    or nothing happened), labelled pixel axes and ``subtitles`` over the panels
    (the time each one covers, say).
    """
    diffs, lim = _polarity_diffs([frames])
    mosaic = Mosaic.of(diffs, [list(subtitles)] if subtitles is not None else [])
    return go.Figure(data=[mosaic.heatmap()], layout=dict(
        **mosaic.axes(), annotations=mosaic.titles, meta=dict(origins=mosaic.origins),
        title=dict(text=title) if title else None, height=300, margin=dict(l=5, r=5, t=60 if title else 30, b=5),
        coloraxis=dict(colorscale=POLARITY_SCALE, cmin=-lim, cmax=lim, colorbar=dict(title=dict(text="ON − OFF"),
                                                                                     thickness=12, len=0.9)),
    ))


def event_grids_image(rows: Sequence[tuple[str, np.ndarray, Sequence[str]]], panel_px: int = 204) -> Picture:
    """Rows of frames side by side as ``frame[1] - frame[0]`` (plot_event_grid's view) on one polarity scale, as a PNG.

    Each row is ``(name, frames (T, P, H, W), a title per frame)``: the recording
    before a pipeline and after its event steps, say, so their intensities compare.
    ON is red, OFF blue, white where they cancel or nothing happened. Every row has
    its name and pixel ticks on the left, the x ticks and the colour bar lie under the
    last row; one scale (sensor pixels to image pixels) for all, so a smaller sensor
    (after Downsample) looks smaller, top-left in its cell. A picture rather than a
    chart: it fills its column at any width (a plotly grid of square axes in a narrow
    column left white bands above and below a small grid) and needs no chart script.
    """
    from PIL import Image, ImageDraw

    diffs, lim = _polarity_diffs([frames for _, frames, _ in rows])
    stops = polarity_stops(lim)
    n_cols = max([1, *(len(row) for row in diffs)])
    sizes = [(max([0, *(z.shape[0] for z in row)]), max([0, *(z.shape[1] for z in row)])) for row in diffs]
    scale = max(1, panel_px // max([1, *(max(size) for size in sizes)]))
    unit = 6  # the layout's unit (image pixels): margins, gaps and the font scale with it, not with the sensor
    font = _font(4.5 * unit)  # about 10 px where the column is 270 px wide (a 1000 px window)
    left_m, band, gap, ticks = 12 * unit, 6 * unit, 3 * unit, 6 * unit  # row name, y ticks; title; between; x ticks
    cell_w = max([1, *(w for _, w in sizes)]) * scale
    panels_w = n_cols * cell_w + (n_cols - 1) * gap
    # x ticks under a row whose panels are not as wide as the next row's (a Downsample), and under the last
    tick_rows = [r == len(sizes) - 1 or sizes[r][1] != sizes[r + 1][1] for r in range(len(sizes))]
    tops = np.cumsum([0] + [band + h * scale + (ticks if t else 0) for (h, _), t in zip(sizes, tick_rows)]).tolist()
    bar_top = tops[-1] + 7 * unit  # under the x label
    image = Image.new("RGB", (left_m + panels_w + 2 * unit, bar_top + 8 * unit), "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    for r, ((name, _, titles), row) in enumerate(zip(rows, diffs)):
        top, (h, w) = tops[r] + band, sizes[r]
        label = _rotated_text(str(name), font, fill="#31333f")
        image.paste(label, (unit // 2, top + (h * scale - label.height) // 2))
        for tick in range(0, h, 10):
            draw.text((left_m - unit, top + tick * scale + scale // 2), str(tick), fill="#555", font=font, anchor="rm")
        for c, z in enumerate(row):
            left = left_m + c * (cell_w + gap)
            panel = Image.fromarray(ramp_rgb(z, stops)).resize((z.shape[1] * scale, z.shape[0] * scale),
                                                               Image.Resampling.NEAREST)
            image.paste(panel, (left, top))
            draw.rectangle((left - 1, top - 1, left + panel.width, top + panel.height), outline="#dddddd")
            if c < len(titles):
                draw.text((left + panel.width // 2, top - unit), str(titles[c]).replace("\u2013", "-"), fill="#555",
                          font=font, anchor="md")  # the font has no en dash
            boxes.append((left, top))
            if tick_rows[r]:
                for tick in range(0, w, 10):
                    draw.text((left + tick * scale + scale // 2, top + h * scale + unit), str(tick), fill="#555",
                              font=font, anchor="mt")
    draw.text((left_m + panels_w // 2, tops[-1]), "x, y (pixel)", fill="#555", font=font, anchor="mt")
    bar_w = max(20 * unit, panels_w // 3)
    bar_left = left_m + (panels_w - bar_w) // 2
    _colour_bar(image, draw, stops, (bar_left, bar_top, bar_left + bar_w, bar_top + 2 * unit), font)
    draw.text((bar_left - 2 * unit, bar_top + unit), "ON - OFF", fill="#555", font=font, anchor="rm")
    return Picture(_png(image), boxes, scale, [stops] * len(boxes))


# --------------------------------------------------------------------------- training


def smooth(values: Sequence[float], window: int | None = None) -> list[float]:
    """An exponential moving average (debiased, as TensorBoard's), over about ``window`` points.

    ``window=None`` picks one from the length: a tenth of the points, 1 to 50. Non-finite
    values pass through unsmoothed and do not disturb the average.
    """
    n = len(values)
    if window is None:
        window = max(1, min(50, n // 10))
    if window <= 1 or n == 0:
        return [float(v) for v in values]
    alpha = 2.0 / (window + 1)
    out, average, weight = [], 0.0, 0.0
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            out.append(v)
            continue
        average = (1 - alpha) * average + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(average / weight)
    return out


_RUN_COLORS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52"]
TEST_COLOR = "#2ca02c"  # test accuracy of a single run: its own colour, not the training curves'
ACCURACY_RANGE = (0.0, 1.02)  # a minibatch-accuracy panel: 0 to 100 %, room above for the line


def zoomed_accuracy_range(values: Sequence[float]) -> list[float]:
    """The y range of a test-accuracy panel: its points with a margin, within 0 to 100 %.

    Test points of trained runs lie a few tenths of a per cent apart (98.2 and 98.4 %), and
    on a 0 to 100 % axis they were one line; a run still learning spans a wide range anyway.
    """
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return list(ACCURACY_RANGE)
    low, high = min(finite), max(finite)
    margin = max(0.005, 0.1 * (high - low))
    return [max(0.0, low - margin), min(ACCURACY_RANGE[1], high + margin)]


def _accuracy_axis(fig: go.Figure, y_range: Sequence[float], chance: float | None, row: int, col: int, **label) -> None:
    """An accuracy panel's y axis over ``y_range`` (tenths of a per cent where it is narrow), and a dotted line at
    the ``chance`` accuracy where the range shows it."""
    fig.update_yaxes(range=list(y_range), tickformat=".1%" if y_range[1] - y_range[0] < 0.1 else ".0%", row=row, col=col)
    if chance is not None and y_range[0] <= chance <= y_range[1]:
        fig.add_hline(y=chance, line=dict(color="#888", dash="dot", width=1), row=row, col=col, **label)


def training_curves_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[tuple[str, str]] = (("loss", "loss"), ("accuracy", "minibatch accuracy")),
    x: str = "iteration",
    window: int | None = None,
    raw: bool = False,
    chance: float | None = None,
) -> go.Figure:
    """One panel per metric, one line per run, then a panel of test accuracy where a run has test points.

    ``histories[run][column]`` are equal-length lists. The training curves are smoothed
    (:func:`smooth`, ``window`` points) with the raw values as faint lines where ``raw``;
    test accuracy (``test_iteration``, ``test_accuracy``) is a series of its own: large
    markers on solid lines, with the ``chance`` level as a dotted line.
    """
    keys = [key for key, _ in metrics]
    has_test = any(len(h.get("test_accuracy", ())) for h in histories.values())
    titles = [title + (" (smoothed)" if window != 1 else "") for _, title in metrics]
    if has_test:
        titles.append("test accuracy")
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.07)
    single = len(histories) == 1
    for k, (name, history) in enumerate(histories.items()):
        color = _RUN_COLORS[k % len(_RUN_COLORS)]
        xs = list(history.get(x, range(len(next(iter(history.values()), [])))))
        for col, key in enumerate(keys, start=1):
            values = list(history.get(key, ()))
            if not values:
                continue
            if raw:
                fig.add_trace(go.Scatter(x=xs[: len(values)], y=values, mode="lines", name=f"{name} (raw)",
                                         legendgroup=name, showlegend=False, opacity=0.3,
                                         line=dict(color=color, width=1)), 1, col)
            fig.add_trace(go.Scatter(x=xs[: len(values)], y=smooth(values, window), mode="lines", name=name,
                                     legendgroup=name, showlegend=col == 1, line=dict(color=color, width=2.2)), 1, col)
        if has_test and len(history.get("test_accuracy", ())):
            fig.add_trace(go.Scatter(
                x=list(history.get("test_iteration", [])), y=list(history["test_accuracy"]), mode="markers+lines",
                name=f"{name} (test)", legendgroup=name, showlegend=False,
                marker=dict(color=TEST_COLOR if single else color, size=10, symbol="diamond",
                            line=dict(color="white", width=1)),
                line=dict(color=TEST_COLOR if single else color, width=2.5),
                hovertemplate="iteration %{x}: test accuracy %{y:.1%}<extra>" + name + "</extra>",
            ), 1, len(titles))
    tests = [v for h in histories.values() for v in h.get("test_accuracy", ())]
    for col, key in enumerate([*keys, *(["test_accuracy"] if has_test else [])], start=1):
        fig.update_xaxes(title_text=x, row=1, col=col)
        if "acc" in key:
            y_range = zoomed_accuracy_range(tests) if key == "test_accuracy" else ACCURACY_RANGE
            _accuracy_axis(fig, y_range, chance, 1, col, annotation_text="chance", annotation_position="bottom right")
    fig.update_xaxes(matches="x")  # every panel over the same iterations (a lone test point stays in place)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def compare_runs_figure(
    runs: Sequence[Mapping[str, object]], window: int | None = None, raw: bool = False, chance: float | None = None
) -> go.Figure:
    """Several runs side by side, like with like: test accuracy, minibatch accuracy, and one loss panel per loss.

    Each run is a mapping with ``label``, ``loss_name`` and the columns of
    :func:`training_curves_figure`. Accuracies compare across every run; losses only
    between runs of the same loss function (an mse_count loss of ~30 and a ce_rate
    loss of ~2 on one axis would say nothing), so each loss function has its own panel.
    """
    losses = list(dict.fromkeys(str(r.get("loss_name") or "unknown loss") for r in runs)) or ["loss"]
    cols = max(2, len(losses))
    titles = ["test accuracy", "minibatch accuracy (smoothed)"] + [""] * (cols - 2)
    titles += [f"loss: {name} (smoothed)" for name in losses] + [""] * (cols - len(losses))
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.07, vertical_spacing=0.2)
    for k, run in enumerate(runs):
        label = str(run.get("label", f"run {k}"))
        color = _RUN_COLORS[k % len(_RUN_COLORS)]
        xs = list(run.get("iteration", ()))  # type: ignore[arg-type]
        tests = list(run.get("test_accuracy", ()))  # type: ignore[arg-type]
        if tests:
            fig.add_trace(go.Scatter(x=list(run.get("test_iteration", ())), y=tests, mode="markers+lines",  # type: ignore[arg-type]
                                     name=label, legendgroup=label, showlegend=True,
                                     marker=dict(color=color, size=9, symbol="diamond"), line=dict(color=color, width=2.5),
                                     hovertemplate="iteration %{x}: test accuracy %{y:.1%}<extra>" + label + "</extra>"),
                          1, 1)
        accuracy = list(run.get("accuracy", ()))  # type: ignore[arg-type]
        loss = list(run.get("loss", ()))  # type: ignore[arg-type]
        panels = ((1, 2, accuracy), (2, 1 + losses.index(str(run.get("loss_name") or "unknown loss")), loss))
        for row, col, values in panels:
            if not values:
                continue
            if raw:
                fig.add_trace(go.Scatter(x=xs[: len(values)], y=values, mode="lines", name=f"{label} (raw)",
                                         legendgroup=label, showlegend=False, opacity=0.3,
                                         line=dict(color=color, width=1)), row, col)
            fig.add_trace(go.Scatter(x=xs[: len(values)], y=smooth(values, window), mode="lines", name=label,
                                     legendgroup=label, showlegend=not tests and row == 1,
                                     line=dict(color=color, width=2)), row, col)
    for row in (1, 2):
        for col in range(1, cols + 1):
            fig.update_xaxes(title_text="iteration", row=row, col=col)
    tests = [v for run in runs for v in run.get("test_accuracy", ())]  # type: ignore[attr-defined]
    for col, y_range in ((1, zoomed_accuracy_range(tests)), (2, ACCURACY_RANGE)):
        _accuracy_axis(fig, y_range, chance, 1, col)
    fig.update_xaxes(matches="x")
    fig.update_layout(height=620, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.12))
    return fig


def confusion_matrix_figure(matrix: np.ndarray, labels: Sequence[str] = DIGITS) -> go.Figure:
    """Confusion matrix (rows: true digit, columns: predicted), counts annotated on cells shaded by them (no colour
    bar: the counts are written, and in half a 1000 px window a bar left the cells 11 px across)."""
    m = np.asarray(matrix)
    fig = go.Figure(go.Heatmap(z=m, x=list(labels), y=list(labels), colorscale="Blues", text=m, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>", showscale=False))
    n = len(m)
    # Fixed ranges: an invisible marker on every cell (the Mistakes page's click targets) would otherwise pad them, and
    # "domain" shrinks the plot to the square rather than widening a range: the ticks stay against the cells.
    fig.update_layout(xaxis_title="predicted digit", yaxis_title="true digit",
                      yaxis=dict(range=[n - 0.5, -0.5], scaleanchor="x", constrain="domain"),
                      height=420, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(side="bottom", type="category", range=[-0.5, n - 0.5], constrain="domain"))
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
    """How the spike-count MP4 is drawn; the picture reproduces the tutorial's ``spike_count`` call.

    The timing does too where the record is long enough (``fps``); a shorter one is slowed
    down or its frames held, so that the video lasts ``min_seconds`` (see :func:`video_timing`).
    """

    figsize: tuple[float, float] = (12.0, 7.0)  # the tutorial's plt.subplots(figsize=(12, 7))
    dpi: int = 100  # matplotlib's default figure dpi, which anim.save uses
    interpolate: int = 1  # frames per time step (spike_count's `interpolate`)
    fps: float = 40.0  # spike_count's interval=25 ms -> 40 frames per second
    min_seconds: float = 3.0  # shortest video: 10 steps at 40 fps (0.25 s) would be over before anyone sees it
    min_fps: float = 10.0  # slowest frame rate before frames are held instead
    gridshader: bool = True
    crf: int = 23  # libx264 quality (lower is better)
    preset: str = "veryfast"  # libx264 speed/size trade-off

    def __post_init__(self) -> None:
        if self.interpolate < 1:
            raise ValueError(f"interpolate must be at least 1, got {self.interpolate}")
        if self.fps <= 0 or self.min_fps <= 0:
            raise ValueError(f"fps and min_fps must be positive, got {self.fps} and {self.min_fps}")
        if self.min_fps > self.fps:
            raise ValueError(f"min_fps ({self.min_fps}) must not exceed fps ({self.fps})")
        if not 0 <= self.min_seconds <= 600:
            raise ValueError(f"min_seconds must lie in [0, 600], got {self.min_seconds}")
        if self.dpi <= 0 or min(self.figsize) <= 0:
            raise ValueError("figsize and dpi must be positive")


def video_timing(frames: int, config: SpikeVideoConfig = SpikeVideoConfig()) -> tuple[Fraction, int]:
    """The MP4's frame rate and how many times each drawn frame is shown (held), for ``frames`` drawn frames.

    ``config.fps`` where the frames last ``min_seconds`` at that rate; else a slower rate that
    makes the video last exactly ``min_seconds``; below ``min_fps`` that rate would stutter, so
    each frame is held for several video frames instead, at a rate between ``min_fps`` and twice it.
    """
    if frames < 1:
        raise ValueError(f"a video needs at least one frame, got {frames}")
    fps = Fraction(config.fps).limit_denominator(1001)
    seconds = Fraction(config.min_seconds).limit_denominator(1000)
    if frames >= fps * seconds:
        return fps, 1
    hold = max(1, math.ceil(Fraction(config.min_fps).limit_denominator(1001) * seconds / frames))
    return Fraction(frames * hold) / seconds, hold


# spike_count sets these rcParams after the tutorial made its axes, so they
# reach the ticks and texts but not the spines, which keep matplotlib's black.
_SC_RC = {
    "axes.edgecolor": "black", "axes.linewidth": 0.8, "xtick.color": _SC_TEXT,
    "ytick.color": _SC_TEXT, "text.color": _SC_TEXT, "figure.facecolor": "white",
}


TITLE_BAND = 0.115  # the top of the figure that holds a video's title (spike_count leaves it blank: axes start at 0.88)


def _spike_count_axes(data: np.ndarray, labels: Sequence[str], config: SpikeVideoConfig, title: str | None = None):
    """One Agg figure styled as spike_count draws it, and its moving artists (bars, dots, time line).

    ``title`` (at most two lines) goes in the figure's top margin, above the axes, where
    spike_count's own figure is blank: the plot itself stays exactly spike_count's.
    """
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
        if title:
            fig.text(0.5, 0.985, title, ha="center", va="top", fontsize=18, color=_SC_TEXT, linespacing=1.3,
                     parse_math=False)
    return fig, ax, bars, dots, line


def spike_count_frames(
    spk, labels: Sequence[str] = DIGITS, config: SpikeVideoConfig = SpikeVideoConfig(), title: str | None = None
):
    """Yield the RGBA frames (H, W, 4) uint8 of the spike-count animation, one per frame.

    Draws the static parts once (``title`` among them), then per frame restores that
    background and redraws only the bars, the dots and the time line (blitting): the
    same picture spike_count's Camera animation produces, at a fraction of the cost.
    """
    data = _spike_array(spk)
    steps, n = data.shape
    counts = np.vstack([np.zeros((1, n), np.float32), np.cumsum(data, axis=0)])
    fig, ax, bars, dots, line = _spike_count_axes(data, labels, config, title)
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
    title: str | None = None,
) -> bytes:
    """The animated spike-count histogram as H.264 MP4 bytes, drawn as snntorch.spikeplot.spike_count draws it.

    Frames are piped as raw RGBA into ffmpeg (imageio-ffmpeg's bundled binary), at the
    rate :func:`video_timing` chooses, each held as many times as it says, so that even a
    short record makes a video of ``config.min_seconds``. ``title`` (the run, the sample,
    its label and the prediction) is written above the plot. ``progress(frames_done,
    frames_total)`` counts drawn frames and is called every 25 of them.
    """
    import imageio_ffmpeg

    data = _spike_array(spk)
    if data.shape[0] == 0:
        raise ValueError("the spike record has no time steps")
    width, height = int(round(config.figsize[0] * config.dpi)), int(round(config.figsize[1] * config.dpi))
    total = data.shape[0] * config.interpolate
    fps, hold = video_timing(total, config)
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="spike_count_")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), pix_fmt_in="rgba", pix_fmt_out="yuv420p", fps=fps, codec="libx264",
            macro_block_size=2, quality=None,
            output_params=["-preset", config.preset, "-crf", str(config.crf), "-movflags", "+faststart"],
        )
        writer.send(None)
        for i, frame in enumerate(spike_count_frames(data, labels, config, title)):
            if progress is not None and i % 25 == 0:
                progress(i, total)
            if frame.shape[:2] != (height, width):
                raise RuntimeError(f"canvas is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
            for _ in range(hold):
                writer.send(frame)  # the canvas buffer itself: no copy
        writer.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


# --------------------------------------------------------------------------- layer view and learned weights

NEURON_SELECTED = "#111111"  # the outline of the neuron picked for its membrane trace
SPIKE_MARK = "#111111"


def mosaic(maps: np.ndarray, cols: int, gap: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (N, H, W) tiled ``cols`` to a row, NaN between them: (image, x offset of each map, y offset of each map)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    cols = max(1, min(int(cols), n))
    rows = math.ceil(n / cols)
    image = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, dtype=np.float32)
    x0 = (np.arange(n) % cols) * (w + gap)
    y0 = (np.arange(n) // cols) * (h + gap)
    for i in range(n):
        image[y0[i]:y0[i] + h, x0[i]:x0[i] + w] = maps[i]
    return image, x0, y0


def mosaic_columns(n: int, h: int, w: int, aspect: float = 3.2) -> int:
    """Maps a row so that ``n`` maps of h x w make a mosaic about ``aspect`` times as wide as tall."""
    best, best_err = 1, math.inf
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        err = abs(math.log((cols * (w + 1)) / (rows * (h + 1)) / aspect))
        if err < best_err - 1e-9:
            best, best_err = cols, err
    return best


def _mosaic_axes(image: np.ndarray) -> dict:
    rows, cols = image.shape
    return dict(
        xaxis=dict(range=[-0.5, cols - 0.5], showticklabels=False, ticks="", showgrid=False, zeroline=False,
                   showline=False, constrain="domain", fixedrange=True),
        yaxis=dict(range=[rows - 0.5, -0.5], showticklabels=False, ticks="", showgrid=False, zeroline=False,
                   showline=False, scaleanchor="x", constrain="domain", fixedrange=True),
    )


def layer_maps_figure(
    values: np.ndarray,
    spikes: np.ndarray | None,
    *,
    limit: float,
    title: str,
    colorbar_title: str,
    value_name: str,
    selected: tuple[int, int, int] | None = None,
    pool: int = 1,
    cols: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """One layer at one time step: its maps (C, H, W) tiled, red above zero and blue below (clipped at ``limit``).

    ``spikes`` (C, H, W bool) are drawn as black dots; every neuron also carries an invisible
    WebGL marker, so a click on it selects it (plotly's selection events do not work on heatmaps).
    With ``pool`` > 1 the maps are the convolution before pooling: the markers sit at the centres of
    the pool cells (one per neuron, hovering names the cell's strongest value) and a click selects
    that neuron. ``selected`` (channel, y, x) is outlined.
    """
    values = np.asarray(values, dtype=np.float32)
    c, h, w = values.shape
    cols = cols or mosaic_columns(c, h, w)
    image, x0, y0 = mosaic(values, cols)
    # one clickable marker per neuron: with pool > 1 at the centre of its pool cell (a quarter of the markers,
    # which are most of the browser's drawing time), carrying the cell's strongest value. WebGL, not SVG: an SVG
    # marker is a DOM element styled one by one, and redrawing 3,500 of them at every sample change or time step
    # took 0.3 s of the browser (WebGL: 0.08 s; its first draw costs 0.2 s more, once per page)
    ph, pw = h // pool, w // pool
    cells = values[:, : ph * pool, : pw * pool].reshape(c, ph, pool, pw, pool).transpose(0, 1, 3, 2, 4)
    cells = cells.reshape(c, ph, pw, pool * pool)
    strongest = np.take_along_axis(cells, np.abs(cells).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    ch, yy, xx = np.meshgrid(np.arange(c), np.arange(ph), np.arange(pw), indexing="ij")
    centre = (pool - 1) / 2
    px, py = (x0[ch] + xx * pool + centre).ravel(), (y0[ch] + yy * pool + centre).ravel()
    custom = np.stack([ch.ravel(), yy.ravel(), xx.ravel(), strongest.ravel()], axis=1).astype(np.float32)
    lim = float(limit) if limit and math.isfinite(limit) and limit > 0 else 1.0
    data: list[dict] = [
        dict(type="heatmap", z=image, zmin=-lim, zmax=lim, colorscale=POLARITY_SCALE, hoverinfo="skip",
             colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=10, len=0.9)),
        dict(type="scattergl", x=px.astype(np.float32 if pool > 1 else np.int16),
             y=py.astype(np.float32 if pool > 1 else np.int16), mode="markers", name="neurons", customdata=custom,
             marker=dict(symbol="square-open", size=9, color=NEURON_SELECTED, opacity=0.0),
             selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.0)),
             hovertemplate=f"map %{{customdata[0]}}, row %{{customdata[1]}}, column %{{customdata[2]}}<br>{value_name} "
                           "%{customdata[3]:.3f}<extra></extra>" if pool == 1 else
                           f"map %{{customdata[0]}}, pooled neuron (row %{{customdata[1]}}, column %{{customdata[2]}})"
                           f"<br>strongest {value_name} of its {pool} x {pool} cell %{{customdata[3]:.3f}}<extra></extra>"),
    ]
    if spikes is not None:
        sc, sy, sx = np.nonzero(np.asarray(spikes, dtype=bool))
        data.append(dict(type="scatter", x=(x0[sc] + sx).astype(np.int16), y=(y0[sc] + sy).astype(np.int16),
                         mode="markers", name="spikes", hoverinfo="skip",
                         marker=dict(symbol="circle", size=5, color=SPIKE_MARK)))
    if selected is not None and 0 <= selected[0] < c:
        sel_c, sel_y, sel_x = selected
        size = pool
        sx0, sy0 = x0[sel_c] + sel_x * size - 0.5, y0[sel_c] + sel_y * size - 0.5
        shapes = [dict(type="rect", x0=sx0, x1=sx0 + size, y0=sy0, y1=sy0 + size, line=dict(color=NEURON_SELECTED, width=2))]
    else:
        shapes = []
    if height is None:  # the mosaic fills a 650 px wide plot (a 1000 px window); wider windows leave room beside it
        height = int(min(420, max(200, 60 + 650 * image.shape[0] / image.shape[1])))
    layout = dict(
        title=dict(text=title, font=dict(size=15)), height=height, margin=dict(l=10, r=10, t=40, b=10),
        showlegend=False, plot_bgcolor="#ffffff", clickmode="event+select", dragmode=False, hovermode="closest",
        shapes=shapes, **_mosaic_axes(image),
    )
    return go.Figure(data=data, layout=layout)


def input_frame_figure(frame: np.ndarray, title: str = "Input frame", height: int = 300) -> go.Figure:
    """One input frame (2, H, W) as ON minus OFF events, the app's polarity colours (ON red, OFF blue; no colour
    bar: it sits beside the output layer's chart, where width is short)."""
    frame = np.asarray(frame)
    diff = frame[1].astype(np.float32) - frame[0].astype(np.float32)
    lim = float(max(1.0, np.abs(diff).max()))
    z = _compact(diff.astype(np.int64)) if np.all(diff == np.round(diff)) else diff
    return go.Figure(
        data=[dict(type="heatmap", z=z, **_polarity_heat(lim), showscale=False,
                   hovertemplate="x=%{x} y=%{y} ON − OFF=%{z}<extra></extra>")],
        layout=dict(title=dict(text=title, font=dict(size=15)), height=height, margin=dict(l=0, r=0, t=40, b=10),
                    # one axis title for both: a y title beside the ticks took a narrow column's width from the image
                    xaxis=dict(title=dict(text="x, y (pixel)", standoff=4), constrain="domain", fixedrange=True),
                    yaxis=dict(autorange="reversed", scaleanchor="x", constrain="domain", fixedrange=True)))


def output_layer_figure(mem: np.ndarray, spikes: np.ndarray, counts: np.ndarray, threshold: float,
                        selected: int | None = None, height: int = 300,
                        title: str = "Output layer") -> go.Figure:
    """The output neurons at one time step: membrane as bars (red where it spikes now), threshold dashed,
    spikes so far written on each bar. A click on a bar selects that neuron. (A population code's many
    neurons: ``output_population_figure``.)"""
    mem = np.asarray(mem, dtype=np.float32)
    spikes = np.asarray(spikes, dtype=bool)
    n = len(mem)
    colors = [ON_COLOR if s else "#9aa5b1" for s in spikes]
    low = float(min(0.0, mem.min() if n else 0.0)) * 1.15
    high = float(max(threshold, mem.max() if n else 0.0)) * 1.25
    return go.Figure(
        data=[dict(
            type="bar", x=[str(k) for k in range(n)], y=mem,
            marker=dict(color=colors, line=dict(width=[3 if selected == k else 0 for k in range(n)],
                                                color=NEURON_SELECTED)),
            customdata=np.stack([np.arange(n), np.asarray(counts, dtype=np.int64)], axis=1),
            text=[f"{int(c)}" for c in counts], textposition="outside",
            cliponaxis=False,
            hovertemplate="neuron %{x}: membrane %{y:.3f}, %{customdata[1]} spikes so far<extra></extra>",
            selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=1.0)),
        )],
        layout=dict(
            shapes=[_hline(threshold, dict(color="#555", dash="dash", width=1))],
            title=dict(text=title, font=dict(size=15)), height=height,
            margin=dict(l=10, r=10, t=40, b=10), showlegend=False, clickmode="event+select", dragmode=False,
            xaxis=dict(title=dict(text="output neuron"), type="category", fixedrange=True),
            yaxis=dict(title=dict(text="membrane"), range=[low - 0.05, high], fixedrange=True), plot_bgcolor="#ffffff",
        ))


def output_population_figure(mem: np.ndarray, spikes: np.ndarray, counts: np.ndarray, class_counts: np.ndarray,
                             threshold: float, selected: int | None = None, height: int = 300,
                             title: str = "Output layer") -> go.Figure:
    """The output layer of a population code at one time step: one row a class, one cell a neuron (its
    membrane, red towards the threshold and blue below zero, as the hidden maps), black dots where it spikes
    now. Each row's label is ``class_counts``, the class's spikes so far that it votes with (the leader in bold;
    ``core.model.class_spikes`` of the spikes, its one owner). ``counts`` are each neuron's, for hovering.

    With ``population = len(mem) // len(class_counts)``, neuron ``k * population + j`` (class k's j-th) is cell
    (row k, column j); every cell carries an invisible marker whose customdata is that index, so a click
    selects the neuron (plotly's selection events do not work on heatmaps). ``selected`` is outlined.
    """
    mem = np.asarray(mem, dtype=np.float32)
    n, sums = len(mem), np.asarray(class_counts, dtype=np.int64)
    classes = len(sums)
    if not classes or n % classes:
        raise ValueError(f"{n} output neurons do not make {classes} classes")
    population = n // classes
    grid = mem.reshape(classes, population)
    counts = np.asarray(counts, dtype=np.int64)
    lead = int(sums.argmax()) if sums.max() > 0 else None
    row, col = np.divmod(np.arange(n), population)
    lim = float(threshold) if threshold and math.isfinite(threshold) and threshold > 0 else 1.0
    ticks = [f"<b>{k}: {s}</b>" if k == lead else f"{k}: {s}" for k, s in enumerate(sums)]
    data: list[dict] = [
        dict(type="heatmap", z=grid, zmin=-lim, zmax=lim, colorscale=POLARITY_SCALE, hoverinfo="skip",
             xgap=1, ygap=1, colorbar=dict(title=dict(text="membrane", side="right"), thickness=10, len=0.9)),
        dict(type="scattergl", x=col.astype(np.int16), y=row.astype(np.int16), mode="markers", name="neurons",
             customdata=np.stack([np.arange(n), counts, mem], axis=1).astype(np.float32),
             marker=dict(symbol="square-open", size=9, color=NEURON_SELECTED, opacity=0.0),
             selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.0)),
             hovertemplate="class %{y}, neuron %{x}: membrane %{customdata[2]:.3f}, %{customdata[1]} spikes so far"
                           "<extra></extra>"),
    ]
    spiking = np.flatnonzero(np.asarray(spikes, dtype=bool))
    if len(spiking):
        data.append(dict(type="scatter", x=col[spiking].astype(np.int16), y=row[spiking].astype(np.int16),
                         mode="markers", name="spikes", hoverinfo="skip", customdata=spiking[:, None],
                         marker=dict(symbol="circle", size=5, color=SPIKE_MARK)))
    shapes = []
    if selected is not None and 0 <= selected < n:
        r, c = divmod(selected, population)
        shapes.append(dict(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                           line=dict(color=NEURON_SELECTED, width=2)))
    return go.Figure(data=data, layout=dict(
        title=dict(text=title, font=dict(size=15)), height=height, shapes=shapes,
        margin=dict(l=10, r=10, t=40, b=10), showlegend=False, clickmode="event+select", dragmode=False,
        plot_bgcolor="#ffffff",
        xaxis=dict(title=dict(text=f"neuron of the class (0 to {population - 1})"), fixedrange=True,
                   range=[-0.5, population - 0.5], showgrid=False, zeroline=False),
        yaxis=dict(title=dict(text="class: spikes so far"), autorange="reversed", fixedrange=True, showgrid=False,
                   zeroline=False, tickmode="array", tickvals=list(range(classes)), ticktext=ticks)))


_LAYER_COLORS = ("#636efa", "#00a884", ON_COLOR)


def _hline(y: float, line: dict) -> dict:
    """A horizontal line across the plot as a layout shape (add_hline validates a whole figure update: slow)."""
    return dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y, line=line, layer="below")


def _step_line(step: int | None) -> list[dict]:
    """The orange line of the time step shown, as a layout shape."""
    if step is None:
        return []
    return [dict(type="line", xref="x", x0=step, x1=step, yref="paper", y0=0, y1=1, line=dict(color=_SC_ORANGE, width=2))]


def firing_rate_figure(rates: Mapping[str, np.ndarray], names: Mapping[str, str], step: int | None = None,
                       height: int = 340) -> go.Figure:
    """Each layer's fraction of neurons spiking at every time step, the step shown as an orange line."""
    data = []
    order = list(rates.items())
    for i, (layer, rate) in reversed(list(enumerate(order))):  # the output layer (few neurons, jumpy) underneath
        rate = np.asarray(rate, dtype=np.float32) * 100
        last = i == len(order) - 1
        name = names.get(layer, layer)
        data.append(dict(type="scatter", y=rate, mode="lines", name=name, opacity=0.55 if last else 1.0,
                         line=dict(width=1.0 if last else 1.6, color=_LAYER_COLORS[i % len(_LAYER_COLORS)]),
                         hovertemplate="step %{x}: %{y:.2f} % spiking<extra>" + name + "</extra>"))
    # plain dicts, no magic underscores or add_trace: this chart is redrawn at every step of the Layer view
    return go.Figure(data=data, layout=dict(
        shapes=_step_line(step), title=dict(text="Firing rate per layer", font=dict(size=15)),
        xaxis=dict(title=dict(text="time step")), yaxis=dict(title=dict(text="neurons spiking (%)")), height=height,
        margin=dict(l=10, r=10, t=40, b=80),
        legend=dict(orientation="h", y=-0.3, x=0.5, xanchor="center", yanchor="top", traceorder="reversed")))


def neuron_membrane_figure(mem: np.ndarray, spikes: np.ndarray, threshold: float, title: str,
                           step: int | None = None, height: int = 340) -> go.Figure:
    """One neuron's membrane over time, its threshold dashed, its spikes as red ticks, the step shown in orange."""
    mem = np.asarray(mem, dtype=np.float32)
    t = np.flatnonzero(np.asarray(spikes, dtype=bool))
    data = [dict(type="scatter", y=mem, mode="lines", name="membrane", line=dict(color="#333", width=1.3),
                 hovertemplate="step %{x}: membrane %{y:.3f}<extra></extra>")]
    if len(t):
        data.append(dict(type="scatter", x=t, y=mem[t], mode="markers", name=f"spikes ({len(t)})",
                         marker=dict(color=ON_COLOR, size=7, symbol="line-ns-open", line=dict(width=2)),
                         hovertemplate="spike at step %{x}<extra></extra>"))
    data.append(dict(type="scatter", x=[0, max(0, len(mem) - 1)], y=[threshold, threshold], mode="lines",
                     name=f"threshold ({threshold:g})", line=dict(color="#555", dash="dash", width=1), hoverinfo="skip"))
    return go.Figure(data=data, layout=dict(
        shapes=_step_line(step), title=dict(text=title, font=dict(size=15)), xaxis=dict(title=dict(text="time step")),
        yaxis=dict(title=dict(text="membrane")), height=height, margin=dict(l=10, r=10, t=40, b=80),
        legend=dict(orientation="h", y=-0.3, x=0.5, xanchor="center", yanchor="top")))


def weight_grid_figure(kernels: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *, title: str,
                       row_title: str, col_title: str, colorbar_title: str = "weight", height: int | None = None,
                       limit: float | None = None) -> go.Figure:
    """A grid of kernels (rows, cols, h, w), red positive and blue negative on one symmetric scale, rows and
    columns labelled (ticks at each kernel's centre)."""
    kernels = np.asarray(kernels, dtype=np.float32)
    rows, cols, h, w = kernels.shape
    image, x0, y0 = mosaic(kernels.reshape(rows * cols, h, w), cols)
    lim = float(limit) if limit else float(np.nanmax(np.abs(kernels))) if kernels.size else 1.0
    lim = lim if math.isfinite(lim) and lim > 0 else 1.0
    names = np.full(image.shape, "", dtype=object)
    for i in range(rows * cols):
        names[y0[i]:y0[i] + h, x0[i]:x0[i] + w] = f"{row_title} {row_labels[i // cols]}, {col_title} {col_labels[i % cols]}"
    axes = _mosaic_axes(image)
    every = max(1, math.ceil(cols / 16))  # at most 16 column labels: 32 ran into each other at a 1000 px window
    axes["xaxis"].update(showticklabels=True, tickvals=(x0[:cols] + (w - 1) / 2)[::every].tolist(),
                         ticktext=list(col_labels)[::every], title=dict(text=col_title, font=dict(size=12)),
                         side="top", tickfont=dict(size=10))
    axes["yaxis"].update(showticklabels=True, tickvals=(y0[::cols] + (h - 1) / 2).tolist(), ticktext=list(row_labels),
                         title=dict(text=row_title, font=dict(size=12)), tickfont=dict(size=10))
    fig = go.Figure(data=[dict(
        type="heatmap", z=image, zmin=-lim, zmax=lim, colorscale=POLARITY_SCALE, text=names.tolist(),
        hovertemplate="%{text}: %{z:.4f}<extra></extra>",
        colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=10, len=0.9),
    )])
    if height is None:  # the grid fills a 650 px wide plot (a 1000 px window); wider windows leave room beside it
        height = int(min(900, max(200, 120 + 650 * image.shape[0] / image.shape[1])))
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=90, b=10), **axes)
    return fig
