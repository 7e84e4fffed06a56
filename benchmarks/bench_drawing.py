"""The Draw page's loop on mouse drawings of MNIST digits the network never saw: accuracy and time per drawing.

MNIST test images 0..199 (the default data set is simulated from images 5000..9999, so a network
trained on it has not seen these; checked against the run's simulation.json) are drawn as a
person would with the mouse (``core.drawing.mouse_drawing``: enlarged to the 280 px canvas,
binarised, strokes thickened), encoded as the PNG the canvas sends, and put through the page's
own pipeline: ``read_canvas`` -> ``mnist_image`` -> the saccade simulator with the data set's
settings -> the network -> the vote. Prints the accuracy (target: at least 85 %) and the time from
the PNG to the answer per drawing (target: at most 1 s on the 2-core machine), then the time to
build the page's three figures. Exit status 1 below either target.

The network: the best finished run by test accuracy in ``--runs`` (default ``<data home>/runs``),
or ``--run DIR``. Train one on the default set first, e.g.
``python -m core.train --preset quick --max-iters 1000 --max-seconds 3000``.

    .venv/bin/python -m benchmarks.bench_drawing [--run DIR | --runs DIR] [--count 200] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

TARGET_ACCURACY = 0.85
TARGET_SECONDS = 1.0  # from the end of a stroke to the answer


def png(rgba: np.ndarray) -> bytes:
    """The canvas's picture as the browser sends it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: the best finished run in --runs)")
    parser.add_argument("--runs", type=Path, default=None, help="folder of run folders (default: <data home>/runs)")
    parser.add_argument("--count", type=int, default=200, help="MNIST test images 0..count-1 to draw")
    parser.add_argument("--thicken", type=int, default=4, help="pen thickening, canvas pixels each side")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args(argv)

    import torch

    from core import drawing, inference
    from core.images import load_bundled_mnist
    from core.runs import RunStore, default_runs_root

    if args.run is not None:
        store, run_id = RunStore(args.run.parent), args.run.name
    else:
        store = RunStore(args.runs or default_runs_root())
        best, _ = inference.default_run(inference.run_choices(store))
        if best is None or best.status != "finished":
            raise SystemExit(f"no finished run in {store.root}: train one on the default data set first "
                             "(python -m core.train --preset quick --max-iters 1000 --max-seconds 3000)")
        run_id = best.run_id
    choice = next((c for c in inference.run_choices(store) if c.run_id == run_id), None)
    if choice is None or not choice.usable:
        raise SystemExit(f"run {run_id} in {store.root} cannot be used: {choice.problem if choice else 'not there'}")
    network = inference.load_network(store, run_id)
    data = choice.trained_on
    config, config_from = drawing.simulation_config(data.root if data is not None and data.kind == "simulated" else None)

    images, labels = load_bundled_mnist(0, args.count)
    seen = inference.trained_images(data) if data is not None else np.zeros(0, np.int64)
    overlap = np.intersect1d(np.arange(args.count), seen)
    if overlap.size:
        raise SystemExit(f"the run's data was simulated from {overlap.size} of MNIST test images 0..{args.count - 1}: "
                         "not a fair test; choose a run trained on the default set")
    drawn = [png(drawing.mouse_drawing(image, thicken_px=args.thicken)) for image in images]

    seen_one = drawing.see_drawing(network, drawing.read_canvas(drawn[0]), config)  # compile the kernels first
    drawing.answer_figures(seen_one.events, seen_one.answer.spikes)

    loop, build, correct, silent = [], [], 0, 0
    confidences = []
    for data_png, label in zip(drawn, labels):
        start = time.perf_counter()
        result = drawing.see_drawing(network, drawing.read_canvas(data_png), config)
        loop.append(time.perf_counter() - start)
        start = time.perf_counter()
        drawing.answer_figures(result.events, result.answer.spikes)
        build.append(time.perf_counter() - start)
        vote = result.answer.vote
        correct += vote.predicted == int(label)
        silent += vote.predicted is None
        confidences.append(vote.confidence)

    n = len(labels)
    accuracy = correct / n
    median, p95, worst = statistics.median(loop), float(np.percentile(loop, 95)), max(loop)
    print(f"network             : run {run_id} ({choice.status}, "
          f"{inference.percent(choice.test_accuracy or 0)} on its simulated Test split), {store.root}")
    print(f"simulator settings  : {config_from}")
    print(f"drawings            : MNIST test images 0..{n - 1}, binarised, pen thickened by {args.thicken} px, "
          f"{drawing.CANVAS_SIZE} px canvas PNG")
    print(f"accuracy            : {accuracy:.1%} ({correct} of {n}; {silent} without an output spike; "
          f"median confidence {statistics.median(confidences):.0%})  target >= {TARGET_ACCURACY:.0%}")
    print(f"stroke to answer    : median {median * 1e3:.0f} ms, 95th percentile {p95 * 1e3:.0f} ms, "
          f"worst {worst * 1e3:.0f} ms a drawing  target <= {TARGET_SECONDS * 1e3:.0f} ms")
    print(f"page figures        : median {statistics.median(build) * 1e3:.0f} ms a drawing (3D events, saccade "
          f"images, spike-count animation)")
    print(f"machine             : torch {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps({"run": run_id, "images": n, "accuracy": accuracy, "silent": silent,
                          "loop_median_s": median, "loop_p95_s": p95, "loop_max_s": worst,
                          "figures_median_s": statistics.median(build), "thicken_px": args.thicken,
                          "load_average": os.getloadavg()[0]}))
    ok = accuracy >= TARGET_ACCURACY and p95 <= TARGET_SECONDS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
