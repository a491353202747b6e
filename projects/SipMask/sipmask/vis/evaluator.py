"""YouTube-VIS evaluation of tracked sequences (evaluator_type "youtube_vis")."""

import itertools
import logging
import os
from collections import OrderedDict, defaultdict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from cxr_d2.evaluation.output import write_json
from cxr_d2.evaluation.vis import evaluate_vis, frame_ap, id_switches

__all__ = ["VISEvaluator", "sequence_tracks", "ground_truth_vis", "RESULTS_FILE", "METRICS_FILE"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "vis_results.json"
METRICS_FILE = "vis_metrics.json"


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def sequence_tracks(video_id, frames):
    """
    One result per identity of a tracked sequence, as the official `results2json_videoseg`:
    score the mean of its frame scores, class the majority vote of its frame classes (the
    smallest on a tie), one RLE per frame (None where the identity is absent).

    Args:
        video_id: the sequence's id.
        frames: per frame, Instances with track_ids, scores, pred_classes, pred_masks (R, H, W).
    Returns:
        list of {"video_id", "track_id", "category_id" (contiguous), "score", "segmentations"}.
    """
    tracks = defaultdict(lambda: {"scores": [], "classes": [], "segms": {}})
    for t, inst in enumerate(frames):
        masks = inst.pred_masks.cpu().numpy()
        for k, (tid, score, cls) in enumerate(
            zip(inst.track_ids.tolist(), inst.scores.tolist(), inst.pred_classes.tolist())
        ):
            tracks[tid]["scores"].append(score)
            tracks[tid]["classes"].append(cls)
            tracks[tid]["segms"][t] = _rle(masks[k])
    return [
        {
            "video_id": video_id,
            "track_id": tid,
            "category_id": int(np.bincount(tr["classes"]).argmax()),
            "score": float(np.mean(tr["scores"])),
            "segmentations": [tr["segms"].get(t) for t in range(len(frames))],
        }
        for tid, tr in sorted(tracks.items())
    ]


def ground_truth_vis(sequences, class_names):
    """
    The YouTube-VIS ground-truth dict of `cxr_d2.evaluation.vis` from sequence dicts: one
    track per (sequence, track id), categories by contiguous index, frames where a track is
    absent None.
    """
    videos, annotations = [], []
    for s in sequences:
        videos.append(
            {
                "id": s["video_id"],
                "height": s["height"],
                "width": s["width"],
                "length": len(s["file_names"]),
            }
        )
        tracks = {}
        for t, frame in enumerate(s["annotations"]):
            for a in frame:
                tr = tracks.setdefault(a["id"], {
                    "id": len(annotations) + len(tracks) + 1, "video_id": s["video_id"],
                    "category_id": a["category_id"], "iscrowd": int(a.get("iscrowd", 0)),
                    "segmentations": [None] * len(s["file_names"]),
                })  # fmt: skip
                tr["segmentations"][t] = a["segmentation"]
        annotations.extend(tracks.values())
    categories = [{"id": k, "name": n} for k, n in enumerate(class_names)]
    return {"videos": videos, "annotations": annotations, "categories": categories}


class VISEvaluator(DatasetEvaluator):
    """
    Collects each sequence's tracks (:func:`sequence_tracks`) and scores them with
    :func:`cxr_d2.evaluation.vis.evaluate_vis` (YouTube-VIS AP on spatio-temporal mask IoU),
    :func:`frame_ap` (the same masks frame by frame) and :func:`id_switches`. Writes
    `output_dir/vis_results.json` (YouTube-VIS results, dataset category ids) and
    `vis_metrics.json`, atomically. Values are percent (0-100) as Detectron2's COCO evaluator's;
    id_switches is a count.
    """

    def __init__(self, dataset_name, output_dir=None, distributed=True):
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.distributed = distributed
        self.reset()

    def reset(self):
        self._tracks = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            frames = [f["instances"].to("cpu") for f in out["frames"]]
            self._tracks.extend(sequence_tracks(inp["video_id"], frames))

    def evaluate(self):
        tracks = self._tracks
        if self.distributed:
            comm.synchronize()
            tracks = list(itertools.chain(*comm.gather(tracks, dst=0)))
            if not comm.is_main_process():
                return {}
        meta = MetadataCatalog.get(self.dataset_name)
        gt = ground_truth_vis(DatasetCatalog.get(self.dataset_name), meta.thing_classes)
        metrics = {k: _percent(v) for k, v in evaluate_vis(gt, tracks).items()}
        metrics.update({f"frame_{k}": _percent(v) for k, v in frame_ap(gt, tracks).items()})
        switches = id_switches(gt, tracks)
        metrics["id_switches"] = float(switches["id_switches"])
        if self.output_dir:
            self._write(tracks, metrics, switches, meta)
        return OrderedDict(vis=metrics)

    def _write(self, tracks, metrics, switches, meta):
        to_dataset = {
            v: k for k, v in getattr(meta, "thing_dataset_id_to_contiguous_id", {}).items()
        }
        results = [{**{k: v for k, v in tr.items() if k != "track_id"},
                    "category_id": to_dataset.get(tr["category_id"], tr["category_id"])}
                   for tr in tracks]  # fmt: skip
        write_json(os.path.join(self.output_dir, RESULTS_FILE), results)
        write_json(os.path.join(self.output_dir, METRICS_FILE),
                   {"dataset": self.dataset_name, "units": "percent (0-100); id_switches: count",
                    "metrics": metrics, "id_switches": switches}, indent=1)  # fmt: skip
        logger.info(f"VIS results of {self.dataset_name} written to {self.output_dir}")


def _percent(value):
    return float(value * 100) if value >= 0 else float("nan")
