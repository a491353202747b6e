"""
`instances_predictions.pth` in a compact form: Detectron2's evaluator saves the gathered
predictions as they are in memory (a list of {"image_id", "instances": [COCO result dict per
detection]}), a pickle of one dict per detection. Here each image keeps its `image_id` (and
anything else, e.g. "proposals"), and its "instances" are columns:

    {"bbox": (n, 4) XYWH_ABS, "score": (n,), "category_id": (n,) int64,
     "segmentation": {"size": (n, 2) int64, "counts": str (the image's RLE counts joined),
                      "lengths": (n,) int64}}          (only when the results have masks)

Floats are stored as float32 when that loses nothing (a model's float32 outputs), else
float64. `load_predictions` gives back Detectron2's form, equal to what was saved.
"""

import numpy as np
import torch

from .detections import Detections
from .output import write_output

__all__ = ["FORMAT", "save_predictions", "load_predictions", "compact", "expand"]

# The value of the "format" key of every compact image entry.
FORMAT = "cxr_d2.compact/1"


def _narrow(values):
    """float32 when every value survives the round trip, else float64."""
    as32 = values.astype(np.float32)
    return as32 if np.array_equal(as32.astype(np.float64), values) else values


def compact(predictions, dets=None):
    """
    The compact form of Detectron2's gathered predictions.

    Args:
        predictions (list[dict]): {"image_id", "instances": list[COCO result dict], ...}.
        dets (Detections): the columns of every image's "instances" in order, when already
            made; default: made here.

    Returns:
        list[dict], or `predictions` itself when some "instances" cannot be columns (left as
        they are, as Detectron2 saves them).
    """
    with_instances = [p for p in predictions if "instances" in p]
    counts = np.array([len(p["instances"]) for p in with_instances], dtype=np.int64)
    results = [r for p in with_instances for r in p["instances"]]
    if dets is None:
        try:
            dets = Detections.from_results(results)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            return predictions
    # Only the keys of the columns: anything else would not come back.
    if {len(r) for r in results} - {4 + (dets.segmentation is not None)}:
        return predictions
    if dets.image_id.dtype == object or dets.category_id.dtype == object:
        return predictions
    bbox, score = _narrow(dets.bbox), _narrow(dets.score)
    masks = _masks(dets.segmentation) if dets.segmentation is not None else None
    if masks is False:
        return predictions
    ends = np.cumsum(counts)
    out, k = [], 0
    for p in predictions:
        if "instances" not in p:
            out.append(p)
            continue
        a, b = ends[k] - counts[k], ends[k]
        inst = {"bbox": bbox[a:b], "score": score[a:b], "category_id": dets.category_id[a:b]}
        if masks is not None:
            sizes, joined, lengths, starts = masks
            inst["segmentation"] = {
                "size": sizes[a:b],
                "counts": joined[starts[a] : starts[b]],
                "lengths": lengths[a:b],
            }
        out.append(dict(p, instances=inst, format=FORMAT))
        k += 1
    return out


def _masks(segmentation):
    """(sizes, joined counts, lengths, starts) of RLEs with str counts; False for others."""
    if {type(s) for s in segmentation} - {dict}:
        return False
    counts = [s.get("counts") for s in segmentation]
    if {type(c) for c in counts} - {str}:
        return False
    try:
        sizes = np.array([s["size"] for s in segmentation], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        return False
    # Only {"size", "counts"}: anything else would not come back.
    if sizes.shape != (len(segmentation), 2) or any(len(s) != 2 for s in segmentation):
        return False
    lengths = np.fromiter(map(len, counts), np.int64, len(counts))
    starts = np.r_[0, np.cumsum(lengths)]
    return sizes, "".join(counts), lengths, starts


def expand(compacted):
    """Detectron2's form of `compact`'s output (COCO result dicts, as `instances_to_coco_json`)."""
    out = []
    for p in compacted:
        if p.get("format") != FORMAT:
            out.append(p)
            continue
        inst = p["instances"]
        image_id = p["image_id"]
        results = [
            {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
            for c, b, s in zip(
                inst["category_id"].tolist(),
                inst["bbox"].astype(np.float64).tolist(),
                inst["score"].astype(np.float64).tolist(),
            )
        ]
        if "segmentation" in inst:
            m = inst["segmentation"]
            ends = np.cumsum(m["lengths"]).tolist()
            starts = [0] + ends[:-1]
            for r, size, a, b in zip(results, m["size"].tolist(), starts, ends):
                r["segmentation"] = {"size": size, "counts": m["counts"][a:b]}
        q = {k: v for k, v in p.items() if k != "format"}
        q["instances"] = results
        out.append(q)
    return out


def save_predictions(path, predictions, dets=None):
    """Write `compact(predictions, dets)` with torch.save, atomically (OutputError on failure)."""
    data = compact(predictions, dets)
    write_output(path, lambda f: torch.save(data, f))


def load_predictions(path):
    """Read an `instances_predictions.pth` (compact or Detectron2's) in Detectron2's form."""
    return expand(torch.load(path, weights_only=False))
