#!/usr/bin/env python
"""
Write the error-analysis page of an evaluation: every image of the dataset with its true
positives, false positives and missed lesions, a score slider, a class filter, sorting by
errors, and the FROC and precision-recall curves; one HTML file that opens from disk:

    python tools/error_report.py --dataset cxr_phantom_test \
        --input output/inference/cxr_phantom_test/coco_instances_results.json \
        [--output errors.html] [--config-file CONFIG] [--iou-type segm] [--score-threshold 0.5]
"""

import sys

from cxr_d2.evaluation.errors_page.cli import main

if __name__ == "__main__":
    sys.exit(main())
