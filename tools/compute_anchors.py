#!/usr/bin/env python
"""
Fit anchors (YOLOv3) or default-box sizes (SSD) to a registered dataset's boxes by k-means
with 1 - IoU as the distance, at the size the model sees the images:

    python tools/compute_anchors.py cxr_phantom_train --for yolov3 --input-size 608
    python tools/compute_anchors.py nih_cxr14_train --for ssd --input-size 512 --num-anchors 7

Prints config overrides (for the command line and for a YAML file) and the mean IoU of the
boxes with their best anchor, for the fitted anchors and for the config's current ones.
"""

import argparse
import json
import sys

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

import cxr_d2  # noqa: F401 (registers the datasets)
from cxr_d2 import CXRError
from cxr_d2.modeling.yolov3.anchor_kmeans import (
    kmeans_iou,
    ssd_priors_from_clusters,
    wh_iou_np,
    yolov3_anchors_from_clusters,
)

# The defaults the clusters are compared against (Base-YOLOv3.yaml, Base-SSD.yaml).
YOLOV3_COCO = [
    [10, 13],
    [16, 30],
    [33, 23],
    [30, 61],
    [62, 45],
    [59, 119],
    [116, 90],
    [156, 198],
    [373, 326],
]


def dataset_box_shapes(name, input_size):
    """
    (w, h) of every box of dataset `name`, scaled as Detectron2's ResizeShortestEdge(input_size,
    max_size=input_size) scales its image. Returns (ndarray[B, 2], number of degenerate boxes
    skipped).
    """
    if name not in DatasetCatalog.list():
        raise CXRError(f"dataset '{name}' is not registered; see datasets/README.md for the names")
    shapes, skipped = [], 0
    for record in DatasetCatalog.get(name):
        h, w = record["height"], record["width"]
        scale = input_size / min(h, w)
        if max(h, w) * scale > input_size:
            scale = input_size / max(h, w)
        for ann in record.get("annotations", []):
            x0, y0, x1, y1 = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            if x1 <= x0 or y1 <= y0:
                skipped += 1
                continue
            shapes.append([(x1 - x0) * scale, (y1 - y0) * scale])
    if not shapes:
        raise CXRError(f"dataset '{name}' has no boxes to cluster")
    return np.array(shapes), skipped


def ssd_default_shapes(priors):
    """(w, h) of the distinct default-box shapes of an SSD prior config dict."""
    from cxr_d2.modeling.ssd import ssd_cell_priors

    shapes = []
    for lo, hi, ratios in zip(priors["MIN_SIZES"], priors["MAX_SIZES"], priors["ASPECT_RATIOS"]):
        b = ssd_cell_priors(lo, hi, ratios).numpy()
        shapes.append(b[:, 2:] - b[:, :2])
    return np.concatenate(shapes)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", help="a registered dataset, e.g. cxr_phantom_train")
    parser.add_argument("--for", dest="model", choices=["yolov3", "ssd"], default="yolov3")
    parser.add_argument(
        "--input-size", type=int, default=None, help="model input side (default 608 / 512)"
    )
    parser.add_argument(
        "--num-anchors", type=int, default=None, help="clusters (default 9 / 7 source layers)"
    )
    parser.add_argument("--num-levels", type=int, default=3, help="YOLOv3 feature levels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size = args.input_size or (608 if args.model == "yolov3" else 512)
    k = args.num_anchors or (9 if args.model == "yolov3" else 7)
    wh, skipped = dataset_box_shapes(args.dataset, size)
    centroids, mean_iou = kmeans_iou(wh, k, seed=args.seed)
    print(
        f"{args.dataset}: {len(wh)} boxes at input size {size}"
        + (f" ({skipped} degenerate boxes skipped)" if skipped else "")
    )
    if args.model == "yolov3":
        anchors = yolov3_anchors_from_clusters(centroids, args.num_levels)
        baseline = wh_iou_np(wh, np.array(YOLOV3_COCO, dtype=float)).max(axis=1).mean()
        print(
            f"mean IoU with best anchor: fitted {mean_iou:.3f}, YOLOv3 COCO anchors {baseline:.3f}"
        )
        print(f'command line: MODEL.YOLOV3.ANCHORS "{json.dumps(anchors)}"')
        print(f"YAML:\nMODEL:\n  YOLOV3:\n    ANCHORS: {json.dumps(anchors)}")
    else:
        priors = ssd_priors_from_clusters(centroids)
        fitted = wh_iou_np(wh, ssd_default_shapes(priors)).max(axis=1).mean()
        from detectron2.config import get_cfg
        from cxr_d2.config import add_cxr_config

        cfg = get_cfg()
        add_cxr_config(cfg)
        p = cfg.MODEL.SSD.PRIOR
        default = {
            "MIN_SIZES": p.MIN_SIZES,
            "MAX_SIZES": p.MAX_SIZES,
            "ASPECT_RATIOS": p.ASPECT_RATIOS,
        }
        baseline = wh_iou_np(wh, ssd_default_shapes(default) * size / 512).max(axis=1).mean()
        print(
            f"mean IoU with best default box shape: fitted {fitted:.3f}, "
            f"SSD512 defaults (scaled to {size}) {baseline:.3f}"
        )
        print(
            "command line: "
            + " ".join(f'MODEL.SSD.PRIOR.{key} "{json.dumps(v)}"' for key, v in priors.items())
        )
        print(
            "YAML:\nMODEL:\n  SSD:\n    PRIOR:\n"
            + "".join(f"      {key}: {json.dumps(v)}\n" for key, v in priors.items()),
            end="",
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CXRError, ValueError) as e:
        sys.exit(f"error: {e}")
