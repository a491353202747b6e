#!/usr/bin/env python
"""
Wall time of cxr-d2's COCO evaluation against plain pycocotools on a generated set:

    python tools/benchmark_eval.py --images 1000 --dets 100

Generated, seeded: 512x512 images with 0-5 lesions of 4 classes and `--dets` detections per
image (jittered copies of the lesions and clutter, random classes and scores). Measures, on
the same inputs:
  1. plain pycocotools: COCO + loadRes + COCOeval evaluate/accumulate/summarize (bbox,
     maxDets 1/10/100), as anyone would run it;
  2. cxr-d2's scoring of the same task (`run_cocoeval` + `summarize`, maxDets 1/10/100/300)
     with each backend;
  3. the whole CXRCOCOEvaluator.evaluate() (bbox, bbox_agnostic and FROC of both, files).
and checks that the metrics agree. Not a test: run it by hand, the numbers go to
docs/evaluation.md.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr_d2.evaluation import CXRCOCOEvaluator, run_cocoeval, summarize
from cxr_d2.evaluation.cocoeval import make_coco

SIZE = 512
CLASSES = ("a", "b", "c", "d")


def generate(num_images, dets_per_image, seed=0):
    """Returns (COCO ground truth dict, COCO results list); boxes XYWH_ABS, ids from 1."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img in range(1, num_images + 1):
        images.append({"id": img, "height": SIZE, "width": SIZE, "file_name": f"{img}.png"})
        lesions = []
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(8, 160, 2)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            lesions.append(([x, y, w, h], int(rng.integers(0, len(CLASSES)))))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img,
                    "category_id": lesions[-1][1],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for k in range(dets_per_image):
            if lesions and k < 3 * len(lesions):
                box, cat = lesions[k % len(lesions)]
                box = list(np.asarray(box) + rng.normal(0, 4, 4))
                box[2:] = [max(box[2], 1.0), max(box[3], 1.0)]
                if rng.uniform() < 0.2:
                    cat = int(rng.integers(0, len(CLASSES)))
            else:
                w, h = rng.uniform(8, 160, 2)
                box = [rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h), w, h]
                cat = int(rng.integers(0, len(CLASSES)))
            dets.append(
                {
                    "image_id": img,
                    "category_id": cat,
                    "bbox": [float(v) for v in box],
                    "score": float(rng.uniform()),
                }
            )
    cats = [{"id": k, "name": n} for k, n in enumerate(CLASSES)]
    return {"images": images, "categories": cats, "annotations": anns}, dets


def plain_pycocotools(gt, dets):
    # Fresh dicts (pycocotools writes into them), made before the clock starts.
    gt = dict(gt, annotations=[dict(a) for a in gt["annotations"]])
    dets = [dict(d) for d in dets]
    start = time.perf_counter()
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, ev.stats


def cxr_scoring(gt, dets, backend):
    start = time.perf_counter()
    ev = run_cocoeval(make_coco(gt, backend), dets, "bbox", (1, 10, 100, 300), backend)
    summary = summarize(ev)
    return time.perf_counter() - start, summary


def whole_evaluator(gt, dets, backend, out_dir):
    """Register the set as a Detectron2 dataset and run CXRCOCOEvaluator on Instances."""
    name = "cxr_benchmark_eval"
    per_image = {}
    for a in gt["annotations"]:
        per_image.setdefault(a["image_id"], []).append(
            {
                "bbox": a["bbox"],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": a["category_id"],
                "iscrowd": 0,
            }
        )
    dicts = [
        dict(im, image_id=im["id"], annotations=per_image.get(im["id"], [])) for im in gt["images"]
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASSES))
    try:
        evaluator = CXRCOCOEvaluator(
            name, ("bbox",), distributed=False, output_dir=out_dir, backend=backend
        )
        by_image = {}
        for d in dets:
            by_image.setdefault(d["image_id"], []).append(d)
        evaluator.reset()
        for im in gt["images"]:
            rows = by_image.get(im["id"], [])
            inst = Instances((SIZE, SIZE))
            xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float64).reshape(-1, 4)
            inst.pred_boxes = Boxes(
                BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS).float()
            )
            inst.scores = torch.tensor([r["score"] for r in rows], dtype=torch.float32)
            inst.pred_classes = torch.tensor([r["category_id"] for r in rows], dtype=torch.int64)
            evaluator.process([{"image_id": im["id"]}], [{"instances": inst}])
        start = time.perf_counter()
        results = evaluator.evaluate()
        return time.perf_counter() - start, results
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timings per method (the best is kept)"
    )
    parser.add_argument("--json", default=None, help="also write the timings to this file")
    args = parser.parse_args()

    gt, dets = generate(args.images, args.dets)
    print(
        f"{args.images} images, {len(gt['annotations'])} lesions, {len(dets)} detections; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}"
    )
    times = {}
    t_ref, stats = min(
        (plain_pycocotools(gt, dets) for _ in range(args.repeat)), key=lambda r: r[0]
    )
    times["plain pycocotools (bbox)"] = t_ref
    for backend in ("pycocotools", "faster_coco_eval"):
        t, summary = min(
            (cxr_scoring(gt, dets, backend) for _ in range(args.repeat)), key=lambda r: r[0]
        )
        times[f"cxr-d2 scoring, {backend} (bbox)"] = t
        got = [summary[k] for k in ("AP", "AP50", "AP75", "AR@1", "AR@10", "AR@100")]
        # AP at 300 = AP at 100 here: never more than 100 detections per image and class.
        assert np.allclose(got, stats[[0, 1, 2, 6, 7, 8]], atol=1e-6), (backend, got, stats)
    with tempfile.TemporaryDirectory() as tmp:
        t, results = min(
            (whole_evaluator(gt, dets, "faster_coco_eval", tmp) for _ in range(args.repeat)),
            key=lambda r: r[0],
        )
    assert abs(results["bbox"]["AP"] - stats[0] * 100) < 1e-4
    times["CXRCOCOEvaluator.evaluate() (bbox, bbox_agnostic, FROC x2)"] = t
    width = max(map(len, times))
    for name, t in times.items():
        print(f"{name:<{width}}  {t:8.2f} s   x{t_ref / t:5.2f} vs plain pycocotools")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": args.images, "dets": args.dets, "seconds": times}, f, indent=1)


if __name__ == "__main__":
    main()
