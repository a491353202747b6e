#!/usr/bin/env python
"""
Wall time of COCO evaluation: every backend plain, cxr-d2's scoring with each, and the whole
CXRCOCOEvaluator.evaluate(), on one generated set, interleaved:

    python tools/benchmark_eval.py --images 1000 --dets 100 --repeat 5

Prints a Markdown table for the README (median seconds, the ratio to plain pycocotools on the
same task, the 1-minute load average while each ran, the largest difference to pycocotools).
Logic: cxr_d2/evaluation/benchmark.py.
"""

from cxr_d2.evaluation.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
