"""
Cases shared by the error-page tests: a hand-worked dataset, and predictions on the tiny
phantom set (jittered lesions, duplicates, misses and clutter, seeded).
"""

import contextlib

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from detectron2.structures import BoxMode

from cxr_d2.evaluation.errors_page.matching import Counts

HAND = "cxr_test_errors_hand"
# image -> [(XYWH box, class, iscrowd)]; classes a (0) and b (1); 100 x 100 images.
HAND_GT = {
    1: [([0, 0, 10, 10], 0, 0)],
    2: [([50, 50, 10, 10], 0, 0), ([20, 20, 10, 10], 1, 0)],
    3: [],
    4: [([0, 0, 40, 40], 0, 1)],
    5: [([0, 0, 10, 10], 0, 0), ([3, 0, 10, 10], 0, 0)],
}
# (image, class, XYWH box, score), in file order.
HAND_DETS = [
    (1, 0, [0, 0, 10, 10], 0.95),  # TP
    (1, 0, [1, 0, 10, 10], 0.85),  # FP: IoU 90/110 with the lesion already found
    (1, 1, [0, 0, 10, 10], 0.80),  # FP: right place, wrong class
    (2, 0, [52, 50, 10, 10], 0.60),  # TP: IoU 80/120
    (2, 1, [25, 20, 10, 10], 0.40),  # FP: IoU 50/150 < 0.5, the b lesion is missed
    (3, 0, [30, 30, 10, 10], 0.70),  # FP: image without lesions
    (4, 0, [5, 5, 10, 10], 0.90),  # neither: inside the crowd region (IoU over its own area 1)
    (4, 1, [60, 60, 10, 10], 0.30),  # FP
    # Equal scores: A (IoU 85/115 with both lesions, takes the first) comes first in the file,
    # so B (IoU 80/120 with the first lesion only) finds it taken: 1 TP, 1 FP, 1 missed.
    (5, 0, [1.5, 0, 10, 10], 0.55),  # A
    (5, 0, [-2, 0, 10, 10], 0.55),  # B
]
# Hand-worked counts (tp, fp, fn, lesions) per image at a score threshold (scores >= it are
# kept: 0.55 and 0.6 are scores of counted detections), all classes.
HAND_EXPECTED = {
    0.0: {1: (1, 2, 0, 1), 2: (1, 1, 1, 2), 3: (0, 1, 0, 0), 4: (0, 1, 0, 0), 5: (1, 1, 1, 2)},
    0.5: {1: (1, 2, 0, 1), 2: (1, 0, 1, 2), 3: (0, 1, 0, 0), 4: (0, 0, 0, 0), 5: (1, 1, 1, 2)},
    0.55: {1: (1, 2, 0, 1), 2: (1, 0, 1, 2), 3: (0, 1, 0, 0), 4: (0, 0, 0, 0), 5: (1, 1, 1, 2)},
    0.6: {1: (1, 2, 0, 1), 2: (1, 0, 1, 2), 3: (0, 1, 0, 0), 4: (0, 0, 0, 0), 5: (0, 0, 2, 2)},
    0.56: {1: (1, 2, 0, 1), 2: (1, 0, 1, 2), 3: (0, 1, 0, 0), 4: (0, 0, 0, 0), 5: (0, 0, 2, 2)},
    0.9: {1: (1, 0, 0, 1), 2: (0, 0, 2, 2), 3: (0, 0, 0, 0), 4: (0, 0, 0, 0), 5: (0, 0, 2, 2)},
}
# Class b only, threshold 0.
HAND_EXPECTED_B = {
    1: (0, 1, 0, 0),
    2: (0, 1, 1, 1),
    3: (0, 0, 0, 0),
    4: (0, 1, 0, 0),
    5: (0, 0, 0, 0),
}

# All classes, every detection: scores .95 TP, .90 crowd, .85 .80 .70 FP, .60 TP, .55 TP+FP
# (tied: one operating point), .40 .30 FP; 5 lesions, 5 images. FROC (FP per image,
# sensitivity) vertices, first point of each sensitivity and the last; PR (recall, precision)
# at every operating point.
HAND_FROC = [(0, 0), (0, 0.2), (0.6, 0.4), (0.8, 0.6), (1.2, 0.6)]
HAND_PR = [
    (0.2, 1),
    (0.2, 1 / 2),
    (0.2, 1 / 3),
    (0.2, 1 / 4),
    (0.4, 2 / 5),
    (0.6, 3 / 7),
    (0.6, 3 / 8),
    (0.6, 3 / 9),
]


def expected(table):
    return {img: Counts(*v) for img, v in table.items()}


@contextlib.contextmanager
def hand_dataset(classes=("a", "b")):
    """Register HAND_GT as a Detectron2 dataset (its image files do not exist)."""
    dicts = [
        {
            "file_name": f"/nonexistent/hand{i}.png",
            "image_id": i,
            "height": 100,
            "width": 100,
            "annotations": [
                {"bbox": b, "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": crowd}
                for b, c, crowd in anns
            ],
        }
        for i, anns in HAND_GT.items()
    ]
    DatasetCatalog.register(HAND, lambda: dicts)
    MetadataCatalog.get(HAND).set(thing_classes=list(classes), evaluator_type="coco")
    try:
        yield HAND
    finally:
        DatasetCatalog.remove(HAND)
        MetadataCatalog.remove(HAND)


def hand_results():
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in HAND_DETS]


def phantom_results(dataset, seed=0, masks=False):
    """
    COCO results on a registered dataset: 4 of 5 lesions found (jittered), a third of them
    found twice, 0-2 clutter boxes per image of random classes, every score random; with
    `masks`, each has the filled rectangle of its box as RLE `segmentation`.
    """
    gt = convert_to_coco_dict(dataset)
    rng = np.random.default_rng(seed)
    results = []
    for k, a in enumerate(gt["annotations"]):
        x, y, w, h = a["bbox"]
        if k % 5 != 4:
            box = [x + rng.normal(0, w * 0.1), y + rng.normal(0, h * 0.1), w, h]
            results.append(_result(a["image_id"], a["category_id"], box, rng))
        if k % 3 == 0:
            results.append(_result(a["image_id"], a["category_id"], [x + 1, y, w, h], rng))
    for im in gt["images"]:
        for _ in range(rng.integers(0, 3)):
            box = [float(v) for v in rng.uniform(0, im["width"] * 0.7, 2)] + [20.0, 20.0]
            results.append(_result(im["id"], int(rng.integers(0, 4)), box, rng))
    if masks:
        sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
        for r in results:
            r["segmentation"] = _rectangle(r["bbox"], *sizes[r["image_id"]])
    return results


def _rectangle(box, height, width):
    m = np.zeros((height, width), dtype=np.uint8, order="F")
    x, y, w, h = (int(round(v)) for v in box)
    m[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1
    rle = mask_util.encode(m)
    rle["counts"] = rle["counts"].decode()
    return rle


def _result(image_id, category_id, box, rng):
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(v) for v in box],
        "score": round(float(rng.uniform(0, 1)), 4),
    }
