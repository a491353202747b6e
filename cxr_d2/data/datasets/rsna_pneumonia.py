"""
RSNA Pneumonia Detection Challenge: `rsna_pneumonia_{train,val,test}` (DICOM).

Layout under `$CXR_DATASETS/rsna_pneumonia/`::

    stage_2_train_labels.csv      patientId, x, y, width, height, Target
    stage_2_train_images/<patientId>.dcm

Each row with Target 1 is one box (class `Lung Opacity`); several rows of one patient are
several boxes. A patient whose only row has Target 0 is a normal film, kept. One image per
patient, so the split is grouped by patientId. The challenge's test labels are not public:
there is no official split.
"""

import csv
import os

from ...errors import DatasetError
from ..checks import parse_number
from ..dicom import image_size
from .common import box_annotation

__all__ = ["RSNA_CLASSES", "parse_rsna_pneumonia"]

RSNA_CLASSES = ["Lung Opacity"]
CSV_NAME = "stage_2_train_labels.csv"
IMAGES = "stage_2_train_images"


def parse_rsna_pneumonia(root, classes, log):
    path = os.path.join(root, CSV_NAME)
    if not os.path.isfile(path):
        raise DatasetError(f"{path} does not exist; see datasets/README.md for the layout")
    images, seen = {}, set()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"patientId", "x", "y", "width", "height", "Target"} - set(
            reader.fieldnames or []
        )
        if missing:
            raise DatasetError(f"{path}:1: header lacks the columns {sorted(missing)}")
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}:{row_no}"
            pid = (row["patientId"] or "").strip()
            key = tuple(
                (row[c] or "").strip() for c in ("patientId", "x", "y", "width", "height", "Target")
            )
            if key in seen:
                log.report(where, f"patient {pid}: the same row is listed twice", "row")
                continue
            seen.add(key)
            image = images.setdefault(pid, {"boxes": [], "where": where})
            if (row["Target"] or "").strip() != "1":
                continue
            try:
                x, y, w, h = (parse_number(row[c], c) for c in ("x", "y", "width", "height"))
            except ValueError as e:
                log.report(where, str(e), "annotation")
                continue
            image["boxes"].append(([x, y, x + w, y + h], where))
    records = []
    for pid, image in images.items():
        file_name = os.path.join(root, IMAGES, pid + ".dcm")
        if not os.path.isfile(file_name):
            log.report(image["where"], f"image {file_name} does not exist", "image")
            continue
        try:
            height, width = image_size(file_name)
        except DatasetError as e:
            log.report(image["where"], str(e), "image")
            continue
        anns = [box_annotation(log, where, box, 0, width, height) for box, where in image["boxes"]]
        records.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "patient_id": pid,
                "annotations": [a for a in anns if a],
            }
        )
    return records
