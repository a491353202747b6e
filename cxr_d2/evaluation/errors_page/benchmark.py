"""
`tools/benchmark_error_page.py`: the error page's build time and size, and (with `--browser`)
its load and slider-update times in headless Chromium, on the tiny phantom training films
repeated to `--images` images with seeded predictions (a hit 1 px off each lesion, and
`--clutter` random boxes of random classes per image).
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import CXRError
from .page import build_page_data, write_page

__all__ = ["main"]

SOURCE = "cxr_phantom_tiny_train"
NAME = "cxr_errors_page_benchmark"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Median JavaScript time of one slider move (10 positions), in ms.
UPDATE_JS = """const s = document.getElementById('threshold'), times = [];
for (const v of [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.5]) {
  const t = performance.now(); s.value = v; s.dispatchEvent(new Event('input'));
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b); return (times[4] + times[5]) / 2;"""


def _register(num_images):
    films = DatasetCatalog.get(SOURCE)
    records = []
    for k in range(num_images):
        r = copy.deepcopy(films[k % len(films)])
        r["image_id"] = k
        records.append(r)
    if NAME in DatasetCatalog.list():
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)
    DatasetCatalog.register(NAME, lambda: records)
    MetadataCatalog.get(NAME).set(thing_classes=MetadataCatalog.get(SOURCE).thing_classes)
    return records


def _predictions(records, clutter, seed=0):
    rng = np.random.default_rng(seed)
    num_classes = len(MetadataCatalog.get(SOURCE).thing_classes)
    results = []
    for r in records:
        for a in r["annotations"]:
            x0, y0, x1, y1 = a["bbox"]  # the phantom's boxes are XYXY_ABS
            results.append(
                {
                    "image_id": r["image_id"],
                    "category_id": a["category_id"],
                    "bbox": [x0 + 1, y0, x1 - x0, y1 - y0],
                    "score": rng.uniform(),
                }
            )
        for _ in range(clutter):
            xy = rng.uniform(0, min(r["width"], r["height"]) * 0.8, 2).tolist()
            results.append(
                {
                    "image_id": r["image_id"],
                    "category_id": int(rng.integers(num_classes)),
                    "bbox": xy + [20.0, 20.0],
                    "score": rng.uniform(),
                }
            )
    for r in results:
        r["score"] = float(r["score"])
    return results


def _browser_times(path):
    """(load ms: the navigation's loadEventEnd, median slider update ms) in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp()}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get("file://" + os.path.abspath(path))
        load = driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
        return load, driver.execute_script(UPDATE_JS)
    finally:
        driver.quit()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--clutter", type=int, default=30, help="random boxes per image")
    p.add_argument("--thumb-size", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3, help="builds timed (the median is shown)")
    p.add_argument("--output", default=os.path.join(tempfile.gettempdir(), "errors_bench.html"))
    p.add_argument("--browser", action="store_true", help="also time it in headless Chromium")
    args = p.parse_args(argv)
    try:
        records = _register(args.images)
        results = _predictions(records, args.clutter)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            data, _, _ = build_page_data(NAME, results, "benchmark", thumb_size=args.thumb_size)
            write_page(args.output, data)
            times.append(time.perf_counter() - start)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.output) / 1e6
    print(
        f"{args.images} images, {len(results)} predictions: page {size:.1f} MB, built in "
        f"{statistics.median(times):.2f} s (median of {args.repeat}); {args.output}"
    )
    if args.browser:
        load, update = _browser_times(args.output)
        print(f"Chromium: load {load / 1000:.2f} s, slider update {update:.0f} ms (median)")
    return 0
