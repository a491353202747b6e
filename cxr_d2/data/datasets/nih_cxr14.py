"""
NIH ChestX-ray14 boxes: `nih_cxr14_{train,val,test}` from `BBox_List_2017.csv`.

Layout under `$CXR_DATASETS/nih_cxr14/`::

    BBox_List_2017.csv            Image Index, Finding Label, Bbox [x,y,w,h] (+3 unnamed)
    images/00000001_000.png ...   or the official images_001/images/ ... images_012/images/
    train_val_list.txt, test_list.txt   (optional: the official patient-wise split)

The CSV's header row is quirky: `Bbox [x,y,w,h]` names four columns and is followed by three
empty names, so columns are read by position. Boxes are x, y, w, h in pixels. The label is
`Infiltrate` (the image-level list calls it `Infiltration`, accepted as an alias).
The patient id is the part of the file name before `_`.
"""

import csv
import os
import shutil

from ...errors import DatasetError
from ..checks import parse_number
from ..dicom import image_size
from ..phantom.plan import Finding, PhantomLayout, drawn, write_png
from .common import Source, box_annotation, category_index
from .csv_rows import read_csv_rows

__all__ = [
    "SOURCE",
    "NIH_CLASSES",
    "PHANTOM_LAYOUT",
    "parse_nih_cxr14",
    "read_nih_csv",
    "find_nih_images",
]

NIH_CLASSES = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltrate",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
]
NIH_ALIASES = {"Infiltration": "Infiltrate"}
CSV_NAME = "BBox_List_2017.csv"


COLUMNS = ["Image Index", "Finding Label", "x", "y", "w", "h"]


def _header_columns(header):
    """By position: the header's `Bbox [x,y,w,h]` spans the four coordinate columns."""
    if len(header) < 3 or header[0].strip() != "Image Index" or "Finding Label" not in header[1]:
        return None
    return {c: i for i, c in enumerate(COLUMNS)}


def read_nih_csv(path, log):
    """
    Read the rows of a BBox_List_2017.csv.

    Returns:
        list[tuple[int, str, str, list[float]]]: (row number, image name, label, XYXY box)
        per usable row; a row of another length than 6 cells or with a missing or
        non-numeric coordinate is reported (see `csv_rows.read_csv_rows` for the file checks).
    """
    rows = []
    for row_no, row in read_csv_rows(path, log, COLUMNS, _header_columns, duplicates=False):
        try:
            x, y, w, h = (parse_number(row[c], c) for c in "xywh")
        except ValueError as e:
            log.report(f"{path}:{row_no}", str(e), "annotation")
            continue
        rows.append((row_no, row["Image Index"], row["Finding Label"], [x, y, x + w, y + h]))
    return rows


def find_nih_images(root):
    """Image name -> path, over `images/` and the official `images_NNN/images/` folders."""
    found = {}
    folders = [os.path.join(root, "images")]
    for entry in sorted(os.listdir(root)):
        if entry.startswith("images_"):
            folders += [os.path.join(root, entry, "images"), os.path.join(root, entry)]
    for folder in folders:
        if os.path.isdir(folder):
            for entry in os.scandir(folder):
                if entry.is_file():
                    found.setdefault(entry.name, entry.path)
    return found


def _official(root):
    lists = {}
    for name, split in (("train_val_list.txt", "trainval"), ("test_list.txt", "test")):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path) as f:
                lists.update({line.strip(): split for line in f if line.strip()})
    return lists


def parse_nih_cxr14(root, classes, log):
    """Every image of BBox_List_2017.csv as a record (see `common.py` for the fields)."""
    path = os.path.join(root, CSV_NAME)
    if not os.path.isfile(path):
        raise DatasetError(
            f"{path} does not exist; download BBox_List_2017.csv (datasets/README.md)"
        )
    images = find_nih_images(root)
    official = _official(root)
    records, seen_boxes, bad_images = {}, set(), set()
    for row_no, name, label, box in read_nih_csv(path, log):
        where = f"{path}:{row_no}"
        key = (name, label, tuple(round(v, 3) for v in box))
        if key in seen_boxes:
            log.report(where, f"{name}: the same box is listed twice", "annotation")
            continue
        seen_boxes.add(key)
        if name in bad_images:
            log.skip("annotation")  # the image's problem is reported at its first row
            continue
        if name not in records:
            if name not in images:
                bad_images.add(name)
                log.report(
                    where,
                    f"image {name} does not exist in {root}/images or "
                    "images_NNN/images (its rows are skipped)",
                    "annotation",
                )
                continue
            try:
                height, width = image_size(images[name])
            except DatasetError as e:
                bad_images.add(name)
                log.report(where, f"{e} (its rows are skipped)", "annotation")
                continue
            records[name] = {
                "file_name": images[name],
                "height": height,
                "width": width,
                "patient_id": name.split("_")[0],
                "annotations": [],
            }
            if official:
                records[name]["official_split"] = official.get(name)
        record = records[name]
        category = category_index(log, where, label, classes, NIH_ALIASES)
        ann = box_annotation(log, where, box, category, record["width"], record["height"])
        if ann:
            record["annotations"].append(ann)
    return list(records.values())


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py)
# ------------------------------------------------------------------------------------------


def _phantom_image(i, num_images, normal, rng):
    """Three images per patient: `00000001_000.png`, `00000001_001.png`, ..."""
    return f"{i // 3 + 1:08d}_{i % 3:03d}.png", "train"


def _read_phantom_plan(path, plan, log):
    for _, name, label, box in read_nih_csv(path, log):
        plan.item(name).findings.append(Finding(NIH_ALIASES.get(label, label), plan.scaled(box)))


def _write_phantom(root, items, size, seed, annotations_file=None, **_):
    with open(os.path.join(root, CSV_NAME), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Image Index", "Finding Label", "Bbox [x,y,w,h]", "", "", ""])
        for item in items:
            for fd in item.findings:
                x1, y1, x2, y2 = fd.box
                w.writerow([item.name, fd.cls, repr(x1), repr(y1), repr(x2 - x1), repr(y2 - y1)])
    for item, image, _ in drawn(items, size, seed, "nih_cxr14"):
        write_png(os.path.join(root, "images", item.name), image)
    if annotations_file and size == PHANTOM_LAYOUT.native_size:
        shutil.copyfile(annotations_file, os.path.join(root, CSV_NAME))


# The box list holds abnormal images only: no normal films.
PHANTOM_LAYOUT = PhantomLayout(
    1024, NIH_CLASSES, _phantom_image, _write_phantom, _read_phantom_plan, normals=False
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "nih_cxr14",
    parse_nih_cxr14,
    tuple(NIH_CLASSES),
    official_split=True,
    phantom_layout=PHANTOM_LAYOUT,
)
