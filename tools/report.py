#!/usr/bin/env python
"""
The paper's Tables I, II and III from a set of evaluated runs:

    python tools/report.py output/phantom/faster_rcnn_R_50_FPN output/phantom/mask_rcnn_R_50_FPN \
        --output report/

Each RUN_DIR is a run's OUTPUT_DIR (its `inference/<dataset>/evaluation.json` are read), one
`inference/<dataset>` folder, or an evaluation.json file. Runs that cannot be read (missing, not
JSON, or a key missing or of another type) are listed as "skipped: FILE: reason" and skipped.
Runs that differ only by SEED are one row (their mean). Writes into --output:
table{1,2,3}_*.{md,csv,tex}; table{1,2,3}_*_uncertainty.{md,csv,tex} (mean ± std over seeds,
bootstrap interval over test images from each run's coco_instances_results.json);
paired_differences.{md,csv}; tables.md; table{1,2,3}_*.png and report.png (bars with intervals).
A run without predictions or ground truth to resample gets no interval ("no interval: FILE:
reason" on stdout).

    python tools/report.py output/sweep/* --output report/ --bootstrap 1000 --level 0.95
"""

import argparse
import sys

from cxr_d2.errors import CXRError
from cxr_d2.evaluation import METRICS_FILE
from cxr_d2.evaluation.report import collect, write_report


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evaluated run folders")
    parser.add_argument(
        "--output", default="report", help="folder for the tables (default: report)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="B",
        help="resamples of the test images for the intervals (0: none; default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the resampling (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="of the intervals (default 0.95)")
    args = parser.parse_args(argv)
    if args.bootstrap < 0 or not 0 < args.level < 1:
        parser.error("--bootstrap must be >= 0 and --level between 0 and 1")
    records, skipped = collect(args.runs)
    for path, reason in skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    if not records:
        sys.exit(
            f"error: none of the {len(args.runs)} run folders has a readable {METRICS_FILE} "
            f"(OUTPUT_DIR/inference/<dataset>/{METRICS_FILE}); evaluate them first"
        )
    try:
        written, problems = write_report(
            records, skipped, args.output, args.bootstrap, args.seed, args.level
        )
    except CXRError as e:
        sys.exit(f"error: {e}")
    for path, reason in problems:
        print(f"no interval: {path}: {reason}")
    print(f"{len(records)} evaluation(s) read; tables written to {args.output}:")
    for files in written.values():
        for path in files.values():
            print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
