"""
TBX11K: `tbx11k_{train,val,test}`.

Layout under `$CXR_DATASETS/tbx11k/`::

    annotations/json/TBX11K_train.json, TBX11K_val.json   COCO (XYWH boxes)
    annotations/xml/<stem>.xml                             Pascal VOC, one per TB image
    lists/TBX11K_train.txt, TBX11K_val.txt                 the images of each official split
    imgs/health/h*.png, imgs/sick/s*.png, imgs/tb/tb*.png, imgs/test/*.png   (512x512)

The COCO json files are read when present, else the VOC xml files of the images the lists
name. Images of a list that its json does not name (healthy and sick-but-non-TB films) are
kept as normal films. File names with or without their folder (`tb/tb0003.png` or
`tb0003.png`) are both found. The test images' labels are not public: `tbx11k_official_*`
uses TBX11K_train (cut 8:1 into train and val) and TBX11K_val as test.
"""

import json
import os
import xml.etree.ElementTree as ET

from ...errors import DatasetError
from ..checks import parse_number
from ..dicom import image_size
from ..phantom.plan import Finding, PhantomLayout, drawn, write_png
from .coco_json import iter_coco_annotations, read_coco_images
from .common import Source, box_annotation, category_index

__all__ = ["SOURCE", "TBX11K_CLASSES", "PHANTOM_LAYOUT", "parse_tbx11k", "tbx11k_image_path"]

TBX11K_CLASSES = ["ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis"]
PARTS = (("TBX11K_train", "trainval"), ("TBX11K_val", "test"))
_FOLDERS = (("tb", "tb"), ("h", "health"), ("s", "sick"))


def tbx11k_image_path(root, name):
    """`imgs/<folder>/<name>`: the folder from the name, or from its prefix (h, s, tb)."""
    name = name.strip().replace("\\", "/")
    if "/" in name:
        return os.path.join(root, "imgs", name)
    for prefix, folder in _FOLDERS:
        if name.startswith(prefix):
            return os.path.join(root, "imgs", folder, name)
    return os.path.join(root, "imgs", "test", name)


def _read_list(root, part):
    path = os.path.join(root, "lists", f"{part}.txt")
    if not os.path.isfile(path):
        return path, []
    with open(path) as f:
        return path, [(i, line.strip()) for i, line in enumerate(f, start=1) if line.strip()]


def _from_coco(path, root, classes, log):
    coco, by_id = read_coco_images(path, log, lambda name: tbx11k_image_path(root, name))
    for record, category, ann, where in iter_coco_annotations(coco, path, log, by_id, classes):
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            log.report(where, f"bbox {ann.get('bbox')!r} is not 4 numbers", "annotation")
            continue
        box = box_annotation(
            log, where, [x, y, x + w, y + h], category, record["width"], record["height"]
        )
        if box:
            record["annotations"].append(box)
    return {record["file_name"]: record for record in by_id.values()}


def _from_xml(root, name, classes, log):
    file_name = tbx11k_image_path(root, name)
    record = {
        "file_name": file_name,
        "height": None,
        "width": None,
        "annotations": [],
        "where": name,
    }
    stem = os.path.splitext(os.path.basename(file_name))[0]
    path = os.path.join(root, "annotations", "xml", stem + ".xml")
    if not os.path.isfile(path):
        return record  # no xml: a film without TB boxes
    try:
        tree = ET.parse(path).getroot()
    except ET.ParseError as e:
        log.report(path, f"not valid XML ({e}); the image is kept without its boxes", None)
        return record
    size = tree.find("size")
    if size is not None:
        record["width"] = int(float(size.findtext("width", "0"))) or None
        record["height"] = int(float(size.findtext("height", "0"))) or None
    for k, obj in enumerate(tree.findall("object")):
        where = f"{path} object {k}"
        category = category_index(log, where, (obj.findtext("name") or "").strip(), classes)
        bnd = obj.find("bndbox")
        try:
            box = [
                parse_number(bnd.findtext(c) if bnd is not None else None, c)
                for c in ("xmin", "ymin", "xmax", "ymax")
            ]
        except ValueError as e:
            log.report(where, str(e), "annotation")
            continue
        ann = box_annotation(log, where, box, category, record["width"], record["height"])
        if ann:
            record["annotations"].append(ann)
    return record


def parse_tbx11k(root, classes, log):
    """Every image of TBX11K_train and TBX11K_val as a record (see `common.py`)."""
    records = []
    for part, official in PARTS:
        json_path = os.path.join(root, "annotations", "json", f"{part}.json")
        list_path, listed = _read_list(root, part)
        if os.path.isfile(json_path):
            images = _from_coco(json_path, root, classes, log)
        elif listed:
            images = {}
            for line_no, name in listed:
                rec = _from_xml(root, name, classes, log)
                if rec["file_name"] in images:
                    log.report(f"{list_path}:{line_no}", f"image {name} listed twice", "image")
                    continue
                images[rec["file_name"]] = rec
        else:
            raise DatasetError(f"{json_path} and {list_path} do not exist; see datasets/README.md")
        for line_no, name in listed:  # normal films the json leaves out
            file_name = tbx11k_image_path(root, name)
            images.setdefault(
                file_name,
                {
                    "file_name": file_name,
                    "height": None,
                    "width": None,
                    "annotations": [],
                    "where": f"{list_path}:{line_no}",
                },
            )
        for rec in images.values():
            where = rec.pop("where")
            if not os.path.isfile(rec["file_name"]):
                log.report(where, f"image {rec['file_name']} does not exist", "image")
                continue
            if rec["height"] is None or rec["width"] is None:
                try:
                    rec["height"], rec["width"] = image_size(rec["file_name"])
                except DatasetError as e:
                    log.report(where, str(e), "image")
                    continue
            rec.update(patient_id=rec["file_name"], official_split=official)
            records.append(rec)
    return records


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py)
# ------------------------------------------------------------------------------------------


def _phantom_image(i, num_images, normal, rng):
    """TB films `tb0000.png` ...; normal films healthy (`h0000.png`) or sick (`s0000.png`)."""
    part = ("health" if rng.random() < 0.5 else "sick") if normal else "tb"
    prefix = {folder: prefix for prefix, folder in _FOLDERS}[part]
    return f"{prefix}{i:04d}.png", part


def _read_phantom_plan(path, plan, log):
    with open(path) as f:
        coco = json.load(f)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_id = {}
    for im in coco["images"]:
        name = os.path.basename(im["file_name"])
        part = next((folder for prefix, folder in _FOLDERS if name.startswith(prefix)), "sick")
        by_id[im["id"]] = plan.item(name, part)
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        by_id[ann["image_id"]].findings.append(
            Finding(names[ann["category_id"]], plan.scaled([x, y, x + w, y + h]))
        )


def _write_phantom(root, items, size, seed, **_):
    """Every fifth image in TBX11K_val; healthy and sick films only in the lists."""
    parts = {part: [] for part, _ in PARTS}
    for k, item in enumerate(items):
        parts[PARTS[1][0] if k % 5 == 4 else PARTS[0][0]].append(item)
    for folder in ("json", "xml"):
        os.makedirs(os.path.join(root, "annotations", folder), exist_ok=True)
    os.makedirs(os.path.join(root, "lists"), exist_ok=True)
    for part, part_items in parts.items():
        coco, listed = _write_phantom_part(root, part, part_items, size, seed)
        with open(os.path.join(root, "annotations", "json", part + ".json"), "w") as f:
            json.dump(coco, f)
        with open(os.path.join(root, "lists", part + ".txt"), "w") as f:
            f.write("".join(line + "\n" for line in listed))


def _write_phantom_part(root, part, items, size, seed):
    """Images and VOC xml files of one part; returns its COCO dict and its list's lines."""
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(TBX11K_CLASSES)]
    coco, listed = {"images": [], "annotations": [], "categories": cats}, []
    for item, image, _ in drawn(items, size, seed, part):
        write_png(os.path.join(root, "imgs", item.part, item.name), image)
        listed.append(f"{item.part}/{item.name}")
        if item.part != "tb":
            continue
        image_id = len(coco["images"]) + 1
        coco["images"].append(
            {"id": image_id, "file_name": item.name, "width": size, "height": size}
        )
        objects = []
        for f in item.findings:
            x1, y1, x2, y2 = f.box
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": TBX11K_CLASSES.index(f.cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
            objects.append(
                f"<object><name>{f.cls}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            )
        stem = os.path.splitext(item.name)[0]
        with open(os.path.join(root, "annotations", "xml", stem + ".xml"), "w") as f:
            f.write(
                f"<annotation><filename>{item.name}</filename><size><width>{size}</width>"
                f"<height>{size}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
            )
    return coco, listed


PHANTOM_LAYOUT = PhantomLayout(
    512, TBX11K_CLASSES, _phantom_image, _write_phantom, _read_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "tbx11k",
    parse_tbx11k,
    tuple(TBX11K_CLASSES),
    official_split=True,
    phantom_layout=PHANTOM_LAYOUT,
)
