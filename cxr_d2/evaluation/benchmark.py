"""
The evaluation benchmark behind tools/benchmark_eval.py.

A seeded set: `--images` 512x512 images with 0-5 lesions of 4 classes (12-gon outlines, their
boxes and masks) and `--dets` detections per image (jittered copies of the lesions, then
clutter, random classes and scores; float32 values, as a model's). Systems, run in turn in
every round (interleaved, so a change of the machine's load hits all alike):

- plain <backend> <task>: the backend's own COCO + loadRes + COCOeval evaluate, accumulate,
  summarize (maxDets 1/10/100), as anyone would run it;
- cxr-d2 scoring, <backend> <task>: `run_cocoeval` + `summarize` (maxDets 1/10/100/300);
- evaluate(), <backend>: the whole CXRCOCOEvaluator.evaluate() of a registered dataset: bbox
  and segm, class-specific and agnostic, FROC of each, every file; its predictions are given
  as Detectron2's `process()` leaves them (COCO result dicts with RLE masks).

Every system's metrics must equal plain pycocotools' (hotcoco exactly, the others to 1e-12;
else it stops). The first `--warmup` rounds are not counted; the table gives medians over
`--repeat` rounds and the median of each round's ratio to plain pycocotools on the same
task (bbox for evaluate(), which does bbox and segm).
"""

import argparse
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time

import numpy as np
from pycocotools import mask as mask_util

__all__ = ["generate", "main"]

SIZE = 512
CLASSES = ("a", "b", "c", "d")
_STATS = 12


def _outline(x, y, w, h, rng):
    """A 12-gon inside the box (x, y, w, h), flattened [x1, y1, ...]."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    radius = rng.uniform(0.75, 1.0, 12)
    px = x + w / 2 + np.cos(angles) * radius * w / 2
    py = y + h / 2 + np.sin(angles) * radius * h / 2
    return np.c_[px, py].reshape(-1).tolist()


def _f32(values):
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


def generate(num_images, dets_per_image, seed=0):
    """
    Returns (COCO ground truth dict, COCO results list): boxes XYWH_ABS, polygons in the
    ground truth, RLE masks (str counts) in the results, image ids from 1, category ids 0-3.
    """
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img in range(1, num_images + 1):
        images.append({"id": img, "height": SIZE, "width": SIZE, "file_name": f"{img}.png"})
        lesions = []
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(8, 160, 2)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            cat = int(rng.integers(0, len(CLASSES)))
            poly = _outline(x, y, w, h, rng)
            lesions.append(([x, y, w, h], cat))
            rle = mask_util.merge(mask_util.frPyObjects([poly], SIZE, SIZE))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img,
                    "category_id": cat,
                    "bbox": mask_util.toBbox(rle).tolist(),
                    "segmentation": [poly],
                    "area": float(mask_util.area(rle)),
                    "iscrowd": 0,
                }
            )
        boxes, cats = [], []
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
            boxes.append(box)
            cats.append(cat)
        polys = [[_outline(*b, rng)] for b in boxes]
        rles = [mask_util.merge(mask_util.frPyObjects(p, SIZE, SIZE)) for p in polys]
        for box, cat, rle in zip(boxes, cats, rles):
            dets.append(
                {
                    "image_id": img,
                    "category_id": cat,
                    "bbox": _f32(box),
                    "score": _f32(rng.uniform()),
                    "segmentation": {"size": [SIZE, SIZE], "counts": rle["counts"].decode()},
                }
            )
    cats = [{"id": k, "name": n} for k, n in enumerate(CLASSES)]
    return {"images": images, "categories": cats, "annotations": anns}, dets


def _task_results(dets, iou_type):
    """The results as a user hands them to a backend: no mask for bbox, no box for segm."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: v for k, v in d.items() if k != drop} for d in dets]


def _plain(backend, gt, results, iou_type):
    """The backend used directly; its inputs are fresh copies, made before the clock starts."""
    gt = dict(gt, annotations=[dict(a) for a in gt["annotations"]])
    results = [dict(r) for r in results]
    if backend == "hotcoco":
        import hotcoco

        coco_cls, make_eval = hotcoco.COCO, hotcoco.COCOeval
    elif backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        coco_cls = COCO

        def make_eval(g, d, t):
            return COCOeval_faster(g, d, t, print_function=lambda *a, **k: None)

    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco_cls, make_eval = COCO, COCOeval
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "hotcoco":
            coco = coco_cls(gt)
        else:
            coco = coco_cls()
            coco.dataset = gt
            coco.createIndex()
        ev = make_eval(coco, coco.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats, dtype=np.float64)


def _scoring(backend, gt, results, iou_type):
    from .cocoeval import make_coco, run_cocoeval, summarize

    start = time.perf_counter()
    ev = run_cocoeval(make_coco(gt, backend), results, iou_type, (1, 10, 100, 300), backend)
    summary = summarize(ev)
    return time.perf_counter() - start, summary


@contextlib.contextmanager
def registered(gt, classes=CLASSES, name="cxr_benchmark_eval"):
    """
    A COCO ground-truth dict registered as Detectron2 dataset `name` (boxes XYWH_ABS, the
    annotations' segmentation and iscrowd, `classes` as thing_classes) while the block runs.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    per_image = {}
    for a in gt["annotations"]:
        per_image.setdefault(a["image_id"], []).append(
            {
                "bbox": a["bbox"],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": a["category_id"],
                "segmentation": a["segmentation"],
                "iscrowd": a.get("iscrowd", 0),
            }
        )
    dicts = [
        dict(im, file_name=im.get("file_name", f"{im['id']}.png"), image_id=im["id"],
             annotations=per_image.get(im["id"], []))  # fmt: skip
        for im in gt["images"]
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(classes))
    try:
        yield name
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _whole(backend, name, dets, out_dir):
    """CXRCOCOEvaluator.evaluate() on predictions as Detectron2's process() leaves them."""
    from .coco import CXRCOCOEvaluator

    evaluator = CXRCOCOEvaluator(
        name, ("bbox", "segm"), distributed=False, output_dir=out_dir, backend=backend
    )
    by_image = {}
    for d in dets:  # process() makes new dicts for every image: so does this
        by_image.setdefault(d["image_id"], []).append(dict(d))
    evaluator.reset()
    evaluator._predictions = [{"image_id": i, "instances": rows} for i, rows in by_image.items()]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        results = evaluator.evaluate()
    return time.perf_counter() - start, results


def _load():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _check(label, got, want, diffs):
    """Record the largest difference to pycocotools; stop above 1e-12 (hotcoco: above 0)."""
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    diffs[label] = max(diff, diffs.get(label, 0.0))
    if diff > (0.0 if "hotcoco" in label else 1e-12):
        raise SystemExit(f"error: {label} differs from pycocotools by {diff:g}: {got} != {want}")


def _systems(args, gt, dets, name, out_dir):
    """[(label, callable returning (seconds, metrics), reference label)]."""
    inputs = {t: _task_results(dets, t) for t in ("bbox", "segm")}
    systems = []
    for task in args.tasks:
        for b in args.backends:
            systems.append((f"plain {b} {task}", lambda b=b, t=task: _plain(b, gt, inputs[t], t)))
        for b in args.backends:
            systems.append(
                (f"cxr-d2 scoring, {b} {task}", lambda b=b, t=task: _scoring(b, gt, inputs[t], t))
            )
    for b in args.whole:
        systems.append((f"evaluate(), {b}", lambda b=b: _whole(b, name, dets, out_dir)))
    return systems


def _verify(label, metrics, reference, diffs):
    """Every system's numbers against pycocotools' (its plain run, or its cxr-d2 scoring)."""
    if label.startswith("plain "):
        task = label.split()[-1]
        _check(label, metrics, reference[f"plain pycocotools {task}"], diffs)
    elif label.startswith("cxr-d2 scoring"):
        task = label.split()[-1]
        ref = reference[f"cxr-d2 scoring, pycocotools {task}"]
        _check(label, list(metrics.values()), list(ref.values()), diffs)
        plain = reference[f"plain pycocotools {task}"]
        # Never more than 100 detections per image and class here: AP at 300 = AP at 100.
        got = [metrics[k] for k in ("AP", "AP50", "AP75", "AR@1", "AR@10", "AR@100")]
        _check(label, got, plain[[0, 1, 2, 6, 7, 8]], diffs)
    else:
        for task in ("bbox", "segm"):
            plain = reference.get(f"plain pycocotools {task}")
            if plain is not None:
                got = [metrics[task][k] / 100 for k in ("AP", "AP50", "AP75")]
                # Percentages and back: not bit for bit.
                if not np.allclose(got, plain[:3], rtol=0, atol=1e-12):
                    raise SystemExit(f"error: {label} {task} differs: {got} != {plain[:3]}")


def _table(args, times, loads, diffs):
    """
    The Markdown table: median seconds, the median over rounds of the ratio to plain
    pycocotools on the same task (bbox for evaluate()), load averages, differences.
    """
    lines = [
        f"| {args.images} images x {args.dets} detections | median s | x plain pycocotools "
        "(same task) | load avg (1 min) | max diff to pycocotools |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, values in times.items():
        task = label.split()[-1] if label.split()[-1] in ("bbox", "segm") else "bbox"
        base = times.get(f"plain pycocotools {task}", values)
        ratios = [b / v for b, v in zip(base, values)]
        load = loads[label]
        lines.append(
            f"| {label} | {statistics.median(values):.3f} | {statistics.median(ratios):.1f} | "
            f"{min(load):.1f}-{max(load):.1f} | {_diff(label, diffs)} |"
        )
    return "\n".join(lines)


def _diff(label, diffs):
    if label.startswith("evaluate()"):
        return "< 1e-12 (AP, AP50, AP75)"
    return f"{diffs.get(label, 0.0):.1g}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image (<= 100)")
    parser.add_argument("--repeat", type=int, default=5, help="counted rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    parser.add_argument(
        "--backends", nargs="+", default=["pycocotools", "faster_coco_eval", "hotcoco"]
    )
    parser.add_argument("--tasks", nargs="+", default=["bbox", "segm"])
    parser.add_argument(
        "--whole", nargs="*", default=["hotcoco"], help="backends of the whole evaluate() timed"
    )
    args = parser.parse_args(argv)
    if "pycocotools" not in args.backends:
        parser.error("--backends must include pycocotools (the reference)")
    if args.dets > 100:
        parser.error("--dets: at most 100, so that the plain (maxDets 100) scores compare")
    gt, dets = generate(args.images, args.dets)
    print(
        f"{args.images} images, {len(gt['annotations'])} lesions, {len(dets)} detections; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_version()}; load average at start {_load():.2f}; hotcoco threads: "
        f"{os.environ.get('RAYON_NUM_THREADS', 'one per CPU')}"
    )
    times, loads, reference, diffs = {}, {}, {}, {}
    with registered(gt) as name, tempfile.TemporaryDirectory() as out_dir:
        systems = _systems(args, gt, dets, name, out_dir)
        for round_ in range(args.warmup + args.repeat):
            for label, run in systems:
                load = _load()
                seconds, metrics = run()
                if round_ == 0:
                    if label.startswith("plain pycocotools") or label.startswith(
                        "cxr-d2 scoring, pycocotools"
                    ):
                        reference[label] = metrics
                    _verify(label, metrics, reference, diffs)
                if round_ >= args.warmup:
                    times.setdefault(label, []).append(seconds)
                    loads.setdefault(label, []).append(max(load, _load()))
            print(f"round {round_ + 1}/{args.warmup + args.repeat} done, load {_load():.2f}")
    print("every system's metrics equal pycocotools' (checked in the first round)\n")
    print(_table(args, times, loads, diffs))
    return 0
