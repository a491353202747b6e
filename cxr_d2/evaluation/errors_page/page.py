"""
The error-analysis page of one evaluation: one self-contained HTML file (thumbnails as
`data:` URIs, the data as inline JSON, inline CSS and JavaScript; no network, no server).

The page redoes `matching.py`'s matching in JavaScript from the embedded candidate pairs
(detection, lesion, IoU >= the hit threshold), so the score slider and the class filter give
the TP/FP/missed counts Python's `count_errors` gives at that threshold and class.
"""

import html
import json
import logging
import re
from importlib import resources

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from ...errors import ConfigError, DatasetError
from ..cocoeval import make_coco
from ..ground_truth import check_ground_truth, image_sizes, load_ground_truth
from ..output import write_text
from ..validate import check_results
from .matching import candidate_pairs, count_errors, group_by_key
from .thumbnails import thumbnail_uri

__all__ = ["dataset_ground_truth", "build_page_data", "render_html", "write_page"]

logger = logging.getLogger(__name__)


def dataset_ground_truth(dataset_name):
    """
    The registered dataset's ground truth as the evaluator reads it (its `json_file`, else
    Detectron2's conversion of its dicts), checked; and {image_id: image file path}.
    """
    if dataset_name not in DatasetCatalog.list():
        raise ConfigError(f"--dataset '{dataset_name}' is not a registered dataset")
    meta = MetadataCatalog.get(dataset_name)
    if hasattr(meta, "json_file"):
        gt, where = load_ground_truth(meta.json_file), f"ground truth {meta.json_file}"
    else:
        gt, where = convert_to_coco_dict(dataset_name), f"dataset '{dataset_name}'"
    check_ground_truth(gt, where)
    files = {r.get("image_id"): r["file_name"] for r in DatasetCatalog.get(dataset_name)}
    return gt, files


def _images(gt, files, thumb_size):
    images, skipped = [], 0
    for im in gt["images"]:
        path = files.get(im["id"], im.get("file_name", ""))
        entry = {
            "id": im["id"],
            "name": str(path).replace("\\", "/").rsplit("/", 1)[-1],
            "w": im["width"],
            "h": im["height"],
            "thumb": None,
            "note": "",
        }
        try:
            entry["thumb"] = thumbnail_uri(path, thumb_size)
        except DatasetError as e:
            logger.warning(f"no thumbnail: {e}")
            entry["note"] = f"no thumbnail: {e}"
            skipped += 1
        images.append(entry)
    return images, skipped


def _matching_data(coco, results, image_index, class_index, iou_type, iou_thresh):
    """The page's `gts` and `dets` lists (image and class as page indices)."""
    anns = coco.dataset.get("annotations", [])
    gt_index = {id(a): k for k, a in enumerate(anns)}
    gts = [
        {
            "i": image_index[a["image_id"]],
            "c": class_index[a["category_id"]],
            "b": a["bbox"],
            "crowd": int(a.get("iscrowd", 0)),
        }
        for a in anns
    ]
    pairs = {}
    gt_groups, det_groups = group_by_key(coco, results)
    for key, group in det_groups.items():
        group_gts = gt_groups.get(key, [])
        found = candidate_pairs(group_gts, group, iou_type, iou_thresh, coco)
        for r, candidates in zip(group, found):
            pairs[id(r)] = [[gt_index[id(group_gts[j])], iou] for j, iou in candidates]
    dets = [
        {
            "i": image_index[r["image_id"]],
            "c": class_index[r["category_id"]],
            "s": r["score"],
            "b": r["bbox"],
            "m": pairs[id(r)],
        }
        for r in results
    ]
    return gts, dets


def build_page_data(
    dataset_name,
    results,
    where,
    *,
    iou_type="bbox",
    iou_thresh=0.5,
    threshold=0.5,
    thumb_size=256,
    title=None,
):
    """
    Everything the page shows, as one JSON-able dict.

    Args:
        dataset_name (str): the registered dataset that was evaluated.
        results (list[dict]): COCO results with the dataset's category ids (as in
            coco_instances_results.json); checked first (PredictionError names `where`).
        where (str): what the results are (the file name), for error messages.
        iou_type (str): "bbox" or "segm" (masks decide hits; boxes are drawn).
        iou_thresh (float): least IoU of a hit.
        threshold (float): the slider's first position (keep scores >= it).
        thumb_size (int): longer side of the thumbnails, in pixels.

    Returns:
        tuple(dict, dict, int): the page data; {image_id: Counts} at `threshold` computed in
        Python; the number of images without a thumbnail.
    """
    gt, files = dataset_ground_truth(dataset_name)
    categories = sorted(gt["categories"], key=lambda c: c["id"])
    results = check_results(
        results,
        {c["id"] for c in categories},
        image_sizes(gt),
        where,
        class_names=[c["name"] for c in categories],
        tasks=(iou_type,),
    )
    coco = make_coco(gt, "pycocotools")
    image_index = {im["id"]: k for k, im in enumerate(gt["images"])}
    class_index = {c["id"]: k for k, c in enumerate(categories)}
    gts, dets = _matching_data(coco, results, image_index, class_index, iou_type, iou_thresh)
    counts = count_errors(coco, results, threshold, iou_type, iou_thresh)
    images, skipped = _images(gt, files, thumb_size)
    totals = {k: sum(getattr(c, k) for c in counts.values()) for k in ("tp", "fp", "fn")}
    lesions = sum(c.lesions for c in counts.values())
    about = (
        f"{dataset_name}: {len(images)} images, {lesions} lesions, {len(results)} predictions "
        f"({where}). Matching as the evaluator's FROC: class-specific, {iou_type} IoU >= "
        f"{iou_thresh:g}, greedy from the highest score; a lesion found twice counts one TP "
        "and FPs for the rest."
    )
    data = {
        "title": title or f"Errors of {dataset_name}",
        "about": about,
        "dataset": dataset_name,
        "iou_type": iou_type,
        "iou_thresh": iou_thresh,
        "threshold": threshold,
        "thumb_size": thumb_size,
        "classes": [c["name"] for c in categories],
        "images": images,
        "gts": gts,
        "dets": dets,
        "python_totals": totals,
    }
    return data, counts, skipped


def _asset(name):
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def render_html(data):
    """The page: assets/page.html with the CSS, the JavaScript and `data` inlined."""
    # "</script" or "<!--" inside the JSON would end or confuse its <script> element.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    parts = {
        "TITLE": html.escape(data["title"]),
        "CSS": _asset("page.css"),
        "JS": _asset("page.js"),
        "DATA": payload,
    }
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def write_page(path, data):
    """Write the page atomically (OutputError names the file when it cannot be written)."""
    write_text(path, render_html(data))
