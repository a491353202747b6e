"""
Phantom datasets in the real on-disk layouts of the sources (`tools/make_phantom.py`).

A *plan* lists the images to write: each an :class:`Item` with its source file name, the
source's own part (train/test/...), and its findings (class, XYXY_ABS box, optional mask,
optional reader). A plan is drawn at random (:func:`random_plan`), or read from a real
annotation file (:func:`plan_from_annotations`), so lesions land at the real boxes. Each
image is a lesion-free phantom film (:func:`cxr_d2.data.phantom.draw_normal_phantom`) with one
lesion drawn inside each finding's box (or mask); the writer then writes the source's files:
annotation CSV/JSON/XML exactly as published, PNG or DICOM images.
"""

import csv
import json
import os
import shutil
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DatasetError
from .checks import ProblemLog
from .datasets.chestx_det import CHESTX_DET_CLASSES
from .datasets.chestx_det10 import CHESTX_DET10_CLASSES
from .datasets.nih_cxr14 import NIH_CLASSES, read_nih_csv
from .datasets.rsna_pneumonia import RSNA_CLASSES
from .datasets.siim_ptx import SIIM_CLASSES
from .datasets.tbx11k import TBX11K_CLASSES
from .datasets.uml_peru import UML_PAPER_CLASSES
from .datasets.vindr_cxr import VINDR_KAGGLE_CLASSES
from .masks import encode_relative_rle, mask_to_box, mask_to_rle
from .phantom import draw_normal_phantom

__all__ = [
    "LAYOUTS",
    "NATIVE_SIZE",
    "Finding",
    "Item",
    "random_plan",
    "plan_from_annotations",
    "draw_item",
    "write_dicom",
    "write_layout",
]

LAYOUTS = (
    "nih_cxr14",
    "chestx_det10",
    "tbx11k",
    "uml_peru",
    "vindr_cxr",
    "rsna_pneumonia",
    "siim_ptx",
    "chestx_det",
)
NATIVE_SIZE = {
    "nih_cxr14": 1024,
    "chestx_det10": 1024,
    "tbx11k": 512,
    "uml_peru": 512,
    "vindr_cxr": 1024,
    "rsna_pneumonia": 1024,
    "siim_ptx": 1024,
    "chestx_det": 1024,
}
CLASSES = {
    "nih_cxr14": NIH_CLASSES,
    "chestx_det10": CHESTX_DET10_CLASSES,
    "tbx11k": TBX11K_CLASSES,
    "uml_peru": UML_PAPER_CLASSES,
    "vindr_cxr": VINDR_KAGGLE_CLASSES,
    "rsna_pneumonia": RSNA_CLASSES,
    "siim_ptx": SIIM_CLASSES,
    "chestx_det": CHESTX_DET_CLASSES,
}
READERS = ("R8", "R9", "R10")
_LUCENT = ("pneumothorax", "emphysema", "cyst")
_RING = ("cavit",)
_SMALL = ("nodule", "mass", "calcification", "lymph")


@dataclass
class Finding:
    """One lesion: class name, XYXY_ABS box, optional bool (H, W) mask, optional reader."""

    cls: str
    box: list
    mask: np.ndarray = None
    reader: str = None


@dataclass
class Item:
    """One image: its source name (e.g. `00013118_008.png`), source part, findings."""

    name: str
    part: str
    findings: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Plans
# ------------------------------------------------------------------------------------------


def _random_box(rng, size):
    """A box inside the lung region of a phantom of side `size` (XYXY_ABS)."""
    w, h = size * rng.uniform(0.08, 0.22), size * rng.uniform(0.08, 0.22)
    cx = size * (rng.choice([0.32, 0.68]) + rng.uniform(-0.07, 0.07))
    cy = size * rng.uniform(0.35, 0.62)
    return [
        float(np.floor(cx - w / 2)),
        float(np.floor(cy - h / 2)),
        float(np.ceil(cx + w / 2)),
        float(np.ceil(cy + h / 2)),
    ]


def _name(layout, i, patient, part):
    if layout == "nih_cxr14":
        return f"{patient:08d}_{i % 3:03d}.png"
    if layout == "tbx11k":
        return {"tb": f"tb{i:04d}.png", "health": f"h{i:04d}.png", "sick": f"s{i:04d}.png"}[part]
    if layout in ("vindr_cxr",):
        return f"{i:08x}{patient:024x}"
    if layout == "rsna_pneumonia":
        return f"{patient:08x}-{i:04x}-4{i:03x}-8{patient % 4096:03x}-{i:012x}"
    if layout == "siim_ptx":
        return f"1.2.276.0.7230010.3.1.4.8323329.{1000 + i}.1517875{i:06d}"
    return f"{i + 1}.png"


def random_plan(layout, num_images, size, seed=0, normal_fraction=0.2):
    """
    A random plan: `num_images` images of 1 to 3 findings (or none, for about
    `normal_fraction` of them, where the source has normal films), spread over the source's
    parts, with patients of 1 to 3 images where the source has patient ids.
    """
    rng = np.random.default_rng(seed)
    classes, items, patient = CLASSES[layout], [], 0
    for i in range(num_images):
        if layout == "nih_cxr14" and i % 3 == 0:
            patient += 1
        elif layout != "nih_cxr14":
            patient = i
        has_normals = layout != "nih_cxr14"  # the NIH box list holds abnormal images only
        normal = has_normals and rng.random() < normal_fraction
        part = _random_part(layout, i, num_images, normal, rng)
        findings = []
        for _ in range(0 if normal else int(rng.integers(1, 4))):
            box = _random_box(rng, size)
            findings.append(Finding(str(rng.choice(classes)), box))
        items.append(Item(_name(layout, i, patient, part), part, findings))
    return items


def _random_part(layout, i, n, normal, rng):
    if layout == "tbx11k":
        return ("health" if rng.random() < 0.5 else "sick") if normal else "tb"
    if layout in ("chestx_det10", "chestx_det"):
        return "test" if i >= int(0.8 * n) else "train"
    return "train"


def plan_from_annotations(layout, path, size, native_size=None):
    """
    A plan from a real annotation file, its coordinates scaled from `native_size` (default:
    the source's published image size, :data:`NATIVE_SIZE`) to `size`. Read: nih_cxr14
    (BBox_List_2017.csv), chestx_det10 / chestx_det (their JSON
    lists; test*.json gives the test part), tbx11k (a TBX11K COCO json), vindr_cxr (Kaggle
    train.csv, every reader's row), rsna_pneumonia (stage_2_train_labels.csv), siim_ptx
    (train-rle.csv, masks resized to `size`).
    """
    native = native_size or NATIVE_SIZE[layout]
    scale = size / native
    log = ProblemLog(f"make_phantom --annotations {path}")
    items = {}

    def item(name, part="train"):
        return items.setdefault(name, Item(name, part))

    def scaled(box):
        return [float(v) * scale for v in box]

    if layout == "nih_cxr14":
        for _, name, label, box in read_nih_csv(path, log):
            cls = "Infiltrate" if label == "Infiltration" else label
            item(name).findings.append(Finding(cls, scaled(box)))
    elif layout in ("chestx_det10", "chestx_det"):
        part = "test" if "test" in os.path.basename(path).lower() else "train"
        with open(path) as f:
            for entry in json.load(f):
                it = item(entry["file_name"], part)
                for sym, box in zip(entry.get("syms", []), entry.get("boxes", [])):
                    it.findings.append(Finding(sym, scaled(box)))
    elif layout == "tbx11k":
        with open(path) as f:
            coco = json.load(f)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        by_id = {}
        for im in coco["images"]:
            name = os.path.basename(im["file_name"])
            part = "tb" if name.startswith("tb") else "health" if name.startswith("h") else "sick"
            by_id[im["id"]] = item(name, part)
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            by_id[ann["image_id"]].findings.append(
                Finding(names[ann["category_id"]], scaled([x, y, x + w, y + h]))
            )
    elif layout == "vindr_cxr":
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                it = item(row["image_id"])
                if row["class_name"] != "No finding":
                    box = [row[c] for c in ("x_min", "y_min", "x_max", "y_max")]
                    it.findings.append(
                        Finding(row["class_name"], scaled(box), reader=row["rad_id"])
                    )
    elif layout == "rsna_pneumonia":
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                it = item(row["patientId"])
                if row["Target"].strip() == "1":
                    x, y, w, h = (float(row[c]) for c in ("x", "y", "width", "height"))
                    it.findings.append(Finding("Lung Opacity", scaled([x, y, x + w, y + h])))
    elif layout == "siim_ptx":
        from .masks import decode_relative_rle

        with open(path, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for row in reader:
                it = item(row[0].strip())
                mask = decode_relative_rle(row[1], native, native)
                if mask is not None:
                    small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 0
                    if small.any():
                        it.findings.append(Finding("Pneumothorax", mask_to_box(small), mask=small))
    else:
        raise DatasetError(
            f"--annotations is not read for {layout}; leave it out to draw at random"
        )
    if log.problems:
        raise DatasetError(f"{path}: {len(log.problems)} unusable rows, first: {log.problems[0]}")
    return list(items.values())


# ------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------


def _blob_in_box(rng, box, size):
    """Bool (S, S) irregular blob inscribed in `box`, touching all four sides of it."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(max(x2, x1 + 2), size), min(max(y2, y1 + 2), size)
    w, h = x2 - x1, y2 - y1
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    rad = (
        1.0
        + 0.12 * np.cos(3 * t + rng.uniform(0, 6.28))
        + 0.08 * np.cos(5 * t + rng.uniform(0, 6.28))
    )
    px, py = np.cos(t) * rad, np.sin(t) * rad
    px = (px - px.min()) / (px.max() - px.min()) * (w - 1)
    py = (py - py.min()) / (py.max() - py.min()) * (h - 1)
    local = np.zeros((h, w), np.uint8)
    cv2.fillPoly(local, [np.round(np.stack([px, py], 1)).astype(np.int32)], 1)
    mask = np.zeros((size, size), bool)
    mask[y1:y2, x1:x2] = local.astype(bool)
    return mask


def _lesion_delta(rng, cls, mask):
    """Float (S, S) intensity change on `mask` (0..255 scale) by the class's appearance."""
    name = cls.lower()
    delta = np.zeros(mask.shape, np.float32)
    if any(k in name for k in _LUCENT):
        delta[mask] = -rng.uniform(35, 55)
    elif any(k in name for k in _RING):
        inner = cv2.erode(
            mask.astype(np.uint8),
            np.ones((3, 3), np.uint8),
            iterations=max(int(0.25 * np.sqrt(mask.sum())), 1),
        ).astype(bool)
        delta[mask] = rng.uniform(55, 75)
        delta[inner] = -rng.uniform(20, 30)
    else:
        gain = rng.uniform(55, 80) if any(k in name for k in _SMALL) else rng.uniform(40, 60)
        mottle = cv2.resize(rng.uniform(0.7, 1.0, (6, 6)).astype(np.float32), mask.shape[::-1])
        delta[mask] = gain * mottle[mask]
    return delta


def draw_item(item, size, seed):
    """
    Draw one image of a plan.

    Returns:
        tuple(ndarray uint8 (S, S), list[ndarray bool (S, S)]): the image and each finding's
        mask (its given mask, or the blob drawn inside its box). A finding whose box lies
        outside the image gets an empty mask (and no lesion).
    """
    rng = np.random.default_rng([seed, zlib.crc32(item.name.encode())])
    image = draw_normal_phantom(rng, size).astype(np.float32)
    masks, drawn = [], {}
    for f in item.findings:
        key = (tuple(round(v, 1) for v in f.box), f.cls)
        if f.mask is not None:
            mask = f.mask.astype(bool)
        elif key in drawn:  # another reader's identical box: the same lesion
            mask = drawn[key]
        else:
            x1, y1, x2, y2 = f.box
            inside = x2 > 0 and y2 > 0 and x1 < size and y1 < size and x2 > x1 and y2 > y1
            mask = _blob_in_box(rng, f.box, size) if inside else np.zeros((size, size), bool)
            if mask.any():
                image += _lesion_delta(rng, f.cls, mask)
            drawn[key] = mask
        masks.append(mask)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), masks


# ------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------


def write_dicom(
    path,
    image,
    bits_stored=8,
    monochrome1=False,
    window=None,
    rescale=None,
    patient_id="PHANTOM",
    sop_uid=None,
    transfer_syntax=None,
):
    """
    Write a uint8 (H, W) image as a single-frame DX DICOM file through pydicom.

    Args:
        bits_stored (int): 8 (stored in 8 bits), or 10-16 (stored in 16 bits; the image is
            spread over the full range 0 .. 2**bits_stored - 1).
        monochrome1 (bool): store inverted, PhotometricInterpretation MONOCHROME1.
        window (tuple or None): (center, width) written as the VOI window, in modality values.
        rescale (tuple or None): (slope, intercept) written; stored = (value - b) / m.
        transfer_syntax (UID or None): e.g. pydicom.uid.RLELossless to compress.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    maxval = 2**bits_stored - 1
    values = image.astype(np.float64) / 255.0 * maxval
    if monochrome1:
        values = maxval - values
    if rescale is not None:
        slope, intercept = rescale
        values = (values - intercept) / slope
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    stored = np.clip(np.round(values), 0, maxval).astype(dtype)
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality, ds.PatientID = "DX", patient_id
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 8 if dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.PixelData = stored.tobytes()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------------------------------
# Writers: one per layout
# ------------------------------------------------------------------------------------------


def _png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f"could not write {path}")


def _drawn(items, size, seed, desc):
    for item in tqdm(items, desc=desc, unit="img", leave=False):
        image, masks = draw_item(item, size, seed)
        yield item, image, masks


def _write_nih(root, items, size, seed):
    with open(os.path.join(root, "BBox_List_2017.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Image Index", "Finding Label", "Bbox [x,y,w,h]", "", "", ""])
        for item in items:
            for fd in item.findings:
                x1, y1, x2, y2 = fd.box
                w.writerow([item.name, fd.cls, repr(x1), repr(y1), repr(x2 - x1), repr(y2 - y1)])
    for item, image, _ in _drawn(items, size, seed, "nih_cxr14"):
        _png(os.path.join(root, "images", item.name), image)


def _polygon(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    biggest = max(contours, key=cv2.contourArea)
    return [[int(x), int(y)] for x, y in biggest[:, 0, :]]


def _write_det_list(root, items, size, seed, polygons):
    parts = {}
    folder = (
        {"train": "train", "test": "test"}
        if polygons
        else {"train": "train_data", "test": "test_data"}
    )
    for item, image, masks in _drawn(
        items, size, seed, "chestx_det" if polygons else "chestx_det10"
    ):
        _png(os.path.join(root, folder[item.part], item.name), image)
        entry = {
            "file_name": item.name,
            "syms": [f.cls for f in item.findings],
            "boxes": [[int(round(v)) for v in f.box] for f in item.findings],
        }
        if polygons:
            entry["polygons"] = [_polygon(m) for m in masks]
            entry["boxes"] = [[int(v) for v in mask_to_box(m)] for m in masks]
        parts.setdefault(item.part, []).append(entry)
    for part in ("train", "test"):
        name = f"ChestX_Det_{part}.json" if polygons else f"{part}.json"
        with open(os.path.join(root, name), "w") as f:
            json.dump(parts.get(part, []), f)


def _write_tbx11k(root, items, size, seed):
    parts = {"TBX11K_train": [], "TBX11K_val": []}
    for k, item in enumerate(items):
        parts["TBX11K_val" if k % 5 == 4 else "TBX11K_train"].append(item)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(TBX11K_CLASSES)]
    os.makedirs(os.path.join(root, "annotations", "json"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations", "xml"), exist_ok=True)
    os.makedirs(os.path.join(root, "lists"), exist_ok=True)
    for part, part_items in parts.items():
        coco = {"images": [], "annotations": [], "categories": cats}
        listed = []
        for item, image, _ in _drawn(part_items, size, seed, part):
            _png(os.path.join(root, "imgs", item.part, item.name), image)
            listed.append(f"{item.part}/{item.name}")
            if item.part != "tb":
                continue  # healthy and sick films: only in the list
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
        with open(os.path.join(root, "annotations", "json", part + ".json"), "w") as f:
            json.dump(coco, f)
        with open(os.path.join(root, "lists", part + ".txt"), "w") as f:
            f.write("".join(line + "\n" for line in listed))


def _write_uml(root, items, size, seed, mask_format="coco"):
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(UML_PAPER_CLASSES)]
    coco = {"images": [], "annotations": [], "categories": cats}
    for k, (item, image, masks) in enumerate(_drawn(items, size, seed, "uml_peru")):
        _png(os.path.join(root, "images", item.name), image)
        coco["images"].append({"id": k + 1, "file_name": item.name, "width": size, "height": size})
        counters = {}
        for f, m in zip(item.findings, masks):
            if mask_format == "png":
                counters[f.cls] = counters.get(f.cls, 0) + 1
                stem = os.path.splitext(item.name)[0]
                _png(
                    os.path.join(root, "masks", stem, f"{f.cls}_{counters[f.cls]}.png"),
                    m.astype(np.uint8) * 255,
                )
                continue
            n = len(coco["annotations"]) + 1
            segm = mask_to_rle(m) if n % 2 else [[float(v) for p in _polygon(m) for v in p]]
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
    if mask_format != "png":
        with open(os.path.join(root, "annotations.json"), "w") as f:
            json.dump(coco, f)


def _write_vindr(root, items, size, seed):
    rng = np.random.default_rng(seed)
    with open(os.path.join(root, "train.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
        )
        for k, (item, image, _) in enumerate(_drawn(items, size, seed, "vindr_cxr")):
            write_dicom(
                os.path.join(root, "train", item.name + ".dicom"),
                image,
                bits_stored=12,
                monochrome1=bool(k % 2),
                window=(2048, 4096),
                patient_id=item.name,
            )
            if not item.findings:
                for r in READERS:
                    w.writerow([item.name, "No finding", 14, r, "", "", "", ""])
            for fd in item.findings:
                readers = READERS if fd.reader is None else (fd.reader,)
                for r in readers:  # drawn readers' boxes: the lesion's box, a little off
                    jitter = rng.uniform(-0.01, 0.01, 4) * size * (r != readers[0])
                    box = np.clip(np.asarray(fd.box) + jitter, 0, size)
                    w.writerow(
                        [
                            item.name,
                            fd.cls,
                            VINDR_KAGGLE_CLASSES.index(fd.cls),
                            r,
                            *(f"{v:.1f}" for v in box),
                        ]
                    )


def _write_rsna(root, items, size, seed):
    with open(os.path.join(root, "stage_2_train_labels.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["patientId", "x", "y", "width", "height", "Target"])
        for item, image, _ in _drawn(items, size, seed, "rsna_pneumonia"):
            write_dicom(
                os.path.join(root, "stage_2_train_images", item.name + ".dcm"),
                image,
                patient_id=item.name,
            )
            if not item.findings:
                w.writerow([item.name, "", "", "", "", 0])
            for fd in item.findings:
                x1, y1, x2, y2 = fd.box
                w.writerow([item.name, x1, y1, x2 - x1, y2 - y1, 1])


def _write_siim(root, items, size, seed):
    with open(os.path.join(root, "train-rle.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["ImageId", " EncodedPixels"])
        for k, (item, image, masks) in enumerate(_drawn(items, size, seed, "siim_ptx")):
            folder = os.path.join(
                root,
                "dicom-images-train",
                f"1.2.276.0.7230010.3.1.2.{k}",
                f"1.2.276.0.7230010.3.1.3.{k}",
            )
            write_dicom(
                os.path.join(folder, item.name + ".dcm"),
                image,
                sop_uid=item.name,
                patient_id=f"P{k}",
            )
            if not item.findings:
                w.writerow([item.name, " -1"])
            for m in masks:
                w.writerow([item.name, " " + encode_relative_rle(m)])


def write_layout(layout, out, items, size, seed=0, uml_masks="coco", annotations_file=None):
    """
    Write the plan `items` under `out/<layout>/` in that source's layout.

    Args:
        annotations_file (str or None): the real file the plan came from; copied verbatim
            over the written one when `size` is the source's native size (NIH).

    Returns:
        str: the source folder written.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"--layout {layout}: unknown; choose one of {', '.join(LAYOUTS)}")
    root = os.path.join(out, layout)
    os.makedirs(root, exist_ok=True)
    if layout == "nih_cxr14":
        _write_nih(root, items, size, seed)
        if annotations_file and size == NATIVE_SIZE[layout]:
            shutil.copyfile(annotations_file, os.path.join(root, "BBox_List_2017.csv"))
    elif layout in ("chestx_det10", "chestx_det"):
        _write_det_list(root, items, size, seed, polygons=layout == "chestx_det")
    elif layout == "tbx11k":
        _write_tbx11k(root, items, size, seed)
    elif layout == "uml_peru":
        _write_uml(root, items, size, seed, uml_masks)
    elif layout == "vindr_cxr":
        _write_vindr(root, items, size, seed)
    elif layout == "rsna_pneumonia":
        _write_rsna(root, items, size, seed)
    elif layout == "siim_ptx":
        _write_siim(root, items, size, seed)
    return root
