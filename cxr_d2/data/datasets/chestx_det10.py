"""
ChestX-Det10: `chestx_det10_{train,val,test}`.

Layout under `$CXR_DATASETS/chestx_det10/`::

    train.json, test.json         JSON list of {"file_name", "syms": [class...],
                                  "boxes": [[x1, y1, x2, y2]...]} (one box per sym)
    train_data/*.png, test_data/*.png

Images with an empty `syms` are normal films and are kept. The official split is
train.json / test.json (`chestx_det10_official_*`: val is cut from train.json).
"""

import json
import os

from ...errors import DatasetError
from ..dicom import image_size
from ..masks import mask_to_box
from ..phantom.plan import Finding, PhantomLayout, drawn, mask_polygon, write_png
from .common import Source, box_annotation, category_index

__all__ = [
    "SOURCE",
    "CHESTX_DET10_CLASSES",
    "PHANTOM_LAYOUT",
    "parse_chestx_det10",
    "parse_det_json_list",
    "det_phantom_image",
    "read_det_phantom_plan",
    "write_det_phantom",
]

CHESTX_DET10_CLASSES = [
    "Atelectasis",
    "Calcification",
    "Consolidation",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Fracture",
    "Mass",
    "Nodule",
    "Pneumothorax",
]
PARTS = (("train.json", "train_data", "trainval"), ("test.json", "test_data", "test"))


def _load_list(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of images, got {type(data).__name__}")
    return data


def parse_det_json_list(root, classes, log, parts, with_polygons=False):
    """
    Parse ChestX-Det10 / ChestX-Det JSON lists.

    Args:
        parts: (json name, image folder, official split) triples.
        with_polygons (bool): read `polygons` (one [[x, y], ...] per finding) into
            `segmentation` (ChestX-Det).
    """
    records, seen = [], {}
    for json_name, folder, official in parts:
        path = os.path.join(root, json_name)
        if not os.path.isfile(path):
            raise DatasetError(f"{path} does not exist; see datasets/README.md for the layout")
        for k, item in enumerate(_load_list(path)):
            name = item.get("file_name") if isinstance(item, dict) else None
            where = f"{path}[{k}]" + (f" ({name})" if name else "")
            if not name:
                log.report(where, "entry has no file_name", "image")
                continue
            file_name = os.path.join(root, folder, name)
            if file_name in seen:
                log.report(where, f"image listed twice (first at {seen[file_name]})", "image")
                continue
            seen[file_name] = where
            if not os.path.isfile(file_name):
                log.report(where, f"image {file_name} does not exist", "image")
                continue
            try:
                height, width = image_size(file_name)
            except DatasetError as e:
                log.report(where, str(e), "image")
                continue
            syms, boxes = item.get("syms") or [], item.get("boxes") or []
            polygons = item.get("polygons") or [] if with_polygons else []
            if len(syms) != len(boxes) or (with_polygons and len(polygons) != len(syms)):
                log.report(
                    where,
                    f"{len(syms)} syms but {len(boxes)} boxes"
                    + (f" and {len(polygons)} polygons" if with_polygons else "")
                    + "; the unpaired ones are skipped",
                    None,
                )
            anns = []
            for j, (sym, box) in enumerate(zip(syms, boxes)):
                at = f"{where} finding {j}"
                category = category_index(log, at, sym, classes)
                try:
                    box = [float(v) for v in box]
                except (TypeError, ValueError):
                    log.report(at, f"box {box!r} is not 4 numbers", "annotation")
                    continue
                extra = {}
                if with_polygons and j < len(polygons):
                    try:
                        poly = [float(v) for point in polygons[j] for v in point]
                    except (TypeError, ValueError):
                        poly = []
                    if len(poly) < 6 or len(poly) % 2:
                        log.report(
                            at, "polygon is not a list of at least 3 [x, y] points", "annotation"
                        )
                        continue
                    extra["segmentation"] = [poly]
                ann = box_annotation(log, at, box, category, width, height, **extra)
                if ann:
                    anns.append(ann)
            records.append(
                {
                    "file_name": file_name,
                    "height": height,
                    "width": width,
                    "patient_id": file_name,
                    "annotations": anns,
                    "official_split": official,
                }
            )
    return records


def parse_chestx_det10(root, classes, log):
    return parse_det_json_list(root, classes, log, PARTS)


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py), shared with ChestX-Det
# ------------------------------------------------------------------------------------------


def det_phantom_image(i, num_images, normal, rng):
    """`1.png`, `2.png`, ...; the last 20 % in the test part."""
    return f"{i + 1}.png", "test" if i >= int(0.8 * num_images) else "train"


def read_det_phantom_plan(path, plan, log):
    """A ChestX-Det10 / ChestX-Det JSON list; a file named test*.json gives the test part."""
    part = "test" if "test" in os.path.basename(path).lower() else "train"
    with open(path) as f:
        for entry in json.load(f):
            it = plan.item(entry["file_name"], part)
            for sym, box in zip(entry.get("syms", []), entry.get("boxes", [])):
                it.findings.append(Finding(sym, plan.scaled(box)))


def write_det_phantom(root, items, size, seed, parts, polygons=False):
    """
    Writes the JSON lists and images of `parts` ((json name, image folder, official split)
    of the train part, then of the test part); `polygons`: each finding's mask outline as
    ChestX-Det's `polygons`, and the box around it.
    """
    entries = {"train": [], "test": []}
    folders = {"train": parts[0][1], "test": parts[1][1]}
    for item, image, masks in drawn(items, size, seed, os.path.basename(root)):
        write_png(os.path.join(root, folders[item.part], item.name), image)
        entry = {
            "file_name": item.name,
            "syms": [f.cls for f in item.findings],
            "boxes": [[int(round(v)) for v in f.box] for f in item.findings],
        }
        if polygons:
            entry["polygons"] = [mask_polygon(m) for m in masks]
            entry["boxes"] = [[int(v) for v in mask_to_box(m)] for m in masks]
        entries[item.part].append(entry)
    for (json_name, _, _), part in zip(parts, ("train", "test")):
        with open(os.path.join(root, json_name), "w") as f:
            json.dump(entries[part], f)


def _write_phantom(root, items, size, seed, **_):
    write_det_phantom(root, items, size, seed, PARTS)


PHANTOM_LAYOUT = PhantomLayout(
    1024, CHESTX_DET10_CLASSES, det_phantom_image, _write_phantom, read_det_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "chestx_det10",
    parse_chestx_det10,
    tuple(CHESTX_DET10_CLASSES),
    official_split=True,
    phantom_layout=PHANTOM_LAYOUT,
)
