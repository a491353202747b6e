"""
Longitudinal studies: one folder per patient, the patient's radiographs as the frames of one
sequence ordered by study date, and each lesion's identity as a column of the findings table,
for following a lesion through serial radiographs (TB treatment monitoring, nodule follow-up).

Layout::

    <root>/findings.csv        patient_id,study,lesion_id,class,x1,y1,x2,y2[,mask][,study_date]
    <root>/<patient_id>/<study files>   PNG, JPEG, 16-bit PNG or DICOM (any name, extension or none)
    <root>/<patient_id>/<mask files>    binary PNGs named in the `mask` column (not studies)

`study` is a file of the patient's folder; `x1..y2` a box in the study's pixels (XYXY_ABS,
x2 exclusive); `mask` (optional) a binary PNG of the lesion in that study, relative to the
patient's folder, from which the box is then derived; `study_date` (optional, YYYYMMDD).
A row with an empty `lesion_id` names a study without findings. Every image file of the
patient's folder is a frame, listed in the table or not.

Order: by DICOM StudyDate and StudyTime where the file has them, else by the table's
`study_date`. When some study of a patient has neither, that patient's studies are ordered by
file name and the undated ones are named in one line.

Each patient becomes one sequence dict as :mod:`.youtube_vis` makes (`video_id` = patient id,
`file_names`, `length`, `annotations` per frame with `id` = a dataset-wide track number and
`lesion_id` as written), plus `frame_sizes` [(height, width)] per frame; `height`/`width` are
the common size, or None when the studies differ in size.
"""

import csv
import os
from collections import defaultdict

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import DatasetError
from ..checks import ProblemLog, parse_number
from ..dicom import image_size, is_dicom
from ..masks import mask_to_box, mask_to_rle, read_mask_png
from ..paths import resolve_in_root
from .common import box_annotation, category_index
from .csv_rows import read_csv_rows

__all__ = ["FINDINGS_FILE", "order_studies", "load_longitudinal", "register_longitudinal"]

FINDINGS_FILE = "findings.csv"
_COLUMNS = ["patient_id", "study", "lesion_id", "class", "x1", "y1", "x2", "y2"]
_OPTIONAL = ["mask", "study_date"]


def _optional_columns(path):
    """The optional columns the table's header has (read_csv_rows reports a bad file)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    names = {h.strip() for h in header}
    return [c for c in _OPTIONAL if c in names]


def _dicom_date(path):
    """'YYYYMMDDHHMMSS...' from the file's StudyDate/StudyTime, or None."""
    if not is_dicom(path):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["StudyDate", "StudyTime"])
    except Exception:  # an unreadable header leaves the date to the table
        return None
    date = str(ds.get("StudyDate", "") or "").strip()
    return date + str(ds.get("StudyTime", "") or "").strip() if date else None


def order_studies(files, table_dates=None):
    """
    `files` in study order: by DICOM StudyDate + StudyTime, else `table_dates[file]`
    (YYYYMMDD); by file name when any file has neither.

    Returns:
        (ordered files, the names of the undated files).
    """
    dates = {f: _dicom_date(f) or (table_dates or {}).get(f) for f in files}
    undated = sorted(os.path.basename(f) for f, d in dates.items() if not d)
    if undated:
        return sorted(files), undated
    return sorted(files, key=lambda f: (dates[f], f)), []


def _ordered(patient, files, table_dates, log, where):
    ordered, undated = order_studies(files, table_dates)
    if undated and len(files) > 1:
        log.report(where, f"patient {patient}: no StudyDate or study_date for "
                   f"{', '.join(undated)}; the studies are ordered by file name")
    return ordered


def _finding(row, where, record_size, folder, classes, log):
    category = category_index(log, where, row["class"], classes)
    if category is None:
        return None
    height, width = record_size
    if row.get("mask"):
        try:
            mask = read_mask_png(resolve_in_root(folder, row["mask"]))
            if mask.shape != (height, width):
                raise DatasetError(f"mask {row['mask']} is {mask.shape[1]}x{mask.shape[0]}, "
                                   f"the study {width}x{height}")
            box = mask_to_box(mask, where)
        except DatasetError as e:
            log.report(where, str(e), "annotation")
            return None
        return box_annotation(log, where, box, category, width, height,
                              segmentation=mask_to_rle(mask))
    try:
        box = [parse_number(row[c], c) for c in ("x1", "y1", "x2", "y2")]
    except ValueError as e:
        log.report(where, str(e), "annotation")
        return None
    return box_annotation(log, where, box, category, width, height)


def _read_table(path, log):
    by_patient = defaultdict(list)
    for row_no, row in read_csv_rows(path, log, _COLUMNS + _optional_columns(path)):
        by_patient[row["patient_id"]].append((f"{path}:{row_no}", row))
    return by_patient


def _frames(root, patient, masks, log):
    """The patient's folder, its study files (every image but the `mask` files) and sizes."""
    folder = resolve_in_root(root, patient)
    if not os.path.isdir(folder):
        raise DatasetError(f"patient folder {folder} does not exist")
    files, sizes = [], {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or name in masks or not os.path.isfile(path):
            continue
        try:
            sizes[path] = image_size(path)
        except DatasetError as e:
            log.report(path, f"{e}; the study is skipped", "study")
            continue
        files.append(path)
    return folder, files, sizes


def _sequence(root, patient, rows, classes, track_ids, log):
    masks = {os.path.normpath(row["mask"]) for _, row in rows if row.get("mask")}
    folder, files, sizes = _frames(root, patient, masks, log)
    table_dates = {}
    for where, row in rows:
        if row.get("study_date"):
            table_dates[resolve_in_root(folder, row["study"])] = row["study_date"]
    order = _ordered(patient, files, table_dates, log, f"{root}/{FINDINGS_FILE}")
    index = {f: t for t, f in enumerate(order)}
    frames = [[] for _ in order]
    for where, row in rows:
        study = os.path.join(folder, row["study"])
        if study not in index:
            log.report(where, f"study {row['study']} is not a readable image of "
                       f"{folder}", "annotation")
            continue
        if not row["lesion_id"]:
            continue
        ann = _finding(row, where, sizes[study], folder, classes, log)
        if ann is not None:
            key = (patient, row["lesion_id"])
            ann.update(id=track_ids.setdefault(key, len(track_ids) + 1),
                       lesion_id=row["lesion_id"])
            frames[index[study]].append(ann)
    common = {sizes[f] for f in order}
    height, width = common.pop() if len(common) == 1 else (None, None)
    return {"video_id": patient, "file_names": order, "length": len(order), "height": height,
            "width": width, "frame_sizes": [sizes[f] for f in order], "annotations": frames}


def load_longitudinal(root, classes, dataset_name=None):
    """
    Every patient of `root` (module docstring) as one sequence, ordered by patient id.

    Args:
        classes (list[str]): the class names; a row of another class is reported and skipped.
    """
    log = ProblemLog(dataset_name or root)
    table = os.path.join(root, FINDINGS_FILE)
    by_patient = _read_table(table, log)
    track_ids, out = {}, []
    for patient in sorted(by_patient):
        try:
            record = _sequence(root, patient, by_patient[patient], classes, track_ids, log)
        except DatasetError as e:
            log.report(f"{table} patient {patient}", f"{e}; the patient is skipped", "patient")
            continue
        if record["length"]:
            out.append(record)
    log.summarize(len(out), sum(len(f) for r in out for f in r["annotations"]))
    return out


def register_longitudinal(name, root, classes):
    """Register the longitudinal studies under `root` as `name` (read when first used)."""
    DatasetCatalog.register(name, lambda: load_longitudinal(root, classes, name))
    MetadataCatalog.get(name).set(
        image_root=root, evaluator_type="youtube_vis", thing_classes=list(classes)
    )
