#!/usr/bin/env python
"""
Check registered datasets: load each, decode every image (with a progress bar), print a
summary (images, instances per class, box size percentiles, images without annotations) and
every problem found, one line each with file and row. Exit status 1 when problems were found,
a dataset with no image among them.

    CXR_DATASETS=/data python tools/check_dataset.py nih_cxr14_train nih_cxr14_test
"""

import argparse
import logging
import sys

from tabulate import tabulate

import cxr_d2  # noqa: F401 (registers the datasets)
from cxr_d2.data.checks import check_dataset
from cxr_d2.errors import CXRError


def _print_summary(s):
    print(
        f"\n{s['dataset']}: {s['images']} images, {s['instances']} instances, "
        f"{s['images_without_annotations']} images without annotations"
    )
    print(tabulate(sorted(s["instances_per_class"].items()), headers=["class", "instances"]))
    rows = [
        [k] + [f"{v:.1f}" for v in s[k].values()]
        for k in ("box_sqrt_area", "box_width", "box_height")
        if s[k]
    ]
    if rows:
        print(tabulate(rows, headers=["box (px)"] + list(s["box_sqrt_area"].keys())))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", metavar="NAME", help="registered dataset names")
    parser.add_argument("--no-decode", action="store_true", help="check annotations only")
    parser.add_argument("--format", default="L", help="INPUT.FORMAT to decode to (default L)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # problems are printed below, once
    from detectron2.data import DatasetCatalog

    printed = set()  # the splits of one source share its files: print each problem once
    for name in args.names:
        if name not in DatasetCatalog.list():
            sys.exit(f"error: '{name}' is not a registered dataset; see datasets/README.md")
        try:
            summary, problems = check_dataset(name, args.format, decode=not args.no_decode)
        except CXRError as e:  # e.g. a config error: this dataset cannot be checked
            print(f"problem: {name}: {e}")
            printed.add(f"{name}: {e}")
            continue
        _print_summary(summary)
        new = [str(p) for p in problems if str(p) not in printed]
        for line in new:
            print(f"problem: {line}")
        printed.update(new)
        print(
            f"{name}: {len(problems)} problem(s)"
            + (f", {len(problems) - len(new)} printed above" if len(new) < len(problems) else "")
        )
    print(f"{len(printed)} problem(s) in all")
    sys.exit(1 if printed else 0)


if __name__ == "__main__":
    main()
