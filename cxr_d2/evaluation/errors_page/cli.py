"""
`tools/error_report.py`: the error-analysis page of an evaluation's predictions on the
registered dataset they were made on, one self-contained HTML file.
"""

import argparse
import os
import sys

from detectron2.config import get_cfg

from ...config import add_cxr_config
from ...engine.config_file import merge_config_file, merge_overrides
from ...engine.projects import project_config_fns
from ...errors import ConfigError, CXRError
from ..validate import load_results_file
from .page import build_page_data, write_page

__all__ = ["error_report_parser", "main"]

PAGE_FILE = "errors.html"


def error_report_parser():
    p = argparse.ArgumentParser(description="Write the error-analysis HTML page of predictions")
    p.add_argument("--input", required=True, help="coco_instances_results.json")
    p.add_argument(
        "--dataset",
        default=None,
        help="the registered dataset that was evaluated (default: the config's "
        "DATASETS.TEST[0])",
    )
    p.add_argument(
        "--output", default=None, help=f"the HTML file (default: {PAGE_FILE} beside --input)"
    )
    p.add_argument(
        "--config-file",
        default=None,
        help="the run's config: IoU of a hit from CXR.EVAL.FROC.IOU_THRESH, dataset",
    )
    p.add_argument(
        "--iou-type",
        choices=("bbox", "segm"),
        default="bbox",
        help="what decides a hit: boxes, or masks (boxes are drawn either way)",
    )
    p.add_argument(
        "--iou-thresh",
        type=float,
        default=None,
        help="least IoU of a hit (default: the config's, else 0.5)",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="the slider's first position: keep scores >= this",
    )
    p.add_argument("--thumb-size", type=int, default=256, help="thumbnail's longer side, px")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def _settings(args):
    """(dataset, IoU threshold) from the arguments, then the config, then the defaults."""
    dataset, iou = args.dataset, args.iou_thresh
    if args.config_file or args.opts:
        cfg = get_cfg()
        add_cxr_config(cfg)
        for add_config in project_config_fns():
            add_config(cfg)
        if args.config_file:
            merge_config_file(cfg, args.config_file)
        merge_overrides(cfg, list(args.opts))
        if dataset is None and cfg.DATASETS.TEST:
            dataset = cfg.DATASETS.TEST[0]
        if iou is None:
            iou = float(cfg.CXR.EVAL.FROC.IOU_THRESH)
    if dataset is None:
        raise ConfigError("give --dataset, or a --config-file whose DATASETS.TEST names it")
    iou = 0.5 if iou is None else iou
    if not 0 < iou <= 1:
        raise ConfigError(f"--iou-thresh {iou:g} is not in (0, 1]")
    if not 0 <= args.score_threshold <= 1:
        raise ConfigError(f"--score-threshold {args.score_threshold:g} is not in [0, 1]")
    if args.thumb_size < 16:
        raise ConfigError(f"--thumb-size {args.thumb_size} is below 16 pixels")
    return dataset, iou


def main(argv=None):
    args = error_report_parser().parse_args(argv)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.input)), PAGE_FILE)
    try:
        dataset, iou = _settings(args)
        results = load_results_file(args.input)
        data, counts, skipped = build_page_data(
            dataset,
            results,
            f"predictions file {args.input}",
            iou_type=args.iou_type,
            iou_thresh=iou,
            threshold=args.score_threshold,
            thumb_size=args.thumb_size,
        )
        write_page(output, data)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t = data["python_totals"]
    print(
        f"{len(counts)} images of {dataset} ({skipped} without thumbnail); at score >= "
        f"{args.score_threshold:g}: TP {t['tp']}, FP {t['fp']}, missed {t['fn']}; "
        f"written to {output}"
    )
    return 0
