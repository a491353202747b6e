#!/usr/bin/env python
"""
The paper's Tables I, II and III from a set of evaluated runs:

    python tools/report.py output/phantom/faster_rcnn_R_50_FPN output/phantom/mask_rcnn_R_50_FPN \
        --output report/

Each RUN_DIR is a run's OUTPUT_DIR (its `inference/<dataset>/evaluation.json` are read), one
`inference/<dataset>` folder, or an evaluation.json file. Runs that cannot be read (missing, not
JSON, or a key missing or of another type) are listed as "skipped: FILE: reason" and skipped. Writes table{1,2,3}_*.{md,csv,tex}, tables.md and report.png into --output.
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
    args = parser.parse_args(argv)
    records, skipped = collect(args.runs)
    for path, reason in skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    if not records:
        sys.exit(
            f"error: none of the {len(args.runs)} run folders has a readable {METRICS_FILE} "
            f"(OUTPUT_DIR/inference/<dataset>/{METRICS_FILE}); evaluate them first"
        )
    try:
        written = write_report(records, skipped, args.output)
    except CXRError as e:
        sys.exit(f"error: {e}")
    print(f"{len(records)} evaluation(s) read; tables written to {args.output}:")
    for files in written.values():
        for path in files.values():
            print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
