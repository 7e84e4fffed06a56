"""core.figures: plotly views checked against the arrays they show, the MP4 against snntorch's own spike_count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers
from core import figures
from core.events import SENSOR_SIZE, read_nmnist
from helpers import mosaic_panel, picture_panel


def random_events(n: int = 3000, seed: int = 0, duration_us: int = 315_000) -> np.ndarray:
    return helpers.random_events(n, seed, duration_us=duration_us)


def random_spikes(steps: int = 20, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, 10)) < rng.uniform(0.05, 0.5, 10)).astype(np.float32)


# ------------------------------------------------------------------ events


def test_accumulate_matches_tonic_toframe() -> None:
    import tonic.transforms

    events = random_events()
    ours = figures.accumulate(events)
    theirs = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_event_bins=1)(events)[0]  # every event in one frame
    np.testing.assert_array_equal(ours, theirs)
    picture = figures.event_image(events)  # ON, OFF, ON - OFF: tonic's counts, each on its panel's colour scale
    for i, counts in enumerate((theirs[1], theirs[0], theirs[1].astype(int) - theirs[0])):
        np.testing.assert_array_equal(picture_panel(picture, i), figures.ramp_rgb(counts, picture.stops[i]))


@pytest.mark.parametrize("n_time_bins", [1, 3, 7])
def test_event_grid_frames_are_tonics_on_the_true_sensor(n_time_bins: int) -> None:
    import tonic.transforms

    events = random_events(seed=n_time_bins)
    events = events[(events["x"] < 30) & (events["y"] < 31)]  # plot_event_grid would shrink the sensor here
    ours = figures.event_grid_frames(events, n_time_bins=n_time_bins)
    theirs = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=n_time_bins)(events)
    assert ours.shape == (n_time_bins, 2, 34, 34)
    np.testing.assert_array_equal(ours, theirs)
    fig = figures.event_grid_figure(ours)
    assert len(fig.layout.meta["origins"]) == n_time_bins
    for i in range(n_time_bins):
        np.testing.assert_array_equal(mosaic_panel(fig, i), theirs[i][1].astype(int) - theirs[i][0])


def test_event_grids_hold_each_panel_at_its_place_on_one_scale() -> None:
    """Before and after as one picture: each panel is its frames' ON minus OFF (tonic's ToFrame) on one shared
    polarity scale, row by row; a smaller sensor (a Downsample) is drawn at the same scale, so it looks smaller;
    titles over the panels, ticks left of each row and under the rows, the colour bar under all."""
    import io

    import tonic.transforms
    from PIL import Image

    events = random_events(seed=1)
    before = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=3)(events)
    after = np.random.default_rng(0).integers(0, 4, size=(3, 2, 17, 17)).astype(np.int16)  # a Downsample(0.5)
    picture = figures.event_grids_image([("before", before, ["a", "b", "c"]), ("after", after, ["d", "e", "f"])])
    lim = max(np.abs(before[:, 1].astype(int) - before[:, 0]).max(), np.abs(after[:, 1].astype(int) - after[:, 0]).max())
    assert picture.stops == [figures.polarity_stops(float(lim))] * 6  # one scale, white at 0
    stops = picture.stops[0]
    for c in range(3):
        np.testing.assert_array_equal(picture_panel(picture, c), figures.ramp_rgb(before[c, 1].astype(int) - before[c, 0], stops))
        np.testing.assert_array_equal(picture_panel(picture, 3 + c, (17, 17)),
                                      figures.ramp_rgb(after[c, 1].astype(int) - after[c, 0], stops))
    boxes, s = picture.boxes, picture.scale
    assert [top for _, top in boxes[:3]] == [boxes[0][1]] * 3 and boxes[3][1] > boxes[0][1] + 34 * s  # two rows of three
    assert [left for left, _ in boxes[3:]] == [left for left, _ in boxes[:3]]  # the smaller sensor top-left in its cell
    image = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB")).astype(int)
    assert image.shape[1] < 1460  # Streamlit would resample (blur) a wider picture
    ink = image.sum(axis=2) < 600
    for i, (left, top) in enumerate(boxes):
        side = 34 * s if i < 3 else 17 * s
        assert ink[top - 6 * s:top - 1, left:left + side].any()  # its title
        last = side // s - 1 - (side // s - 1) % 10  # the last tick (30, or 10): clear of the next row's title
        assert ink[top + side + 1:top + side + 5 * s, left + (last - 2) * s:left + side].any()  # x ticks under each row
        if i % 3 == 0:
            assert ink[top:top + side, :left - 1].any()  # y ticks and the row's name
    bar = image[-7 * 6, boxes[0][0]:boxes[2][0] + 34 * s]  # the colour bar's row (6: the layout's unit)
    ends = figures.ramp_rgb(np.array([-lim, lim]), stops)
    assert {tuple(ends[0]), tuple(ends[1])} <= {tuple(p) for p in bar}  # its OFF blue and ON red ends


def test_the_event_grids_picture_of_an_empty_recording() -> None:
    frames = figures.event_grid_frames(random_events(0))
    picture = figures.event_grids_image([("before", frames, ["no events"] * 3)])
    assert picture.stops[0] == figures.polarity_stops(1.0) and len(picture.boxes) == 3
    assert (picture_panel(picture, 0) == 255).all()  # white: nothing happened


def test_event_grid_on_real_recordings(real_recordings) -> None:
    import tonic.transforms

    for path in real_recordings[::25]:
        events = read_nmnist(path)
        np.testing.assert_array_equal(
            figures.event_grid_frames(events), tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=3)(events)
        )


def test_bin_frames_counts_every_event_in_its_window() -> None:
    events = random_events(seed=4)
    frames, starts = figures.bin_frames(events, 10_000)
    assert frames.sum() == len(events)
    assert frames.shape[1:] == (2, 34, 34)
    t0 = events["t"].min()
    for k in (0, len(frames) // 2, len(frames) - 1):
        inside = (events["t"] >= t0 + k * 10_000) & (events["t"] < t0 + (k + 1) * 10_000)
        np.testing.assert_array_equal(frames[k], figures.accumulate(events[inside]))
        assert starts[k] == t0 + k * 10_000
    fig = figures.frames_figure(frames)
    assert len(fig.frames) == len(frames) and len(fig.layout.sliders[0].steps) == len(frames)
    with pytest.raises(ValueError, match="window_us"):
        figures.bin_frames(events, 0)


def test_event_cloud_subsamples_and_splits_polarity() -> None:
    events = random_events(n=5000)
    fig = figures.event_cloud_figure(events, max_points=1000)
    on, off = fig.data
    assert len(on.x) + len(off.x) == 1000
    assert "1,000 of 5,000" in fig.layout.title.text
    full = figures.event_cloud_figure(events)
    assert len(full.data[0].x) == int(events["p"].sum()) and len(full.data[1].x) == int((events["p"] == 0).sum())


def test_event_rate_sums_to_the_events() -> None:
    events = random_events(seed=7)
    fig = figures.event_rate_figure(events, bin_us=1000, boundaries_us=[105_000, 210_000])
    total = sum(np.asarray(trace.y).sum() for trace in fig.data)  # events per ms in 1 ms bins
    assert total == pytest.approx(len(events))
    assert len(fig.layout.shapes) == 2


def test_saccade_boundaries_on_real_recordings(real_recordings) -> None:
    """The rate dips between saccades: the boundaries found lie near 105 and 210 ms and are quiet."""
    for path in real_recordings[::10]:
        events = read_nmnist(path)
        bounds = figures.estimate_saccade_boundaries(events)
        assert len(bounds) == 2
        t = np.sort(events["t"])
        for k, b in enumerate(bounds, start=1):
            assert abs(b - t[0] - k * figures.SACCADE_US) <= 20_000
            near = np.searchsorted(t, b + 2500) - np.searchsorted(t, b - 2500)
            assert near <= len(t) * 5_000 / (t[-1] - t[0])  # quieter than the average 5 ms


# ------------------------------------------------------------------ training and output views


def test_training_curves_and_confusion() -> None:
    fig = figures.training_curves_figure({
        "a": dict(iteration=[0, 1, 2], loss=[3.0, 2.0, 1.0], accuracy=[0.1, 0.2, 0.3], test_iteration=[3], test_accuracy=[0.5]),
        "b": dict(iteration=[0, 1], loss=[2.5, 2.0], accuracy=[0.1, 0.4]),
    })
    names = [t.name for t in fig.data]
    assert names.count("a") == 2 and names.count("b") == 2 and "a (test)" in names
    cm = np.arange(100).reshape(10, 10)
    np.testing.assert_array_equal(np.asarray(figures.confusion_matrix_figure(cm).data[0].z), cm)


def test_spike_count_figure_counts() -> None:
    spk = random_spikes(30)
    fig = figures.spike_count_figure(spk, target=3)
    np.testing.assert_array_equal(np.asarray(fig.data[0].x), spk.sum(axis=0))
    assert len(fig.frames) == 31
    np.testing.assert_array_equal(np.asarray(fig.frames[10].data[0].x), spk[:10].sum(axis=0))
    assert list(fig.frames[10].data[2].x) == [10, 10]
    raster = figures.spike_raster_figure(spk)
    assert len(raster.data[0].x) == int(spk.sum())
    mem = figures.membrane_figure(torch.randn(30, 10))
    assert len(mem.data) == 10
    with pytest.raises(ValueError, match="time, neurons"):
        figures.spike_count_figure(np.zeros((5, 2, 10)))


# ------------------------------------------------------------------ the MP4 against snntorch


def _snntorch_frames(spk: np.ndarray, interpolate: int) -> list[np.ndarray]:
    """Every frame of snntorch.spikeplot.spike_count(animate=True), rendered on the Agg canvas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.spikeplot as splt

    with matplotlib.rc_context():  # spike_count writes plt.rcParams
        fig, ax = plt.subplots(facecolor="w", figsize=(12, 7))
        anim = splt.spike_count(torch.from_numpy(spk), fig, ax, labels=list(figures.DIGITS), animate=True,
                                interpolate=interpolate)
        fig.canvas.draw()  # the first draw lays the figure out
        out = []
        for k in range(len(anim._framedata)):
            for i, artists in enumerate(anim._framedata):
                for artist in artists:
                    artist.set_visible(i == k)
            fig.canvas.draw()
            out.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
        plt.close(fig)
    return out


VIDEO_TITLE = ("run 20240101-120000-quick (finished, 96.9 % test accuracy)\n"
               "Train recording 3  ·  true label 3  ·  predicted 3, correct")


@pytest.mark.parametrize("interpolate,title", [(1, None), (2, None), (1, VIDEO_TITLE)])
@pytest.mark.slow
def test_spike_count_frames_match_snntorch(interpolate: int, title: str | None) -> None:
    """Every frame is snntorch's; a title only writes in the top band, which spike_count leaves blank."""
    spk = random_spikes(5, seed=interpolate)
    config = figures.SpikeVideoConfig(interpolate=interpolate)
    ours = [f[:, :, :3].copy() for f in figures.spike_count_frames(spk, config=config, title=title)]
    theirs = _snntorch_frames(spk, interpolate)
    assert len(ours) == len(theirs) == 5 * interpolate
    band = round(figures.TITLE_BAND * 700)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape == (700, 1200, 3)
        if title is not None:
            assert (b[:band] == 255).all()  # snntorch's figure is blank there
            assert (a[:band] < 128).any(axis=2).sum() > 1000  # our title's text
            a, b = a[band:], b[band:]
        differing = (np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 30).mean()
        assert differing < 1e-3, f"frame {k}: {differing:.2%} of pixels differ from snntorch's"


@pytest.mark.parametrize("frames,fps,hold", [(1, 10, 30), (10, 10, 3), (12, 12, 3), (29, "58/3", 2), (30, 10, 1),
                                             (119, "119/3", 1), (120, 40, 1), (311, 40, 1)])
def test_video_timing_lasts_at_least_three_seconds(frames: int, fps: int | str, hold: int) -> None:
    """The tutorial's 40 fps where the frames fill 3 s; else slower, down to 10 fps; below that, frames held."""
    from fractions import Fraction

    rate, held = figures.video_timing(frames)
    assert (rate, held) == (Fraction(fps), hold)
    assert frames * held / rate >= 3
    assert figures.video_timing(5, figures.SpikeVideoConfig(min_seconds=0)) == (40, 1)  # the tutorial's own timing
    with pytest.raises(ValueError, match="min_fps"):
        figures.SpikeVideoConfig(fps=5)


@pytest.mark.slow  # encodes and decodes an H.264 video through ffmpeg
def test_spike_count_video_is_a_playable_mp4() -> None:
    """12 steps: each drawn frame held 3 times at 12 fps, 3 s; every video frame is its step's (H.264 aside)."""
    import imageio_ffmpeg

    spk = random_spikes(12)
    seen = []
    data = figures.spike_count_video(spk, progress=lambda done, total: seen.append((done, total)), title=VIDEO_TITLE)
    assert data[4:8] == b"ftyp"
    assert seen and seen[0] == (0, 12)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        reader = imageio_ffmpeg.read_frames(f.name)
        meta = next(reader)
        frames = list(reader)
        count, seconds = imageio_ffmpeg.count_frames_and_secs(f.name)
    assert tuple(meta["size"]) == (1200, 700)
    assert meta["fps"] == pytest.approx(12)
    assert len(frames) == count == 36 and seconds >= 3.0
    drawn = [f[:, :, :3].astype(int) for f in figures.spike_count_frames(spk, title=VIDEO_TITLE)]
    assert len(drawn) == 12
    for i, raw in enumerate(frames):  # the distinct frames, each held for 3 video frames
        shown = np.frombuffer(raw, np.uint8).reshape(700, 1200, 3).astype(int)
        loss = [np.abs(shown - d).mean() for d in drawn]
        assert loss[i // 3] < 3, f"video frame {i}"  # only H.264's loss
        assert int(np.argmin(loss)) == i // 3, f"video frame {i} is closer to another step's frame"
    with pytest.raises(ValueError, match="no time steps"):
        figures.spike_count_video(np.zeros((0, 10)))
    with pytest.raises(ValueError, match="interpolate"):
        figures.SpikeVideoConfig(interpolate=0)


def test_no_picture_cuts_its_labels_at_its_edges() -> None:
    """Every picture ends in white on all four sides: a tick label or title that reached an edge would be cut off
    (the gallery's lowest colour-bar tick was, half of it under the image)."""
    import io

    from PIL import Image

    recordings = {d: random_events(seed=40 + d) for d in range(10)}
    frames = figures.event_grid_frames(recordings[0])
    pictures = {
        "gallery": figures.digit_gallery(recordings),
        "event image": figures.event_image(recordings[1]),
        "grids": figures.event_grids_image([("before", frames, ["0-105 ms"] * 3), ("after", frames, ["a"] * 3)]),
    }
    for name, picture in pictures.items():
        image = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB"))
        edges = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3), image[:, :2].reshape(-1, 3),
                                image[:, -2:].reshape(-1, 3)])
        assert (edges == 255).all(), f"{name}: ink at its edge"


def test_test_accuracy_panels_zoom_on_their_points() -> None:
    """Trained runs 0.2 points apart are told apart: the test panel spans its points, the minibatch panel 0-100 %."""
    runs = [dict(label=name, loss_name="ce_rate", iteration=[0, 1, 2], accuracy=[0.1, 0.5, 0.9], loss=[2.0, 1.8, 1.6],
                 test_iteration=[100, 200], test_accuracy=[0.95, final]) for name, final in (("a", 0.982), ("b", 0.984))]
    for fig, test_axis, batch_axis in (
        (figures.compare_runs_figure(runs, chance=0.1), "yaxis", "yaxis2"),
        (figures.training_curves_figure({r["label"]: r for r in runs}, chance=0.1), "yaxis3", "yaxis2"),
    ):
        low, high = fig.layout[test_axis].range
        assert 0.9 < low < 0.95 and 0.984 < high <= 1.02, (low, high)
        assert (high - low) < 0.1 and fig.layout[test_axis].tickformat == ".1%"  # 0.2 points are about 1/25 of it
        assert list(fig.layout[batch_axis].range) == [0.0, 1.02]
        chance_lines = [s for s in fig.layout.shapes if s.y0 == 0.1]
        assert len(chance_lines) == 1 and chance_lines[0].yref == batch_axis.replace("axis", "")
    assert figures.zoomed_accuracy_range([0.1, 0.9]) == pytest.approx([0.02, 0.98])  # a run still learning: its span
    assert figures.zoomed_accuracy_range([1.0]) == pytest.approx([0.995, 1.005]) and figures.zoomed_accuracy_range([]) == [0.0, 1.02]
