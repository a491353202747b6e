"""
Pixels of one image file as the model sees them: PNG/JPEG through Detectron2, DICOM through
pydicom with the modality rescale, the VOI LUT or window, MONOCHROME1 inverted, and more than
8 bits kept (as float64) until the final scaling to 8 bits.

Every failure is a :class:`~cxr_d2.errors.DatasetError` naming the file and the reason.
"""

import functools
import os

import numpy as np
from detectron2.data import detection_utils as d2_utils
from PIL import Image

from ..errors import DatasetError

__all__ = [
    "DICOM_EXTENSIONS",
    "is_dicom",
    "read_dicom",
    "dicom_to_unit",
    "window_to_unit",
    "gray_to_format",
    "read_image",
    "image_size",
]

DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")


def is_dicom(path):
    """Whether `path` names a DICOM file (by extension, as the datasets list them)."""
    return path.lower().endswith(DICOM_EXTENSIONS)


def _dcmread(path, **kwargs):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, **kwargs)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file does not exist") from None
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None


def window_to_unit(arr, center, width, function="LINEAR"):
    """
    DICOM VOI windowing (PS3.3 C.11.2.1.2) onto [0, 1].

    Args:
        arr (ndarray): modality values (after rescale), any shape.
        center, width (float): window centre and width (width >= 1 for LINEAR).
        function (str): VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID.

    Returns:
        ndarray float64 of arr's shape in [0, 1].
    """
    arr = np.asarray(arr, dtype=np.float64)
    function = (function or "LINEAR").strip().upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((arr - (center - width / 2.0)) / width, 0.0, 1.0)
    if width < 1:
        raise ValueError(f"window width {width} < 1")
    return np.clip((arr - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _first(value):
    """First value of a possibly multi-valued DICOM element, as float."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def dicom_to_unit(ds, arr, source="DICOM"):
    """
    Apply modality rescale, then VOI LUT (preferred) or window, then MONOCHROME1 inversion.

    Args:
        ds (pydicom.Dataset): the header.
        arr (ndarray): stored values (H, W), integers of any bit depth.
        source (str): the file, for error messages.

    Returns:
        ndarray float64 (H, W) in [0, 1], bright = dense. Without a VOI LUT or window, the
        image's own minimum and maximum span [0, 1].
    """
    from pydicom.pixels import apply_modality_lut, apply_voi

    values = apply_modality_lut(arr, ds).astype(np.float64)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        # apply_voi works on the modality values; its output spans [0, 2**bits - 1].
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi(values, ds).astype(np.float64) / float(2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowWidth not in (None, ""):
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            out = window_to_unit(values, center, width, ds.get("VOILUTFunction", "LINEAR"))
        except (ValueError, TypeError) as e:
            raise DatasetError(f"{source}: unusable VOI window ({e})") from None
    else:
        lo, hi = float(values.min()), float(values.max())
        out = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        out = 1.0 - out
    return np.clip(out, 0.0, 1.0)


def read_dicom(path):
    """
    Read a DICOM image as 8-bit grayscale.

    Multi-frame files give their first frame; colour (RGB/YBR) files their luminance.

    Returns:
        ndarray uint8 (H, W), bright = dense.

    Raises:
        DatasetError: naming `path` when pydicom cannot read or decode it.
    """
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise DatasetError(f"{path}: DICOM file has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises many types; all mean "cannot decode"
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise DatasetError(
            f"{path}: cannot decode pixel data (transfer syntax {name}): {type(e).__name__}: {e}"
        ) from None
    samples = int(ds.get("SamplesPerPixel", 1))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if samples > 1:  # colour: the decoders give RGB; take luminance
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        lo, hi = float(arr.min()), float(arr.max())
        unit = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    else:
        unit = dicom_to_unit(ds, arr, source=path)
    return np.round(unit * 255.0).astype(np.uint8)


def gray_to_format(gray, fmt):
    """
    Convert uint8 (H, W) grayscale to Detectron2's `INPUT.FORMAT` layout.

    Returns:
        ndarray uint8 (H, W, C): C = 1 for "L", 3 for "BGR"/"RGB"/"YUV-BT.601".
    """
    if fmt in (None, "L"):
        return gray[:, :, None]
    if fmt in ("BGR", "RGB"):
        return np.repeat(gray[:, :, None], 3, axis=2)
    return d2_utils.convert_PIL_to_numpy(Image.fromarray(gray), fmt)


def read_image(path, fmt="BGR"):
    """
    Read any image file of a dataset (PNG, JPEG, DICOM) in Detectron2's `INPUT.FORMAT`.

    Returns:
        ndarray uint8 (H, W, C), as `detectron2.data.detection_utils.read_image` returns.

    Raises:
        DatasetError: naming the file: missing, truncated, not an image, undecodable.
    """
    if is_dicom(path):
        return gray_to_format(read_dicom(path), fmt)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit PNG: keep bits until here
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                unit = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
                return gray_to_format(np.round(unit * 255).astype(np.uint8), fmt)
            return d2_utils.convert_PIL_to_numpy(d2_utils._apply_exif_orientation(im), fmt)
    except (OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def image_size(path):
    """
    (height, width) from the file header, without decoding the pixels; cached per process
    by (path, modification time, file size), since every split of a source reads them.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file does not exist") from None
    return _image_size(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=None)
def _image_size(path, mtime_ns, size):
    if is_dicom(path):
        ds = _dcmread(path, stop_before_pixels=True)
        if "Rows" not in ds or "Columns" not in ds:
            raise DatasetError(f"{path}: DICOM header has no Rows/Columns")
        return int(ds.Rows), int(ds.Columns)
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise DatasetError(f"{path}: file does not exist") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
