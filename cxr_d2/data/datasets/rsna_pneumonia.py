"""
RSNA Pneumonia Detection Challenge: `rsna_pneumonia_{train,val,test}` (DICOM).

Layout under `$CXR_DATASETS/rsna_pneumonia/`::

    stage_2_train_labels.csv      patientId, x, y, width, height, Target
    stage_2_train_images/<patientId>.dcm

Each row with Target 1 is one box (class `Lung Opacity`); several rows of one patient are
several boxes. A patient whose only row has Target 0 is a normal film, kept. Target must be 0
or 1 (a number equal to one, e.g. `1.0`, is read as it); any other value is reported and
its row skipped, never read as normal. A patient with Target 1 but no usable box is left out
(counted), not kept as a normal film. An exact repeat of a row is reported and skipped.
One image per patient, so the split is grouped by patientId. The challenge's test labels are not public:
there is no official split.
"""

import csv
import os

from ...errors import DatasetError
from ..checks import parse_number
from ..dicom import image_size
from ..paths import resolve_in_root
from ..phantom.dicom_writer import write_dicom
from ..phantom.plan import Finding, PhantomLayout, drawn
from .common import Source, box_annotation
from .csv_rows import read_csv_rows

__all__ = ["SOURCE", "RSNA_CLASSES", "PHANTOM_LAYOUT", "parse_rsna_pneumonia"]

RSNA_CLASSES = ["Lung Opacity"]
CSV_NAME = "stage_2_train_labels.csv"
IMAGES = "stage_2_train_images"


COLUMNS = ["patientId", "x", "y", "width", "height", "Target"]


def _target(value):
    """1 (a box), 0 (normal) or None: the published values, or numbers equal to them."""
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def _read_rows(path, log):
    """patientId -> {"boxes": [(XYXY box, where)], "bad": rows with Target 1 and no box}."""
    images = {}
    for row_no, row in read_csv_rows(path, log, COLUMNS):
        where = f"{path}:{row_no}"
        pid, target = row["patientId"], _target(row["Target"])
        if not pid or target is None:
            problem = "no patientId" if not pid else f"Target {row['Target']!r} is not 0 or 1"
            log.report(where, problem, "row")
            continue
        image = images.setdefault(pid, {"boxes": [], "bad": 0, "where": where})
        if target == 0:
            continue
        try:
            x, y, w, h = (parse_number(row[c], c) for c in ("x", "y", "width", "height"))
        except ValueError as e:
            log.report(where, str(e), "annotation")
            image["bad"] += 1
            continue
        image["boxes"].append(([x, y, x + w, y + h], where))
    return images


def parse_rsna_pneumonia(root, classes, log):
    path = os.path.join(root, CSV_NAME)
    if not os.path.isfile(path):
        raise DatasetError(f"{path} does not exist; see datasets/README.md for the layout")
    images = _read_rows(path, log)
    records = []
    for pid, image in images.items():
        try:
            file_name = resolve_in_root(root, os.path.join(IMAGES, pid + ".dcm"))
        except DatasetError as e:
            log.report(image["where"], str(e), "image")
            continue
        if not os.path.isfile(file_name):
            log.report(image["where"], f"image {file_name} does not exist", "image")
            continue
        try:
            height, width = image_size(file_name)
        except DatasetError as e:
            log.report(image["where"], str(e), "image")
            continue
        anns = [box_annotation(log, where, box, 0, width, height) for box, where in image["boxes"]]
        if (image["bad"] or image["boxes"]) and not any(anns):
            log.report(
                image["where"],
                f"patient {pid} has Target 1 but no usable box; left out, not kept as normal",
                "image",
            )
            continue
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


# ------------------------------------------------------------------------------------------
# Phantom layout (tools/make_phantom.py)
# ------------------------------------------------------------------------------------------


def _phantom_image(i, num_images, normal, rng):
    """A UUID-like patient id, one image per patient."""
    return f"{i:08x}-{i:04x}-4{i:03x}-8{i % 4096:03x}-{i:012x}", "train"


def _read_phantom_plan(path, plan, log):
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            it = plan.item(row["patientId"])
            if row["Target"].strip() == "1":
                x, y, w, h = (float(row[c]) for c in ("x", "y", "width", "height"))
                it.findings.append(Finding(RSNA_CLASSES[0], plan.scaled([x, y, x + w, y + h])))


def _write_phantom(root, items, size, seed, **_):
    with open(os.path.join(root, CSV_NAME), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["patientId", "x", "y", "width", "height", "Target"])
        for item, image, _ in drawn(items, size, seed, "rsna_pneumonia"):
            write_dicom(os.path.join(root, IMAGES, item.name + ".dcm"), image, patient_id=item.name)
            if not item.findings:
                w.writerow([item.name, "", "", "", "", 0])
            for fd in item.findings:
                x1, y1, x2, y2 = fd.box
                w.writerow([item.name, x1, y1, x2 - x1, y2 - y1, 1])


PHANTOM_LAYOUT = PhantomLayout(
    1024, RSNA_CLASSES, _phantom_image, _write_phantom, _read_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "rsna_pneumonia",
    parse_rsna_pneumonia,
    tuple(RSNA_CLASSES),
    phantom_layout=PHANTOM_LAYOUT,
)
