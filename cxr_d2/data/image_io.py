"""
What kind of file an image is (by its first bytes, never by its name), the pixel limit every
reader checks from the header before decoding, and bounded PNG/JPEG reading through Pillow.

Every failure is a :class:`~cxr_d2.errors.DatasetError`: one line naming the file and what to
do about it.
"""

import contextlib
import os
import struct
import threading
import warnings
import zlib

import cv2
import numpy as np
from detectron2.data import detection_utils as d2_utils
from PIL import Image

from ..errors import DatasetError
from .policy import data_policy

__all__ = [
    "sniff",
    "check_pixels",
    "raster_size",
    "read_raster",
    "unit_to_uint8",
    "stretch_to_unit",
    "gray_to_format",
]

# Leading bytes of the raster formats Pillow reads; a file starting so is never taken for DICOM.
_RASTER_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)
_PIL_LOCK = threading.Lock()


def sniff(path):
    """
    The format of `path` from its first 132 bytes.

    Returns:
        str: "DICOM" (the `DICM` prefix at byte 128), a raster format ("PNG", "JPEG", ...), or
        None when neither is recognised (possibly a DICOM file without file meta).

    Raises:
        DatasetError: the path is missing, a directory, empty or unreadable.
    """
    if os.path.isdir(path):
        raise DatasetError(f"{path}: is a directory, not an image file")
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file does not exist") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({type(e).__name__}: {e.strerror})") from None
    if not head:
        raise DatasetError(f"{path}: file is empty (0 bytes); replace it with the image")
    if head[128:132] == b"DICM":
        return "DICOM"
    return next((name for magic, name in _RASTER_MAGIC if head.startswith(magic)), None)


def check_pixels(path, height, width, frames=1):
    """
    Refuse an image whose header states more than `data_policy().max_image_pixels` pixels
    (height x width x frames), or no pixel at all; called before any pixel is decoded.
    """
    if height < 1 or width < 1 or frames < 1:
        raise DatasetError(f"{path}: header states an empty image ({width}x{height} pixels)")
    limit = data_policy().max_image_pixels
    pixels = height * width * frames
    if pixels > limit:
        frames_text = f" x {frames} frames" if frames > 1 else ""
        raise DatasetError(
            f"{path}: header states {width}x{height}{frames_text} = {pixels} pixels, over the "
            f"limit of {limit}; if the image is genuine, raise CXR.DATA.MAX_IMAGE_PIXELS"
        )


def _unreadable(path, e):
    message = " ".join(str(e).split())
    return DatasetError(
        f"{path}: not a readable image ({type(e).__name__}: {message}); the file is truncated, "
        "corrupt or not an image: replace it"
    )


@contextlib.contextmanager
def _open_pil(path):
    """Pillow image of `path` (header read, nothing decoded), its size checked against the limit."""
    try:
        # Pillow's own global bomb limit is replaced by the configured one, checked below.
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except _DECODE_ERRORS + (Image.DecompressionBombError,) as e:
        raise _unreadable(path, e) from None
    with im:
        check_pixels(path, im.height, im.width)
        yield im


def raster_size(path):
    """(height, width) of a PNG/JPEG/... from its header; DatasetError if over the limit."""
    with _open_pil(path) as im:
        return im.height, im.width


def unit_to_uint8(unit):
    """[0, 1] float array -> uint8 array of the same shape (round to nearest)."""
    out = np.multiply(unit, 255.0, dtype=np.float32)
    np.rint(out, out=out)
    return out.astype(np.uint8)


def stretch_to_unit(arr, lo=None, hi=None):
    """Any numeric (H, W) array -> float32 in [0, 1], its own minimum and maximum (or `lo` and
    `hi`, as float32 values) at 0 and 1; `arr` is left as it is."""
    out = np.array(arr, dtype=np.float32)
    if lo is None:
        lo, hi = float(out.min()), float(out.max())
    if hi <= lo:
        return np.zeros_like(out)
    out -= lo
    out /= hi - lo
    return out


def read_raster(path, fmt):
    """
    Decode a PNG/JPEG (any format Pillow reads) in Detectron2's `INPUT.FORMAT`, its EXIF
    orientation applied; 16-bit grayscale is stretched from its own minimum and maximum.

    Returns:
        ndarray uint8 (H, W, C).
    """
    with _open_pil(path) as im:
        try:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                return gray_to_format(unit_to_uint8(stretch_to_unit(im)), fmt)
            return d2_utils.convert_PIL_to_numpy(d2_utils._apply_exif_orientation(im), fmt)
        except _DECODE_ERRORS as e:
            raise _unreadable(path, e) from None


def gray_to_format(gray, fmt):
    """
    Convert uint8 (H, W) grayscale to Detectron2's `INPUT.FORMAT` layout.

    Returns:
        ndarray uint8 (H, W, C): C = 1 for "L", 3 for "BGR"/"RGB"/"YUV-BT.601".
    """
    if fmt in (None, "L"):
        return gray[:, :, None]
    if fmt in ("BGR", "RGB"):  # the grey value in every channel (cv2: ~40x np.repeat)
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    return d2_utils.convert_PIL_to_numpy(Image.fromarray(gray), fmt)
