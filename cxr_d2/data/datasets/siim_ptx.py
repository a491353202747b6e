"""
SIIM-ACR Pneumothorax Segmentation: `siim_ptx_{train,val,test}` (DICOM, instance masks).

Layout under `$CXR_DATASETS/siim_ptx/`::

    train-rle.csv                 ImageId, EncodedPixels (the header has " EncodedPixels")
    dicom-images-train/<study>/<series>/<ImageId>.dcm

EncodedPixels are run-length pairs over the pixels in column-major order with each start
relative to the end of the previous run; "-1" means no pneumothorax (a normal film, kept).
Several rows of one image are several instances, never one overwriting another; each box is
the tight box around its mask. Images in the folder without a row are not labelled and are
left out (counted in the log). EncodedPixels are checked before decoding (non-negative
integers in pairs, every run inside the image); a bad one is reported and its instance
skipped, as is an exact repeat of a row.
"""

import csv
import logging
import os

import cv2
from detectron2.structures import BoxMode

from ...errors import DatasetError
from ..dicom import DICOM_EXTENSIONS, image_size
from ..masks import decode_relative_rle, encode_relative_rle, mask_to_box, mask_to_rle
from ..phantom.dicom_writer import write_dicom
from ..phantom.plan import Finding, PhantomLayout, drawn
from .common import Source
from .csv_rows import read_csv_rows

__all__ = ["SOURCE", "SIIM_CLASSES", "PHANTOM_LAYOUT", "parse_siim_ptx", "find_dicoms"]

logger = logging.getLogger(__name__)

SIIM_CLASSES = ["Pneumothorax"]
CSV_NAME = "train-rle.csv"
IMAGES = "dicom-images-train"


def find_dicoms(folder):
    """DICOM file stem -> path, anywhere below `folder`."""
    found = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in DICOM_EXTENSIONS:
                found.setdefault(stem, os.path.join(dirpath, name))
    return found


COLUMNS = ["ImageId", "EncodedPixels"]  # compared stripped: the header has " EncodedPixels"


def _annotation(log, encoded, where, height, width):
    """The instance of one EncodedPixels, or None ("-1", or reported and skipped)."""
    try:
        mask = decode_relative_rle(encoded, height, width)
    except ValueError as e:
        log.report(where, f"EncodedPixels unusable: {e}", "annotation")
        return None
    if mask is None:
        return None  # "-1": no pneumothorax
    try:
        box = mask_to_box(mask, where)
    except DatasetError:
        log.report(where, "mask is empty (no foreground pixel)", "annotation")
        return None
    return {
        "bbox": box,
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": 0,
        "segmentation": mask_to_rle(mask),
        "iscrowd": 0,
    }


def parse_siim_ptx(root, classes, log):
    path = os.path.join(root, CSV_NAME)
    if not os.path.isfile(path):
        raise DatasetError(f"{path} does not exist; see datasets/README.md for the layout")
    dicoms = find_dicoms(os.path.join(root, IMAGES))
    images = {}
    for row_no, row in read_csv_rows(path, log, COLUMNS):
        where = f"{path}:{row_no}"
        if not row["ImageId"]:
            log.report(where, "no ImageId", "row")
            continue
        image = images.setdefault(row["ImageId"], {"rows": [], "where": where})
        image["rows"].append((row["EncodedPixels"], where))
    records = []
    for image_id, image in images.items():
        file_name = dicoms.get(image_id)
        if file_name is None:
            log.report(
                image["where"],
                f"image {image_id}.dcm does not exist under {os.path.join(root, IMAGES)}",
                "image",
            )
            continue
        try:
            height, width = image_size(file_name)
        except DatasetError as e:
            log.report(image["where"], str(e), "image")
            continue
        anns = [_annotation(log, encoded, where, height, width) for encoded, where in image["rows"]]
        if not any(anns) and any(encoded not in ("", "-1") for encoded, _ in image["rows"]):
            log.report(
                image["where"],
                f"image {image_id}: no usable mask of its pneumothorax; left out, not kept "
                "as a normal film",
                "image",
            )
            continue
        anns = [a for a in anns if a]
        records.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "patient_id": image_id,
                "annotations": anns,
            }
        )
    unlabelled = len(set(dicoms) - set(images))
    if unlabelled:
        logger.info(f"siim_ptx: {unlabelled} DICOM files without a row in {CSV_NAME} left out")
    return records


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py)
# ------------------------------------------------------------------------------------------


def _phantom_image(i, num_images, normal, rng):
    return f"1.2.276.0.7230010.3.1.4.8323329.{1000 + i}.1517875{i:06d}", "train"


def _read_phantom_plan(path, plan, log):
    """The masks resized to the phantom's side (nearest neighbour), boxes around them."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            it = plan.item(row[0].strip())
            mask = decode_relative_rle(row[1], plan.native, plan.native)
            if mask is None:
                continue
            small = cv2.resize(mask, (plan.size,) * 2, interpolation=cv2.INTER_NEAREST) > 0
            if small.any():
                it.findings.append(Finding(SIIM_CLASSES[0], mask_to_box(small), mask=small))


def _write_phantom(root, items, size, seed, **_):
    """One study and series folder per image, the SOP instance UID as file name."""
    with open(os.path.join(root, CSV_NAME), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["ImageId", " EncodedPixels"])
        for k, (item, image, masks) in enumerate(drawn(items, size, seed, "siim_ptx")):
            uid = "1.2.276.0.7230010.3.1"
            folder = os.path.join(root, IMAGES, f"{uid}.2.{k}", f"{uid}.3.{k}")
            path = os.path.join(folder, item.name + ".dcm")
            write_dicom(path, image, sop_uid=item.name, patient_id=f"P{k}")
            if not item.findings:
                w.writerow([item.name, " -1"])
            for m in masks:
                w.writerow([item.name, " " + encode_relative_rle(m)])


PHANTOM_LAYOUT = PhantomLayout(
    1024, SIIM_CLASSES, _phantom_image, _write_phantom, _read_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source("siim_ptx", parse_siim_ptx, tuple(SIIM_CLASSES), phantom_layout=PHANTOM_LAYOUT)
