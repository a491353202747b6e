"""Test inputs for the predict tests: films of every kind the reader takes, a seeded model."""
import os

import numpy as np
import torch
from detectron2.modeling import build_model
from PIL import Image

from tests.helpers import SHARED, base_config, cpu_config

__all__ = ["MODEL_CONFIG", "SHARED_DICOM", "model_config", "write_checkpoint", "write_dicom",
           "write_films"]

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
MODEL_CONFIG = cpu_config("mask_rcnn")  # classes from cxr_phantom: 4
SHARED_DICOM = os.path.join(SHARED, "data", "real", "dicom_cxr", "fo-dicom", "CR-MONO1-10-chest")


def model_config(weights=""):
    """The tiny Mask R-CNN (R-18 FPN, 256 px test size) of MODEL_CONFIG on the CPU."""
    return base_config(MODEL_CONFIG, **{"MODEL.ROI_HEADS.NUM_CLASSES": 4, "MODEL.WEIGHTS": weights})


def write_checkpoint(path, seed=0):
    """Seeded random weights of model_config() saved as a Detectron2 checkpoint at `path`."""
    torch.manual_seed(seed)
    model = build_model(model_config())
    torch.save({"model": model.state_dict()}, path)
    return path


def _blobs(rng, height, width):
    """A smooth (H, W) float image in [0, 1]: a few Gaussian blobs on a gradient."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 0.3 * x / width
    for _ in range(4):
        cy, cx, s = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, 20)
        img += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    return img / img.max()


def write_dicom(path, height, width, spacing=(0.2, 0.25), seed=0):
    """A 12-bit MONOCHROME2 CR DICOM with a window and PixelSpacing (row, col) mm, written with
    preamble and file meta (the file name need not say DICOM)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = (_blobs(np.random.default_rng(seed), height, width) * 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta, ds.preamble = meta, b"\0" * 128
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelSpacing = [str(s) for s in spacing]
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_films(folder):
    """
    In `folder`: films/chest.png (8-bit RGB), films/sub/chest16.png (16-bit gray),
    films/sub/study1 (DICOM, no extension), films/broken.png (a truncated PNG),
    films/notes.json (not an image). Returns {kind: path}.
    """
    rng = np.random.default_rng(0)
    films = os.path.join(folder, "films")
    os.makedirs(os.path.join(films, "sub"), exist_ok=True)
    paths = {
        "png": os.path.join(films, "chest.png"),
        "png16": os.path.join(films, "sub", "chest16.png"),
        "dicom": os.path.join(films, "sub", "study1"),
        "broken": os.path.join(films, "broken.png"),
        "other": os.path.join(films, "notes.json"),
    }
    rgb = (_blobs(rng, 100, 120)[:, :, None] * [255, 230, 200]).astype(np.uint8)
    Image.fromarray(rgb).save(paths["png"])
    Image.fromarray((_blobs(rng, 90, 110) * 65535).astype(np.uint16)).save(paths["png16"])
    write_dicom(paths["dicom"], 96, 80)
    with open(paths["broken"], "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with open(paths["other"], "w") as f:
        f.write("{}")
    return paths
