"""
UML/Perú tuberculosis instance masks: `uml_peru_{train,val,test}`.

Layout under `$CXR_DATASETS/uml_peru/`::

    images/<stem>.png (or .jpg, .dcm)
    annotations.json                 COCO instances, `segmentation` as polygons or RLE
    masks/<stem>/<class>_<k>.png     or: one binary PNG per instance (used when there is no
                                     annotations.json)

Only masks are annotated: each box is the tight box around its mask (XYXY_ABS, x2 = last
column + 1). An instance whose mask has several disconnected regions stays one instance. An
empty mask is reported (file and annotation) and skipped. The json's values are checked
before use (:mod:`.coco_json`), and a `file_name` leading outside the dataset folder is
refused unless `CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT` is set.

Classes: the paper's four, Airspace Consolidation, Cavitation, Lymphadenopathy, Pleural
Effusion, fixed before any file is read. An instance of another pathology is reported as an
unknown class and skipped; to keep more, register the source with your class list (a
:class:`~cxr_d2.data.datasets.common.Variant` with `classes`, see datasets/README.md).
"""

import json
import os
import re

import numpy as np
from detectron2.structures import BoxMode

from ...errors import DatasetError
from ..dicom import image_size
from ..masks import mask_to_box, mask_to_rle, read_mask_png, segmentation_to_mask
from ..paths import resolve_in_root
from ..phantom.plan import PhantomLayout, drawn, mask_polygon, write_png
from .coco_json import iter_coco_annotations, read_coco_images
from .common import Source, category_index, with_image_sizes

__all__ = ["SOURCE", "UML_PAPER_CLASSES", "PHANTOM_LAYOUT", "parse_uml_peru"]

UML_PAPER_CLASSES = ["Airspace Consolidation", "Cavitation", "Lymphadenopathy", "Pleural Effusion"]
_MASK_NAME = re.compile(r"^(?P<cls>.+)_(?P<k>\d+)\.png$", re.IGNORECASE)


def _mask_annotation(log, where, mask, segmentation, category):
    try:
        box = mask_to_box(mask, where)
    except DatasetError as e:
        log.report(where, str(e).split(": ", 1)[-1], "annotation")
        return None
    return {
        "bbox": box,
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category,
        "segmentation": segmentation,
        "iscrowd": 0,
    }


def _known_size(record, log):
    """Fill a record's missing size from its image header; False after reporting."""
    if record["height"] is not None and record["width"] is not None:
        return True
    try:
        record["height"], record["width"] = image_size(record["file_name"])
    except DatasetError as e:
        log.report(record["where"], str(e), "image")
        return False
    return True


def _from_coco(root, path, classes, log):
    coco, by_id = read_coco_images(
        path,
        log,
        lambda name: resolve_in_root(root, os.path.join("images", name)),
        extra=lambda im, file_name: {"patient_id": str(im.get("patient_id", file_name))},
    )
    usable = {k: r for k, r in by_id.items() if _known_size(r, log)}
    for record, category, ann, where in iter_coco_annotations(coco, path, log, usable, classes):
        segm = ann.get("segmentation")
        try:
            mask = segmentation_to_mask(segm, record["height"], record["width"])
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            log.report(where, f"unusable segmentation ({type(e).__name__}: {e})", "annotation")
            continue
        if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            segm = mask_to_rle(mask)  # uncompressed RLE -> compressed
        ann = _mask_annotation(log, where, mask, segm, category)
        if ann:
            record["annotations"].append(ann)
    return list(usable.values())


def _from_pngs(root, classes, log):
    images = os.path.join(root, "images")
    if not os.path.isdir(images):
        raise DatasetError(f"{images} does not exist; see datasets/README.md for the layout")
    records = []
    stems = set()
    for name in sorted(os.listdir(images)):
        stem = os.path.splitext(name)[0]
        stems.add(stem)
        file_name = os.path.join(images, name)
        record = {
            "file_name": file_name,
            "height": None,
            "width": None,
            "patient_id": file_name,
            "annotations": [],
            "where": file_name,
        }
        folder = os.path.join(root, "masks", stem)
        for mask_name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            where = os.path.join(folder, mask_name)
            match = _MASK_NAME.match(mask_name)
            if not match:
                log.report(where, "mask file name is not <class>_<k>.png", "annotation")
                continue
            category = category_index(log, where, match.group("cls"), classes)
            if category is None:
                continue
            try:
                mask = read_mask_png(where)
                if record["height"] is None:
                    record["height"], record["width"] = image_size(file_name)
            except DatasetError as e:
                log.report(where, str(e).split(": ", 1)[-1], "annotation")
                continue
            if mask.shape != (record["height"], record["width"]):
                log.report(
                    where,
                    f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                    f"{record['width']}x{record['height']}",
                    "annotation",
                )
                continue
            ann = _mask_annotation(log, where, mask, mask_to_rle(mask), category)
            if ann:
                record["annotations"].append(ann)
        records.append(record)
    masks = os.path.join(root, "masks")
    for stem in sorted(os.listdir(masks)) if os.path.isdir(masks) else []:
        if stem not in stems:
            log.report(
                os.path.join(masks, stem),
                f"masks for image {stem}, which is not in {images}",
                "image",
            )
    return records


def parse_uml_peru(root, classes, log):
    """Every image as a record with masks (COCO RLE or polygons) and mask-derived boxes."""
    path = os.path.join(root, "annotations.json")
    records = (
        _from_coco(root, path, classes, log)
        if os.path.isfile(path)
        else _from_pngs(root, classes, log)
    )
    return with_image_sizes(records, log)


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py)
# ------------------------------------------------------------------------------------------


def _phantom_image(i, num_images, normal, rng):
    return f"{i + 1}.png", "train"


def _write_phantom(root, items, size, seed, uml_masks="coco", **_):
    """`uml_masks`: "coco" (annotations.json, RLE and polygons alternating) or "png"."""
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(UML_PAPER_CLASSES)]
    coco = {"images": [], "annotations": [], "categories": cats}
    for k, (item, image, masks) in enumerate(drawn(items, size, seed, "uml_peru")):
        write_png(os.path.join(root, "images", item.name), image)
        coco["images"].append({"id": k + 1, "file_name": item.name, "width": size, "height": size})
        counters = {}
        for f, m in zip(item.findings, masks):
            if uml_masks == "png":
                counters[f.cls] = counters.get(f.cls, 0) + 1
                stem = os.path.splitext(item.name)[0]
                write_png(
                    os.path.join(root, "masks", stem, f"{f.cls}_{counters[f.cls]}.png"),
                    m.astype(np.uint8) * 255,
                )
                continue
            n = len(coco["annotations"]) + 1
            segm = mask_to_rle(m) if n % 2 else [[float(v) for p in mask_polygon(m) for v in p]]
            coco["annotations"].append(
                {
                    "id": n,
                    "image_id": k + 1,
                    "category_id": UML_PAPER_CLASSES.index(f.cls) + 1,
                    "segmentation": segm,
                    "area": int(m.sum()),
                    "iscrowd": 0,
                }
            )
    if uml_masks != "png":
        with open(os.path.join(root, "annotations.json"), "w") as f:
            json.dump(coco, f)


# Masks only, no annotation file to read a plan from.
PHANTOM_LAYOUT = PhantomLayout(512, UML_PAPER_CLASSES, _phantom_image, _write_phantom)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source("uml_peru", parse_uml_peru, tuple(UML_PAPER_CLASSES), phantom_layout=PHANTOM_LAYOUT)
