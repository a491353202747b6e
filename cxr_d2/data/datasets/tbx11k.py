"""
TBX11K: `tbx11k_{train,val,test}`.

Layout under `$CXR_DATASETS/tbx11k/`::

    annotations/json/TBX11K_train.json, TBX11K_val.json   COCO (XYWH boxes)
    annotations/xml/<stem>.xml                             Pascal VOC, one per TB image
    lists/TBX11K_train.txt, TBX11K_val.txt                 the images of each official split
    imgs/health/h*.png, imgs/sick/s*.png, imgs/tb/tb*.png, imgs/test/*.png   (512x512)

The COCO json files are read when present, else the VOC xml files of the images the lists
name. The xml states `<size>` and boxes in the original scan's pixels (e.g. 1756x2022), while
the released PNGs are 512x512. As in the official json conversion, each box is scaled by
(image size from the PNG header) / `<size>`, and 1 is subtracted from the scaled x1 and y1
(COCO `[x1 - 1, y1 - 1, x2 - x1, y2 - y1]`, i.e. every XYXY coordinate minus 1), so the boxes
equal the official json's (`xml_box_to_image`). An unusable xml or `<size>` skips its image,
an unusable `<object>` its box, each reported in one line.

Images of a list that its json does not name (healthy and sick-but-non-TB films) are kept as
normal films. File names with or without their folder (`tb/tb0003.png` or `tb0003.png`) are
both found; a name leading outside the dataset folder is refused (`resolve_in_root`). The
test images' labels are not public: `tbx11k_official_*` uses TBX11K_train (cut 8:1 into train
and val) and TBX11K_val as test.
"""

import json
import math
import os
import xml.etree.ElementTree as ET

from ...errors import DatasetError
from ..dicom import image_size
from ..paths import resolve_in_root
from ..phantom.plan import Finding, PhantomLayout, drawn, write_png
from .coco_json import ShapeError, expect_numbers, iter_coco_annotations, read_coco_images
from .common import Source, box_annotation, category_index, with_image_sizes

__all__ = [
    "SOURCE",
    "TBX11K_CLASSES",
    "PHANTOM_LAYOUT",
    "parse_tbx11k",
    "tbx11k_image_path",
    "xml_box_to_image",
]

TBX11K_CLASSES = ["ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis"]
PARTS = (("TBX11K_train", "trainval"), ("TBX11K_val", "test"))
_FOLDERS = (("tb", "tb"), ("h", "health"), ("s", "sick"))


def tbx11k_image_path(root, name):
    """
    `imgs/<folder>/<name>`: the folder from the name, or from its prefix (h, s, tb).
    Raises DatasetError when the name leads outside `root` (see `resolve_in_root`).
    """
    name = name.strip().replace("\\", "/")
    if "/" not in name:
        folder = next((f for prefix, f in _FOLDERS if name.startswith(prefix)), "test")
        name = f"{folder}/{name}"
    return resolve_in_root(root, os.path.join("imgs", name))


def _read_list(root, part):
    path = os.path.join(root, "lists", f"{part}.txt")
    if not os.path.isfile(path):
        return path, []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read as UTF-8 text ({e})") from None
    return path, [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


def _from_coco(path, root, classes, log):
    coco, by_id = read_coco_images(path, log, lambda name: tbx11k_image_path(root, name))
    for record, category, ann, where in iter_coco_annotations(coco, path, log, by_id, classes):
        try:
            x, y, w, h = expect_numbers(ann.get("bbox"), 4, "bbox")
        except ShapeError as e:
            log.report(where, str(e), "annotation")
            continue
        box = box_annotation(
            log, where, [x, y, x + w, y + h], category, record["width"], record["height"]
        )
        if box:
            record["annotations"].append(box)
    return {record["file_name"]: record for record in by_id.values()}


def _xml_number(element, tag, positive=False):
    """The number in `element`'s child `tag`, or ValueError naming the tag."""
    text = element.findtext(tag) if element is not None else None
    if text is None or not text.strip():
        raise ValueError(f"<{tag}> is missing")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"<{tag}> {text.strip()!r} is not a number") from None
    if not math.isfinite(number) or (positive and number <= 0):
        kind = "a positive finite" if positive else "a finite"
        raise ValueError(f"<{tag}> {text.strip()!r} is not {kind} number")
    return number


def xml_box_to_image(box, scan_size, image_size):
    """
    A VOC box of the original scan on the released image, as the official json conversion
    (`make_json_anno.py`) computes it: scale by image / scan size, then subtract 1 from x1
    and y1 (COCO `[x1 - 1, y1 - 1, x2 - x1, y2 - y1]`). As XYXY_ABS that is every coordinate
    minus 1, so the boxes equal the official json's.

    Args:
        box: xmin, ymin, xmax, ymax in scan pixels (VOC, 1-based).
        scan_size, image_size: (width, height) of the scan (`<size>`) and of the image.
    """
    sx, sy = image_size[0] / scan_size[0], image_size[1] / scan_size[1]
    x1, y1, x2, y2 = box
    return [x1 * sx - 1, y1 * sy - 1, x2 * sx - 1, y2 * sy - 1]


def _read_xml(path, log):
    """(root element, (scan width, scan height)) of a VOC xml, or None after reporting."""
    try:
        tree = ET.parse(path).getroot()
        scan = tuple(
            _xml_number(tree.find("size"), tag, positive=True) for tag in ("width", "height")
        )
    except ET.ParseError as e:
        log.report(path, f"not valid XML ({e}); fix or remove the file", "image")
        return None
    except ValueError as e:
        log.report(path, f"<size>: {e}; the boxes cannot be scaled to the image", "image")
        return None
    except OSError as e:
        log.report(path, f"cannot read ({e})", "image")
        return None
    return tree, scan


def _xml_annotations(tree, path, scan, record, classes, log):
    """The boxes of a VOC xml on its image (see `xml_box_to_image`)."""
    size = (record["width"], record["height"])
    for k, obj in enumerate(tree.findall("object")):
        where = f"{path} object {k}"
        category = category_index(log, where, (obj.findtext("name") or "").strip(), classes)
        bndbox = obj.find("bndbox")
        try:
            if bndbox is None:
                raise ValueError("<bndbox> is missing")
            box = [_xml_number(bndbox, c) for c in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as e:
            log.report(where, str(e), "annotation")
            continue
        box = xml_box_to_image(box, scan, size)
        ann = box_annotation(log, where, box, category, record["width"], record["height"])
        if ann:
            record["annotations"].append(ann)


def _from_xml(root, file_name, classes, log, where):
    """
    The record of one listed image: its VOC boxes when `annotations/xml/<stem>.xml` exists
    (the size read from the image's header), else a film without boxes. None when the image
    or its xml cannot be used (reported).
    """
    record = {"file_name": file_name, "height": None, "width": None, "annotations": []}
    stem = os.path.splitext(os.path.basename(file_name))[0]
    try:
        path = resolve_in_root(root, os.path.join("annotations", "xml", stem + ".xml"))
    except DatasetError as e:
        log.report(where, str(e), "image")
        return None
    if not os.path.isfile(path):
        return dict(record, where=where)  # no xml: a film without TB boxes
    try:
        record["height"], record["width"] = image_size(file_name)
    except DatasetError as e:
        log.report(where, str(e), "image")
        return None
    xml = _read_xml(path, log)
    if xml is None:
        return None
    tree, scan = xml
    _xml_annotations(tree, path, scan, record, classes, log)
    return dict(record, where=where)


def _listed_records(root, listed, list_path, images, from_xml, classes, log):
    """
    Add to `images` (file name -> record) the listed images it lacks: read from their VOC
    xml when there is no json (`from_xml`), else films without boxes.
    """
    seen = set()
    for line_no, name in listed:
        where = f"{list_path}:{line_no}"
        try:
            file_name = tbx11k_image_path(root, name)
        except DatasetError as e:
            log.report(where, str(e), "image")
            continue
        if file_name in seen:
            log.report(where, f"image {name} listed twice", "image")
            continue
        seen.add(file_name)
        if file_name in images:
            continue
        if from_xml:
            record = _from_xml(root, file_name, classes, log, where)
        else:
            record = {"file_name": file_name, "height": None, "width": None, "where": where}
            record.update(annotations=[])
        if record is not None:
            images[file_name] = record


def _finish(images, official, log):
    """The usable records: the image exists and its size is known."""
    records = with_image_sizes(images.values(), log)
    for rec in records:
        rec.update(patient_id=rec["file_name"], official_split=official)
    return records


def parse_tbx11k(root, classes, log):
    """Every image of TBX11K_train and TBX11K_val as a record (see `common.py`)."""
    records = []
    for part, official in PARTS:
        json_path = os.path.join(root, "annotations", "json", f"{part}.json")
        list_path, listed = _read_list(root, part)
        if os.path.isfile(json_path):
            images = _from_coco(json_path, root, classes, log)
        elif os.path.isfile(list_path):
            images = {}
        else:
            raise DatasetError(f"{json_path} and {list_path} do not exist; see datasets/README.md")
        from_xml = not os.path.isfile(json_path)
        _listed_records(root, listed, list_path, images, from_xml, classes, log)
        records += _finish(images, official, log)
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


# The phantom's VOC xml, like the real one, is in the pixels of a larger "scan": 4x wider
# and 2x taller than the image, 1-based (the inverse of `xml_box_to_image`).
_SCAN = (4, 2)


def _voc_object(cls, box):
    x1, y1, x2, y2 = box
    xmin, xmax = ((v + 1) * _SCAN[0] for v in (x1, x2))
    ymin, ymax = ((v + 1) * _SCAN[1] for v in (y1, y2))
    return (
        f"<object><name>{cls}</name><bndbox><xmin>{xmin!r}</xmin><ymin>{ymin!r}</ymin>"
        f"<xmax>{xmax!r}</xmax><ymax>{ymax!r}</ymax></bndbox></object>"
    )


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
            objects.append(_voc_object(f.cls, f.box))
        stem = os.path.splitext(item.name)[0]
        with open(os.path.join(root, "annotations", "xml", stem + ".xml"), "w") as f:
            f.write(
                f"<annotation><filename>{stem}</filename><size><width>{_SCAN[0] * size}</width>"
                f"<height>{_SCAN[1] * size}</height></size>{''.join(objects)}</annotation>"
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
