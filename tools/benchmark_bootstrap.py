#!/usr/bin/env python
"""
Wall time of the bootstrap of COCO metrics (cxr_d2.evaluation.bootstrap) on a generated set:

    python tools/benchmark_bootstrap.py --images 1000 --dets 100 --resamples 1000 --repeat 3

The set is tools/benchmark_eval.py's (seeded, 512x512, 0-5 lesions of 4 classes, `--dets`
detections per image; boxes scored). Times pycocotools' evaluate() done once (the per-image matching), then
`--resamples` resampled AP, AP50 and AR (300 detections) from it, `--repeat` times (median
reported), and checks that all images weighted once give pycocotools' summary. Prints the
machine, its CPU count and load average, which the figure depends on. Not a test.
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np

from cxr_d2.evaluation.bootstrap import ImageMatches, resample_weights
from cxr_d2.evaluation.cocoeval import make_coco, summarize

try:  # tools/benchmark_eval.py's generator, where it has moved into the package
    from cxr_d2.evaluation.benchmark import generate
except ImportError:
    from benchmark_eval import generate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    gt, dets = generate(args.images, args.dets)
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(f"set: {args.images} images, {len(gt['annotations'])} lesions, {len(dets)} detections")
    start = time.perf_counter()
    matches = ImageMatches(make_coco(gt), dets, "bbox")
    print(f"pycocotools evaluate() + accumulate(), once: {time.perf_counter() - start:.2f} s")

    names = ("AP", "AP50", "AR")
    once = matches.metrics(np.ones((1, matches.num_images)), names)
    want = summarize(matches.coco_eval)
    diff = max(abs(once[k][0] - want[k]) for k in names)
    print(f"every image once vs pycocotools' summary: max |difference| {diff:.1e}")

    times = []
    for r in range(args.repeat):
        weights = resample_weights(matches.num_images, args.resamples, np.random.default_rng(r))
        start = time.perf_counter()
        values = matches.metrics(weights, names)
        times.append(time.perf_counter() - start)
        print(
            f"run {r + 1}: {args.resamples} resamples in {times[-1]:.2f} s "
            f"(AP 95% interval {np.percentile(values['AP'], 2.5):.4f}"
            f"-{np.percentile(values['AP'], 97.5):.4f})"
        )
    print(
        f"median: {statistics.median(times):.2f} s for {args.resamples} resamples of "
        f"{args.images} images ({', '.join(names)}); load average {os.getloadavg()[0]:.2f} "
        "at the end"
    )


if __name__ == "__main__":
    main()
