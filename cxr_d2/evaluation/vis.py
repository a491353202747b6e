"""
Video instance segmentation scored as YouTube-VIS scores it (the `ytvoseval` of the
YouTube-VIS cocoapi fork): COCO's AP, AP50, AP75, AR@1 and AR@10, where a detection is one
track over a whole sequence and its IoU with a ground-truth track is the spatio-temporal mask
IoU: intersections and unions summed over the sequence's frames.

Ground truth is a YouTube-VIS dict: `videos` ({id, width, height, length or file_names}),
`categories`, and `annotations`, one per track ({id, video_id, category_id, iscrowd,
segmentations: one per frame, a COCO polygon list, an RLE (compressed or not) or None where
the object is absent}). Results are a list of tracks ({video_id, category_id, score,
segmentations: one per frame, RLE or None}).

Matching runs through pycocotools' COCOeval with each video as an "image" and each track as an
"annotation", and only the IoU computation replaced; a track's size for the area ranges is the
mean of its non-empty frames' areas, as ytvoseval's `avg_area`.

Also here, so a user sees what tracking adds: `frame_ap` (the same masks scored frame by frame
as independent images: COCO mask AP, blind to identities) and `id_switches` (how often a
ground-truth object's matched track changes from one frame where it is matched to the next).
"""

import contextlib
import io

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

from .cocoeval import make_coco, summarize

__all__ = [
    "VIS_MAX_DETS",
    "frame_rles",
    "spatio_temporal_iou",
    "evaluate_vis",
    "frame_ap",
    "id_switches",
]

# YouTube-VIS's detection limits per video: AR@1, AR@10 and AP at 100.
VIS_MAX_DETS = (1, 10, 100)


def frame_rles(segmentations, height, width):
    """
    One compressed RLE per frame (None where the object is absent) from a YouTube-VIS
    `segmentations` list of polygons, RLEs (compressed or uncompressed) or None.
    """
    out = []
    for seg in segmentations:
        if seg is None or (isinstance(seg, list) and not seg):
            out.append(None)
        elif isinstance(seg, list):
            out.append(mask_util.merge(mask_util.frPyObjects(seg, height, width)))
        elif isinstance(seg.get("counts"), list):
            out.append(mask_util.frPyObjects(seg, height, width))
        else:
            out.append(seg)
    return out


def spatio_temporal_iou(dt_seq, gt_seq):
    """
    Sum over frames of the intersection of two tracks' masks, over the sum of their unions;
    a frame where only one track has a mask adds its area to the union. 0 when both are empty.

    Args:
        dt_seq, gt_seq (list[dict | None]): one compressed RLE (or None) per frame, same length.
    """
    inter = union = 0.0
    for d, g in zip(dt_seq, gt_seq):
        if d is not None and g is not None:
            inter += float(mask_util.area(mask_util.merge([d, g], intersect=True)))
            union += float(mask_util.area(mask_util.merge([d, g], intersect=False)))
        elif d is not None or g is not None:
            union += float(mask_util.area(d if d is not None else g))
    return inter / union if union > 0 else 0.0


def _mean_area(rles):
    areas = [float(mask_util.area(r)) for r in rles if r is not None]
    return float(np.mean(areas)) if areas else 0.0


def _video_sizes(gt):
    return {v["id"]: (int(v["height"]), int(v["width"])) for v in gt["videos"]}


def _tracks_as_coco(gt, tracks, sizes, results):
    """A COCO dict whose images are the videos and whose annotations are the tracks."""
    images = [{"id": vid, "height": h, "width": w} for vid, (h, w) in sizes.items()]
    annotations = []
    for k, track in enumerate(tracks, start=1):
        h, w = sizes[track["video_id"]]
        rles = frame_rles(track["segmentations"], h, w)
        ann = {
            "id": k if results else track["id"],
            "image_id": track["video_id"],
            "category_id": track["category_id"],
            "iscrowd": int(track.get("iscrowd", 0)),
            "area": _mean_area(rles),
            "bbox": [0.0, 0.0, 0.0, 0.0],
            "rles": rles,
        }
        if results:
            ann["score"] = float(track["score"])
        annotations.append(ann)
    return {"images": images, "categories": gt["categories"], "annotations": annotations}


class _SequenceEval(COCOeval):
    """COCOeval whose IoU between a detection and a ground truth is the spatio-temporal IoU."""

    def computeIoU(self, vid, cat):
        p = self.params
        if p.useCats:
            gt, dt = self._gts[vid, cat], self._dts[vid, cat]
        else:
            gt = [g for c in p.catIds for g in self._gts[vid, c]]
            dt = [d for c in p.catIds for d in self._dts[vid, c]]
        if not gt or not dt:
            return []
        # The order and cut of COCOeval.computeIoU, which evaluateImg relies on.
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: p.maxDets[-1]]
        ious = np.zeros((len(dt), len(gt)))
        for i, j in np.ndindex(ious.shape):
            ious[i, j] = spatio_temporal_iou(dt[i]["rles"], gt[j]["rles"])
        return ious


def evaluate_vis(gt, results, max_dets=VIS_MAX_DETS, use_cats=True):
    """
    YouTube-VIS scores of `results` against `gt` (see the module docstring for both formats).

    Returns:
        dict[str, float]: AP, AP50, AP75, APs, APm, APl, AR@1, AR@10, AR@100, AR, ARs, ARm, ARl,
        fractions in [0, 1], -1 where no ground truth makes one undefined.
    """
    sizes = _video_sizes(gt)
    coco_gt = make_coco(_tracks_as_coco(gt, gt["annotations"], sizes, results=False))
    coco_dt = make_coco(_tracks_as_coco(gt, results, sizes, results=True))
    evaluator = _SequenceEval(coco_gt, coco_dt, "bbox")
    evaluator.params.maxDets = sorted(int(m) for m in max_dets)
    evaluator.params.useCats = int(use_cats)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return summarize(evaluator)


def _frame_dataset(gt, tracks, results):
    """Every (video, frame) as a COCO image and every track's mask in it as an annotation."""
    sizes = _video_sizes(gt)
    images, annotations = [], []
    frame_ids = {}
    for v in gt["videos"]:
        length = int(v.get("length") or len(v["file_names"]))
        for t in range(length):
            frame_ids[v["id"], t] = len(frame_ids) + 1
            images.append({"id": frame_ids[v["id"], t], "height": sizes[v["id"]][0],
                           "width": sizes[v["id"]][1]})
    for track in tracks:
        h, w = sizes[track["video_id"]]
        for t, rle in enumerate(frame_rles(track["segmentations"], h, w)):
            if rle is None:
                continue
            ann = {
                "id": len(annotations) + 1,
                "image_id": frame_ids[track["video_id"], t],
                "category_id": track["category_id"],
                "segmentation": rle,
                "area": float(mask_util.area(rle)),
                "bbox": mask_util.toBbox(rle).tolist(),
                "iscrowd": int(track.get("iscrowd", 0)),
            }
            if results:
                ann["score"] = float(track["score"])
            annotations.append(ann)
    return {"images": images, "categories": gt["categories"], "annotations": annotations}


def frame_ap(gt, results, max_dets=VIS_MAX_DETS):
    """
    The same tracks scored frame by frame: each (video, frame) an image, each track's mask in
    it a detection with the track's score; COCO mask metrics (identities play no part).
    """
    coco_gt = make_coco(_frame_dataset(gt, gt["annotations"], results=False))
    coco_dt = make_coco(_frame_dataset(gt, results, results=True))
    evaluator = COCOeval(coco_gt, coco_dt, "segm")
    evaluator.params.maxDets = sorted(int(m) for m in max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return summarize(evaluator)


def _match_frame(gt_masks, dt_masks, iou_thresh):
    """Greedy one-to-one matching by descending mask IoU: {gt index: dt index}."""
    if not gt_masks or not dt_masks:
        return {}
    ious = mask_util.iou(dt_masks, gt_masks, [0] * len(gt_masks))
    pairs = sorted(np.ndindex(ious.shape), key=lambda ij: -ious[ij])
    matched, used = {}, set()
    for d, g in pairs:
        if ious[d, g] < iou_thresh:
            break
        if g not in matched and d not in used:
            matched[g] = d
            used.add(d)
    return matched


def id_switches(gt, results, iou_thresh=0.5, score_thresh=0.5):
    """
    Identity switches as CLEAR-MOT counts them: frame by frame, ground-truth objects and the
    tracks scoring at least `score_thresh` (same video, same category) are matched one to one
    by mask IoU >= `iou_thresh` (greedy by IoU); a switch is a ground-truth object matched to
    another track than at its previous matched frame. A frame where it is missed is no switch.

    Returns:
        dict: {"id_switches": int, "matched_frames": int, "gt_frames": int}.
    """
    sizes = _video_sizes(gt)
    kept = [r for r in results if r["score"] >= score_thresh]
    switches = matched_frames = gt_frames = 0
    for vid, (h, w) in sizes.items():
        for cat in {a["category_id"] for a in gt["annotations"] if a["video_id"] == vid}:
            gts = [frame_rles(a["segmentations"], h, w) for a in gt["annotations"]
                   if a["video_id"] == vid and a["category_id"] == cat]
            dts = [frame_rles(r["segmentations"], h, w) for r in kept
                   if r["video_id"] == vid and r["category_id"] == cat]
            last = {}
            for t in range(len(gts[0])):
                g_idx = [i for i, g in enumerate(gts) if g[t] is not None]
                d_idx = [j for j, d in enumerate(dts) if t < len(d) and d[t] is not None]
                gt_frames += len(g_idx)
                match = _match_frame([gts[i][t] for i in g_idx], [dts[j][t] for j in d_idx],
                                     iou_thresh)
                for gi, di in match.items():
                    g, d = g_idx[gi], d_idx[di]
                    matched_frames += 1
                    switches += int(g in last and last[g] != d)
                    last[g] = d
    return {"id_switches": switches, "matched_frames": matched_frames, "gt_frames": gt_frames}
