"""
Score a COCO predictions file (e.g. `coco_instances_results.json`) on a registered dataset:

    python -m cxr_d2.evaluation PREDICTIONS.json --dataset cxr_phantom_test [--output DIR]

Category ids are the dataset's COCO ids (those in `coco_instances_results.json`). Writes
evaluation.json and the FROC curves to --output (default: the predictions' folder).
"""

import argparse
import os
import sys

from detectron2.data import DatasetCatalog

from ..errors import ConfigError, CXRError
from .coco import METRICS_FILE, CXRCOCOEvaluator
from .validate import load_results_file

__all__ = ["main"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cxr_d2.evaluation", description=__doc__)
    parser.add_argument("predictions", help="COCO results JSON")
    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--output", default=None, help="output folder")
    parser.add_argument("--backend", default="auto", help="auto, pycocotools or faster_coco_eval")
    args = parser.parse_args(argv)
    try:
        results = load_results_file(args.predictions)
        if args.dataset not in DatasetCatalog.list():
            raise ConfigError(f"--dataset '{args.dataset}' is not a registered dataset")
        output = args.output or os.path.dirname(os.path.abspath(args.predictions))
        evaluator = CXRCOCOEvaluator(
            args.dataset,
            distributed=False,
            output_dir=output,
            backend=args.backend,
            run_info={
                "model": os.path.basename(os.path.dirname(os.path.abspath(args.predictions)))
            },
        )
        evaluator.evaluate_results(results, where=f"predictions file {args.predictions}")
    except CXRError as e:
        sys.exit(f"error: {e}")
    print(f"{os.path.join(output, METRICS_FILE)} written")
    return 0


if __name__ == "__main__":  # `python -m` imported cxr_d2 first: the datasets are registered
    sys.exit(main())
