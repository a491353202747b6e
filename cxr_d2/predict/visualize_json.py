"""
`tools/visualize_json_results.py`, as Detectron2's: an evaluation's
`coco_instances_results.json` drawn beside the ground truth, one PNG per image of `--dataset`
(predictions scoring above `--conf-threshold` on the left, the ground truth on the right).
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from ..data.dicom import read_image
from ..errors import CXRError, DatasetError
from .overlay import CXRVisualizer
from .visualize_data import save_png
from .writers import overlay_names

__all__ = ["visualize_json_parser", "results_to_instances", "main"]


def visualize_json_parser():
    p = argparse.ArgumentParser(description="Draw COCO results beside the ground truth")
    p.add_argument("--input", required=True, help="coco_instances_results.json")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--dataset", required=True, help="the registered dataset that was evaluated")
    p.add_argument("--conf-threshold", type=float, default=0.5, help="draw scores above this")
    return p


def results_to_instances(results, image_size, dataset_to_contiguous, conf_threshold):
    """
    COCO results of one image -> Instances (pred_boxes XYXY, scores, pred_classes, pred_masks
    when they carry a "segmentation" RLE), keeping scores > conf_threshold.
    """
    chosen = [r for r in results if r["score"] > conf_threshold]
    out = Instances(image_size)
    boxes = np.asarray([r["bbox"] for r in chosen], dtype=np.float64).reshape(-1, 4)
    out.pred_boxes = Boxes(BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS))
    out.scores = torch.tensor([r["score"] for r in chosen], dtype=torch.float32)
    out.pred_classes = torch.tensor(
        [dataset_to_contiguous.get(r["category_id"], r["category_id"]) for r in chosen],
        dtype=torch.int64,
    )
    if chosen and all("segmentation" in r for r in chosen):
        out.pred_masks = torch.from_numpy(
            np.stack([mask_util.decode(r["segmentation"]) for r in chosen]).astype(bool)
        )
    return out


def _load_results(path):
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise CXRError(f"--input {path}: cannot be read as COCO results ({e})") from None
    if not isinstance(results, list):
        raise CXRError(f"--input {path}: not a list of COCO results")
    by_image = defaultdict(list)
    for r in results:
        by_image[r["image_id"]].append(r)
    return by_image


def draw_results(by_image, dataset, output_dir, conf_threshold):
    """Returns (written, skipped)."""
    if dataset not in DatasetCatalog.list():
        raise CXRError(f"--dataset {dataset}: not a registered dataset")
    records = DatasetCatalog.get(dataset)
    metadata = MetadataCatalog.get(dataset)
    mapping = metadata.get("thing_dataset_id_to_contiguous_id", None) or {}
    os.makedirs(output_dir, exist_ok=True)
    written = skipped = 0
    for record, name in zip(records, overlay_names([r["file_name"] for r in records])):
        try:
            image = read_image(record["file_name"], "RGB")
        except DatasetError as e:
            print(f"skipped: {e}", file=sys.stderr)
            skipped += 1
            continue
        predictions = results_to_instances(
            by_image.get(record["image_id"], []), image.shape[:2], mapping, conf_threshold
        )
        pred = CXRVisualizer(image, metadata).draw_instance_predictions(predictions).get_image()
        gt = CXRVisualizer(image, metadata).draw_dataset_dict(record).get_image()
        save_png(os.path.join(output_dir, name), np.concatenate((pred, gt), axis=1))
        written += 1
    return written, skipped


def main(argv=None):
    args = visualize_json_parser().parse_args(argv)
    try:
        written, skipped = draw_results(
            _load_results(args.input), args.dataset, args.output, args.conf_threshold
        )
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"drew {written} images of {args.dataset}, skipped {skipped}; written to {args.output}")
    return 0 if written else 1
