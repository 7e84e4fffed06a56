"""Spike-count MP4: snntorch.spikeplot.spike_count + anim.save versus core.figures.spike_count_video.

Both render the same output spike record (a 300-step sample by default) to
H.264 MP4 through the same ffmpeg binary (imageio-ffmpeg's); prints seconds,
seconds per frame and the ratio. Ours lasts at least 3 s: a record shorter than
that at snntorch's 40 fps is slowed down or its frames held
(``core.figures.video_timing``), so the frames compared are the distinct ones.
`--frames-png DIR` also saves one frame of each for a side-by-side look.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def sample_spikes(steps: int, seed: int = 0) -> torch.Tensor:
    """One sample's output spikes (steps, 10): the network's own where a model is available, else random."""
    try:
        from core.model import ModelConfig, build_model

        torch.manual_seed(seed)
        model = build_model(ModelConfig()).eval()
        frames = (torch.rand(steps, 1, 2, 34, 34, generator=torch.Generator().manual_seed(seed)) < 0.03).float()
        with torch.no_grad():
            spk, _ = model(frames)
        spk = spk[:, 0].cpu()
        if spk.sum() > 0:
            return spk
    except Exception:  # noqa: BLE001 - the model is optional for this benchmark
        pass
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.4, size=10)
    return torch.from_numpy((rng.random((steps, 10)) < rates).astype(np.float32))


def reference(spk: torch.Tensor, path: str) -> float:
    """The tutorial's path: spike_count(animate=True) then anim.save (matplotlib's FFMpegWriter)."""
    import imageio_ffmpeg
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.spikeplot as splt

    plt.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    t0 = time.perf_counter()
    fig, ax = plt.subplots(facecolor="w", figsize=(12, 7))
    labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    anim = splt.spike_count(spk, fig, ax, labels=labels, animate=True, interpolate=1)
    anim.save(path)
    plt.close(fig)
    return time.perf_counter() - t0


def ours(spk: torch.Tensor, path: str) -> float:
    from core.figures import spike_count_video

    t0 = time.perf_counter()
    Path(path).write_bytes(spike_count_video(spk))
    return time.perf_counter() - t0


def save_frames(spk: torch.Tensor, ref_mp4: str, our_mp4: str, out: Path, frame: int) -> None:
    """One frame (time step) of each video as PNG, decoded back from the MP4s (ours may hold each frame)."""
    import imageio_ffmpeg
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from core.figures import video_timing

    hold = video_timing(len(spk))[1]
    out.mkdir(parents=True, exist_ok=True)
    for name, mp4, index in (("snntorch", ref_mp4, frame), ("ours", our_mp4, frame * hold)):
        reader = imageio_ffmpeg.read_frames(mp4)
        meta = reader.__next__()
        w, h = meta["size"]
        for i, raw in enumerate(reader):
            if i == index:
                img = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
                fig = Figure(figsize=(w / 100, h / 100), dpi=100)
                fig.figimage(img)
                fig.savefig(out / f"spike_count_{name}_frame{frame}.png")
                break
        reader.close()


def describe_video(path: str) -> str:
    """``N frames, S s`` of an MP4, as ffmpeg reads it back."""
    import imageio_ffmpeg

    frames, seconds = imageio_ffmpeg.count_frames_and_secs(path)
    return f"{frames} frames, {seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300, help="time steps of the sample (frames of the video)")
    parser.add_argument("--skip-reference", action="store_true", help="time only ours (the reference takes ~0.3 s a frame)")
    parser.add_argument("--frames-png", type=Path, default=None, help="save one frame of each video here")
    args = parser.parse_args()

    spk = sample_spikes(args.steps)
    print(f"sample: {args.steps} time steps, {int(spk.sum())} output spikes, counts {spk.sum(0).int().tolist()}")
    with tempfile.TemporaryDirectory() as tmp:
        our_mp4, ref_mp4 = os.path.join(tmp, "ours.mp4"), os.path.join(tmp, "ref.mp4")
        ours(spk[:10], our_mp4)  # warm up fonts and ffmpeg
        t_ours = ours(spk, our_mp4)
        print(f"ours     (core.figures.spike_count_video): {t_ours:7.2f} s  {t_ours / args.steps * 1000:7.1f} ms/frame  "
              f"{os.path.getsize(our_mp4) / 1e3:.0f} kB, {describe_video(our_mp4)}")
        if args.skip_reference:
            return
        t_ref = reference(spk, ref_mp4)
        print(f"snntorch (spike_count + anim.save):         {t_ref:7.2f} s  {t_ref / args.steps * 1000:7.1f} ms/frame  "
              f"{os.path.getsize(ref_mp4) / 1e3:.0f} kB, {describe_video(ref_mp4)}")
        print(f"speed-up: {t_ref / t_ours:.1f}x")
        if args.frames_png is not None:
            save_frames(spk, ref_mp4, our_mp4, args.frames_png, frame=args.steps * 2 // 3)


if __name__ == "__main__":
    main()
