"""
VinDr-CXR: `vindr_cxr_{train,val,test}` and its variants (DICOM).

Layouts under `$CXR_DATASETS/vindr_cxr/` (either):

    Kaggle (VinBigData):  train.csv   image_id, class_name, class_id, rad_id,
                                      x_min, y_min, x_max, y_max   (14 classes)
                          train/<image_id>.dicom
    PhysioNet 1.0.0:      annotations/annotations_{train,test}.csv
                                      image_id, rad_id, x_min, y_min, x_max, y_max, class_name
                          train/<image_id>.dicom, test/<image_id>.dicom   (22 local labels)

Every abnormal training image was read by three radiologists (`rad_id`). Which boxes an image
gets is chosen by the dataset name (`box_mode` of the parse):

* `vindr_cxr_*` (`all`): every reader's box, each annotation carrying its `rad_id`;
* `vindr_cxr_wbf_*` (`wbf`): weighted box fusion of the readers' boxes per class (boxes of
  one class whose IoU with a cluster's fused box exceeds 0.5 join it; the fused box is the
  mean of its members), each fused annotation carrying `num_readers`;
* `vindr_cxr_r8_*`, `_r9_`, `_r10_` (`reader:R8`, ...): only that reader's boxes, on the
  images they read (the images they did not read are left out, and counted in the log).

Classes: the 14 of the Kaggle competition (present in both layouts); `vindr_cxr_physionet_*`
(and `vindr_cxr_physionet_wbf_*`) have PhysioNet's 22 local labels.

"No finding" rows (empty coordinates) make a normal film, kept in every split. An image
whose every finding (of the rows read) has an unusable box is left out and counted, never
kept as a normal film. An exact repeat of a row is reported and skipped (counted as a row).
"""

import csv
import logging
import os

import numpy as np

from ...errors import ConfigError, DatasetError
from ..checks import parse_number
from ..dicom import image_size
from ..paths import resolve_in_root
from ..phantom.dicom_writer import write_dicom
from ..phantom.plan import Finding, PhantomLayout, drawn
from .common import Source, Variant, box_annotation, category_index
from .csv_rows import read_csv_rows

__all__ = [
    "SOURCE",
    "VINDR_KAGGLE_CLASSES",
    "VINDR_PHYSIONET_CLASSES",
    "VINDR_VARIANTS",
    "PHANTOM_LAYOUT",
    "weighted_box_fusion",
    "parse_vindr_cxr",
]

logger = logging.getLogger(__name__)

VINDR_KAGGLE_CLASSES = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
]
VINDR_PHYSIONET_CLASSES = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
]
NO_FINDING = "No finding"
WBF_IOU = 0.5
VINDR_VARIANTS = (
    Variant("", {"box_mode": "all"}),
    Variant("wbf", {"box_mode": "wbf"}),
    *(Variant(f"r{k}", {"box_mode": f"reader:R{k}"}) for k in (8, 9, 10)),
    Variant("physionet", {"box_mode": "all"}, tuple(VINDR_PHYSIONET_CLASSES)),
    Variant("physionet_wbf", {"box_mode": "wbf"}, tuple(VINDR_PHYSIONET_CLASSES)),
)


def _physionet(root):
    return os.path.isfile(os.path.join(root, "annotations", "annotations_train.csv"))


def _iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def weighted_box_fusion(boxes, labels, weights=None, iou_thr=WBF_IOU):
    """
    Weighted box fusion of several readers' boxes (Solovyev et al. 2021), per label.

    Boxes are taken in descending weight (then input) order; a box joins the cluster of
    the same label whose current fused box it overlaps most, when that IoU > `iou_thr`,
    else it starts a cluster. A fused box is the weight-weighted mean of its members.

    Args:
        boxes (array (N, 4)): XYXY_ABS.
        labels (sequence[int]): (N,).
        weights (sequence[float] or None): (N,), default 1 each (readers without scores).

    Returns:
        list[tuple[list[float], int, int]]: (fused box, label, number of member boxes).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    weights = np.ones(len(boxes)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = sorted(range(len(boxes)), key=lambda i: -weights[i])
    clusters = []  # [label, members]
    fused = []
    for i in order:
        best, best_iou = None, iou_thr
        for c, (label, members) in enumerate(clusters):
            if label != labels[i]:
                continue
            iou = _iou(fused[c], boxes[i])
            if iou > best_iou:
                best, best_iou = c, iou
        if best is None:
            clusters.append((labels[i], [i]))
            fused.append(boxes[i].copy())
        else:
            clusters[best][1].append(i)
            m = clusters[best][1]
            fused[best] = (boxes[m] * weights[m, None]).sum(0) / weights[m].sum()
    return [(fused[c].tolist(), int(label), len(m)) for c, (label, m) in enumerate(clusters)]


def _parse_mode(mode):
    if mode in ("all", "wbf"):
        return mode, None
    if mode.startswith("reader:") and mode[len("reader:") :].strip():
        return "reader", {r.strip() for r in mode[len("reader:") :].split(",") if r.strip()}
    raise ConfigError(f"box_mode {mode!r}: must be 'all', 'wbf' or 'reader:<rad_id>[,...]'")


COLUMNS = ["image_id", "class_name", "rad_id", "x_min", "y_min", "x_max", "y_max"]


def _read_rows(path, folder, classes, log, official):
    """
    image_id -> {"rows": [(rad_id, category, box, where)], ...}: category None for "No
    finding", box None for a finding whose coordinates are unusable (reported).
    """
    images = {}
    for row_no, row in read_csv_rows(path, log, COLUMNS):
        where = f"{path}:{row_no}"
        if not row["image_id"]:
            log.report(where, "no image_id", "row")
            continue
        image = images.setdefault(
            row["image_id"],
            {
                "file_name": os.path.join(folder, row["image_id"] + ".dicom"),
                "rows": [],
                "where": where,
                "official_split": official,
            },
        )
        if row["class_name"] == NO_FINDING:
            image["rows"].append((row["rad_id"], None, None, where))
            continue
        category = category_index(log, where, row["class_name"], classes)
        if category is None:
            continue
        try:
            box = [parse_number(row[c], c) for c in ("x_min", "y_min", "x_max", "y_max")]
        except ValueError as e:
            log.report(where, str(e), "annotation")
            box = None
        image["rows"].append((row["rad_id"], category, box, where))
    return images


def parse_vindr_cxr(root, classes, log, box_mode="all"):
    """
    Every labelled image as a record; `box_mode` is "all", "wbf" or "reader:R8[,R9...]"
    (see the module doc). Class names of the file that are not in `classes` are reported
    and skipped.
    """
    mode, readers = _parse_mode(box_mode)
    if _physionet(root):
        parts = [
            (os.path.join(root, "annotations", f"annotations_{p}.csv"), os.path.join(root, p), o)
            for p, o in (("train", "trainval"), ("test", "test"))
        ]
    else:
        parts = [(os.path.join(root, "train.csv"), os.path.join(root, "train"), None)]
    records, left_out = [], 0
    for path, folder, official in parts:
        if not os.path.isfile(path):
            raise DatasetError(f"{path} does not exist; see datasets/README.md for the layout")
        for image_id, image in _read_rows(path, folder, classes, log, official).items():
            try:
                resolve_in_root(root, os.path.relpath(image["file_name"], root))
            except DatasetError as e:
                log.report(image["where"], str(e), "image")
                continue
            if not os.path.isfile(image["file_name"]):
                log.report(image["where"], f"image {image['file_name']} does not exist", "image")
                continue
            try:
                height, width = image_size(image["file_name"])
            except DatasetError as e:
                log.report(image["where"], str(e), "image")
                continue
            rows = image["rows"]
            if mode == "reader":
                rows = [r for r in rows if r[0] in readers]
                if not rows:
                    left_out += 1
                    continue
            anns = []
            for rad_id, category, box, where in rows:
                if category is None or box is None:
                    continue
                ann = box_annotation(log, where, box, category, width, height, rad_id=rad_id)
                if ann:
                    anns.append(ann)
            if not anns and any(category is not None for _, category, _, _ in rows):
                log.report(
                    image["where"],
                    f"image {image_id}: none of its findings has a usable box; left out, not "
                    "kept as a normal film",
                    "image",
                )
                continue
            if mode == "wbf" and anns:
                fused = weighted_box_fusion(
                    [a["bbox"] for a in anns], [a["category_id"] for a in anns]
                )
                base = {k: v for k, v in anns[0].items() if k != "rad_id"}
                anns = [dict(base, bbox=b, category_id=c, num_readers=n) for b, c, n in fused]
            records.append(
                {
                    "file_name": image["file_name"],
                    "height": height,
                    "width": width,
                    "patient_id": image_id,
                    "annotations": anns,
                    "official_split": official,
                }
            )
    if left_out:
        logger.info(f"vindr_cxr: {left_out} images not read by {sorted(readers)} left out")
    return records


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py): the Kaggle layout, three readers per image
# ------------------------------------------------------------------------------------------

PHANTOM_READERS = ("R8", "R9", "R10")


def _phantom_image(i, num_images, normal, rng):
    return f"{i:08x}{i:024x}", "train"


def _read_phantom_plan(path, plan, log):
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            it = plan.item(row["image_id"])
            if row["class_name"] != NO_FINDING:
                box = [row[c] for c in ("x_min", "y_min", "x_max", "y_max")]
                it.findings.append(
                    Finding(row["class_name"], plan.scaled(box), reader=row["rad_id"])
                )


def _write_phantom(root, items, size, seed, **_):
    """12-bit DICOM, every other one MONOCHROME1; a finding without reader: all three."""
    rng = np.random.default_rng(seed)
    with open(os.path.join(root, "train.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
        )
        for k, (item, image, _) in enumerate(drawn(items, size, seed, "vindr_cxr")):
            write_dicom(
                os.path.join(root, "train", item.name + ".dicom"),
                image,
                bits_stored=12,
                monochrome1=bool(k % 2),
                window=(2048, 4096),
                patient_id=item.name,
            )
            if not item.findings:
                for r in PHANTOM_READERS:
                    w.writerow([item.name, NO_FINDING, 14, r, "", "", "", ""])
            for fd in item.findings:
                readers = PHANTOM_READERS if fd.reader is None else (fd.reader,)
                for r in readers:  # drawn readers' boxes: the lesion's box, a little off
                    jitter = rng.uniform(-0.01, 0.01, 4) * size * (r != readers[0])
                    box = np.clip(np.asarray(fd.box) + jitter, 0, size)
                    class_id = VINDR_KAGGLE_CLASSES.index(fd.cls)
                    w.writerow([item.name, fd.cls, class_id, r, *(f"{v:.1f}" for v in box)])


PHANTOM_LAYOUT = PhantomLayout(
    1024, VINDR_KAGGLE_CLASSES, _phantom_image, _write_phantom, _read_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "vindr_cxr",
    parse_vindr_cxr,
    tuple(VINDR_KAGGLE_CLASSES),
    official_split=True,
    variants=VINDR_VARIANTS,
    phantom_layout=PHANTOM_LAYOUT,
)
