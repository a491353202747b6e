"""
ChestX-Det10: `chestx_det10_{train,val,test}`.

Layout under `$CXR_DATASETS/chestx_det10/`::

    train.json, test.json         JSON list of {"file_name", "syms": [class...],
                                  "boxes": [[x1, y1, x2, y2]...]} (one box per sym)
    train_data/*.png, test_data/*.png

Images with an empty `syms` are normal films and are kept. The official split is
train.json / test.json (`chestx_det10_official_*`: val is cut from train.json).

Every value is checked before use: an entry or finding of the wrong shape is one line naming
the file and its JSON path (`train.json: [3].file_name: expected a string, got 17`) and is
skipped and counted; a `file_name` leading outside the dataset folder (absolute, `../`, a
symlink elsewhere) is refused unless `CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT` is set.
"""

import json
import os

from ...errors import DatasetError
from ..dicom import image_size
from ..masks import mask_to_box
from ..paths import resolve_in_root
from ..phantom.plan import Finding, PhantomLayout, drawn, mask_polygon, write_png
from .coco_json import MISSING, ShapeError, expect, expect_numbers, read_json
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


def _polygon(points, at):
    """A COCO polygon [x1, y1, x2, y2, ...] from [[x, y], ...] (at least 3), or ShapeError."""
    expect(points, list, at)
    if len(points) < 3:
        raise ShapeError(f"{at}: expected at least 3 [x, y] points, got {len(points)}")
    return [v for i, p in enumerate(points) for v in expect_numbers(p, 2, f"{at}[{i}]")]


def _finding(item, j, at, where, size, classes, log, with_polygons):
    """The annotation of finding `j` of a list entry, or None after reporting it."""
    category = category_index(log, where, item["syms"][j], classes)
    try:
        box = expect_numbers(item["boxes"][j], 4, f"{at}.boxes[{j}]")
        extra = {}
        if with_polygons:
            extra["segmentation"] = [_polygon(item["polygons"][j], f"{at}.polygons[{j}]")]
    except ShapeError as e:
        log.report(where, str(e), "annotation")
        return None
    return box_annotation(log, where, box, category, size[1], size[0], **extra)


def _check_entry(item, at, with_polygons):
    """The entry's file name after checking the shape of its keys, or ShapeError."""
    expect(item, dict, at)
    name = expect(item.get("file_name", MISSING), str, f"{at}.file_name")
    for key in ("syms", "boxes") + (("polygons",) if with_polygons else ()):
        if item.get(key) is not None:
            expect(item[key], list, f"{at}.{key}")
    for j, sym in enumerate(item.get("syms") or []):
        expect(sym, str, f"{at}.syms[{j}]")
    return name


def _findings(item, at, where, size, classes, log, with_polygons):
    """The entry's annotations; unpaired syms/boxes/polygons are reported."""
    keys = ("syms", "boxes", "polygons") if with_polygons else ("syms", "boxes")
    entry = {key: item.get(key) or [] for key in keys}
    counts = [len(v) for v in entry.values()]
    if len(set(counts)) > 1:
        listed = " and ".join(f"{n} {key}" for key, n in zip(keys, counts))
        log.report(where, f"{listed}; the unpaired ones are skipped", "annotation")
        for _ in range(max(counts) - min(counts) - 1):
            log.skip("annotation")
    anns = []
    for j in range(min(counts)):
        at_j = f"{where} finding {j}"
        ann = _finding(entry, j, at, at_j, size, classes, log, with_polygons)
        if ann:
            anns.append(ann)
    return anns


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
        for k, item in enumerate(read_json(path, list)):
            try:
                name = _check_entry(item, f"[{k}]", with_polygons)
            except ShapeError as e:
                log.report(path, str(e), "image")
                continue
            where = f"{path}[{k}] ({name})"
            try:
                file_name = resolve_in_root(root, os.path.join(folder, name))
            except DatasetError as e:
                log.report(where, str(e), "image")
                continue
            if file_name in seen:
                log.report(where, f"image listed twice (first at {seen[file_name]})", "image")
                continue
            seen[file_name] = where
            if not os.path.isfile(file_name):
                log.report(where, f"image {file_name} does not exist", "image")
                continue
            try:
                size = image_size(file_name)
            except DatasetError as e:
                log.report(where, str(e), "image")
                continue
            anns = _findings(item, f"[{k}]", where, size, classes, log, with_polygons)
            records.append(
                {
                    "file_name": file_name,
                    "height": size[0],
                    "width": size[1],
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
