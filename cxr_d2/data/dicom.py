"""
Pixels of one image file as the model sees them: PNG/JPEG through Pillow, DICOM through pydicom
with the modality rescale, the VOI LUT or window, MONOCHROME1 inverted, and more than 8 bits
kept (as float32) until the final scaling to 8 bits.

A file is DICOM by its content, not its name: the `DICM` prefix, or (PACS exports, ACR-NEMA
files) a dataset pydicom parses with `force=True` that holds Rows and Columns. PNG/JPEG magic
bytes are checked first, so a raster image is never taken for DICOM.

Decoding is bounded: the pixel count the header states is checked against
`data_policy().max_image_pixels` (`CXR.DATA.MAX_IMAGE_PIXELS`) before any pixel is decoded
(a deflated DICOM is inflated only as far as its header allows). A multi-frame DICOM counts all
its frames against the limit and gives its first frame; RGB/YBR DICOM gives its luminance.

Every failure is a :class:`~cxr_d2.errors.DatasetError`: one line naming the file and the reason.
"""

import functools
import io
import math
import os
import zlib

import numpy as np

from ..errors import DatasetError
from . import dicom_imagecodecs
from .image_io import (
    check_pixels,
    gray_to_format,
    raster_size,
    read_raster,
    sniff,
    stretch_to_unit,
    unit_to_uint8,
)

__all__ = [
    "DICOM_EXTENSIONS",
    "is_dicom",
    "dicom_header",
    "read_dicom",
    "dicom_to_unit",
    "dicom_to_uint8",
    "window_to_unit",
    "gray_to_format",
    "read_image",
    "image_size",
]

# Names datasets usually give DICOM files; only a hint for error messages, never the test.
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")
# Inflated bytes a deflated DICOM may hold beyond its pixels (header, overlays, icons).
_HEADER_BYTES = 16 * 2**20
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)


def _read_error(path, e):
    return DatasetError(f"{path}: not a readable DICOM file ({type(e).__name__}: {_line(e)})")


def _line(e):
    return " ".join(str(e).split())


def _with_syntax(ds):
    """Give a dataset read without a Transfer Syntax UID the syntax it was parsed with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return ds
    implicit, little = ds.original_encoding
    ds.file_meta = meta if meta is not None else FileMetaDataset()
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = syntax if little or implicit else ExplicitVRBigEndian
    return ds


def _inflate(path, meta, limit):
    """
    The dataset of a deflated DICOM, inflated to at most `limit` bytes (PS3.5 A.5).

    Returns:
        (bytes, bool): the inflated bytes and whether the stream ended within `limit`.
    """
    offset = 132 + 12 + int(meta.get("FileMetaInformationGroupLength", -1))
    if offset < 144:
        raise DatasetError(f"{path}: deflated DICOM without File Meta Information Group Length")
    with open(path, "rb") as f:
        f.seek(offset)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        out, done = bytearray(), False
        while len(out) <= limit and not done:
            chunk = inflater.unconsumed_tail or f.read(2**20)
            if not chunk:
                break
            out += inflater.decompress(chunk, limit + 1 - len(out))
            done = inflater.eof
    if len(out) > limit:
        return bytes(out[:limit]), False
    return bytes(out), True


def _read_deflated(path, meta, pixels_bytes):
    """Dataset of a deflated DICOM: its header alone (`pixels_bytes` None) or with the pixels."""
    from pydicom.filereader import read_dataset
    from pydicom.uid import ExplicitVRLittleEndian

    limit = _HEADER_BYTES + (pixels_bytes or 0)
    data, ended = _inflate(path, meta, limit)
    if pixels_bytes is not None and not ended:
        raise DatasetError(
            f"{path}: deflated DICOM inflates to more than the {limit} bytes its header "
            "accounts for (a decompression bomb or a corrupt file); replace the file"
        )
    stop = None if pixels_bytes is not None else (lambda tag, vr, length: tag in _PIXEL_TAGS)
    ds = read_dataset(io.BytesIO(data), False, True, stop_when=stop)
    ds.file_meta = meta
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # now inflated
    return ds


def _dcmread(path, pixels_bytes=None):
    """
    The dataset of `path` with `file_meta.TransferSyntaxUID` set: the header only when
    `pixels_bytes` is None, else everything (`pixels_bytes`: what the header's pixels take).
    """
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    header_only = pixels_bytes is None
    fmt = sniff(path)
    if fmt not in (None, "DICOM"):
        raise DatasetError(f"{path}: is a {fmt} image, not a DICOM file")
    try:
        if fmt == "DICOM":
            meta = pydicom.filereader.read_file_meta_info(path)
            if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                return _read_deflated(path, meta, pixels_bytes)
            return _with_syntax(pydicom.dcmread(path, stop_before_pixels=header_only))
        return _with_syntax(pydicom.dcmread(path, stop_before_pixels=header_only, force=True))
    except DatasetError:
        raise
    except Exception as e:  # pydicom raises many types on malformed files; all mean "unreadable"
        raise _read_error(path, e) from None


def _int(ds, keyword, path, default=None):
    """Integer value of a header element, `default` when absent; DatasetError when not one."""
    value = ds.get(keyword, None)
    if value in (None, ""):
        if default is None:
            raise DatasetError(f"{path}: not a readable DICOM image (its header has no {keyword})")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: DICOM {keyword} {value!r} is not an integer") from None


def _number(ds, keyword, path, default, first=False):
    """
    Float value of a DS element: `default` when absent, the first of several when `first`
    (WindowCenter/Width may list several windows). DatasetError names the element otherwise.
    """
    value = ds.get(keyword, None)
    if value in (None, ""):
        return default
    if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        if not first or not len(value):
            raise DatasetError(f"{path}: DICOM {keyword} has {len(value)} values, expected one")
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise DatasetError(f"{path}: DICOM {keyword} {str(value)!r} is not a finite number")
    return number


def dicom_header(ds, path):
    """
    The image geometry of a DICOM header, checked: each bad value is a one-line DatasetError.

    Returns:
        dict: rows, columns, frames, samples, bits_allocated, photometric.
    """
    head = {
        "rows": _int(ds, "Rows", path),
        "columns": _int(ds, "Columns", path),
        "frames": _int(ds, "NumberOfFrames", path, 1),
        "samples": _int(ds, "SamplesPerPixel", path, 1),
        "bits_allocated": _int(ds, "BitsAllocated", path, 16),
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "").strip(),
    }
    bits_stored = _int(ds, "BitsStored", path, head["bits_allocated"])
    if head["bits_allocated"] not in (1, 8, 16, 32, 64):
        raise DatasetError(f"{path}: DICOM BitsAllocated {head['bits_allocated']} is not valid")
    if not 1 <= bits_stored <= head["bits_allocated"]:
        raise DatasetError(
            f"{path}: DICOM BitsStored {bits_stored} is not within 1..BitsAllocated "
            f"({head['bits_allocated']}); the header is corrupt"
        )
    allowed = _MONOCHROME if head["samples"] == 1 else _COLOUR if head["samples"] == 3 else ()
    if head["photometric"] not in allowed:
        raise DatasetError(
            f"{path}: DICOM PhotometricInterpretation {head['photometric']!r} with "
            f"SamplesPerPixel {head['samples']} is not supported (MONOCHROME1/2, or RGB/YBR "
            "with 3 samples); convert the file to grayscale"
        )
    check_pixels(path, head["rows"], head["columns"], head["frames"])
    return head


def window_to_unit(arr, center, width, function="LINEAR"):
    """
    DICOM VOI windowing (PS3.3 C.11.2.1.2) onto [0, 1].

    Args:
        arr (ndarray): modality values (after rescale), any shape.
        center, width (float): window centre and width (width >= 1 for LINEAR, > 0 otherwise).
        function (str): VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID.

    Returns:
        ndarray float32 of arr's shape in [0, 1].
    """
    out = np.array(arr, dtype=np.float32)
    function = (function or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise ValueError(f"VOILUTFunction {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if width < 1 if function == "LINEAR" else width <= 0:
        raise ValueError(f"WindowWidth {width} is too small for {function}")
    if function == "SIGMOID":
        out -= center
        out *= -4.0 / width
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)
    if function == "LINEAR_EXACT":
        out -= center - width / 2.0
        out /= width
    else:
        out -= center - 0.5
        out /= width - 1.0
        out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _modality_values(ds, arr, path):
    """Stored values -> modality values (PS3.3 C.11.1): LUT, or slope and intercept (float32)."""
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        try:
            return apply_modality_lut(arr, ds)
        except Exception as e:  # malformed LUT items raise many types
            raise DatasetError(f"{path}: unusable DICOM ModalityLUTSequence ({_line(e)})") from None
    slope = _number(ds, "RescaleSlope", path, 1.0)
    intercept = _number(ds, "RescaleIntercept", path, 0.0)
    if slope == 0:
        raise DatasetError(f"{path}: DICOM RescaleSlope is 0, which blanks the image")
    if slope == 1 and intercept == 0:
        return arr
    out = arr.astype(np.float32)
    out *= slope
    out += intercept
    return out


def _voi_lut_to_unit(ds, values, path):
    """The first VOI LUT (PS3.3 C.11.2.1.1) onto [0, 1]."""
    from pydicom.pixels import apply_voi

    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int32)
    try:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi(values, ds).astype(np.float32)
    except Exception as e:  # malformed LUT items raise many types
        raise DatasetError(f"{path}: unusable DICOM VOILUTSequence ({_line(e)})") from None
    out /= float(2**bits - 1)
    return out


def _present(ds, keyword):
    return ds.get(keyword, None) not in (None, "")


def _stretched(ds):
    """True when no VOI LUT or window is given: the image's own extremes span [0, 1]."""
    return not ds.get("VOILUTSequence") and not (
        _present(ds, "WindowCenter") and _present(ds, "WindowWidth")
    )


def dicom_to_unit(ds, arr, source="DICOM", stretch_range=None):
    """
    Apply modality rescale, then VOI LUT (preferred) or window, then MONOCHROME1 inversion.

    Args:
        ds (pydicom.Dataset): the header.
        arr (ndarray): stored values (H, W), integers of any bit depth.
        source (str): the file, for error messages.
        stretch_range: (min, max) float32 modality values that span [0, 1] without a VOI LUT
            or window; None: those of `arr` (a part of an image passes the whole image's).

    Returns:
        ndarray float32 (H, W) in [0, 1], bright = dense. Without a VOI LUT or window, the
        image's own minimum and maximum span [0, 1].
    """
    values = _modality_values(ds, arr, source)
    if ds.get("VOILUTSequence"):
        out = _voi_lut_to_unit(ds, values, source)
    elif _present(ds, "WindowCenter") and _present(ds, "WindowWidth"):
        center = _number(ds, "WindowCenter", source, None, first=True)
        width = _number(ds, "WindowWidth", source, None, first=True)
        try:
            out = window_to_unit(values, center, width, ds.get("VOILUTFunction", "LINEAR"))
        except ValueError as e:
            raise DatasetError(f"{source}: unusable DICOM VOI window ({e})") from None
    else:
        out = stretch_to_unit(values, *(stretch_range or ()))
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return np.clip(out, 0.0, 1.0, out=out)


# Largest span of stored values (max - min + 1) read through a lookup table.
_LUT_MAX_SPAN = 1 << 17


def _lut_range(ds, arr):
    """(first table entry, image min, image max) when the stored values can be read through a
    lookup table, else None: non-integer or wide values, a table as large as the image, or a
    min-max stretch after a modality LUT (not monotone, so its extremes need not be the
    image's extremes')."""
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 2:
        return None
    if _stretched(ds) and ds.get("ModalityLUTSequence"):
        return None
    lo, hi = int(arr.min()), int(arr.max())
    first = 0 if lo >= 0 and hi < _LUT_MAX_SPAN else lo  # index by the values themselves
    if hi - first + 1 > min(_LUT_MAX_SPAN, arr.size):
        return None
    return first, lo, hi


def dicom_to_uint8(ds, arr, source="DICOM"):
    """
    `unit_to_uint8(dicom_to_unit(ds, arr))`, byte for byte, through a lookup table where the
    stored values are integers of a bounded span. Every step (rescale, VOI LUT or window,
    inversion, rounding) maps each stored value on its own; the one global step, the min-max
    stretch without VOI, sees the image's own extremes because the table's inputs are clipped
    to them (a rescale is monotone). So the table is the same pipeline run once per value.

    Args:
        arr (ndarray): stored values (H, W).

    Returns:
        ndarray uint8 (H, W).
    """
    found = _lut_range(ds, arr)
    if found is None:
        return _float_path_uint8(ds, arr, source)
    first, lo, hi = found
    inputs = np.clip(np.arange(first, hi + 1, dtype=np.int64), lo, hi).astype(arr.dtype)
    table = unit_to_uint8(dicom_to_unit(ds, inputs[None, :], source))[0]
    return table.take(arr if first == 0 else np.subtract(arr, first, dtype=np.int32))


# Pixels converted at once on the float path: its float32 temporaries stay a few MB whatever
# the image's size (the whole image at once needed about 12 bytes per pixel).
_FLOAT_BLOCK_PIXELS = 1 << 20


def _float_path_uint8(ds, arr, source):
    """
    `unit_to_uint8(dicom_to_unit(ds, arr))`, byte for byte, a block of rows at a time: every
    step maps each pixel on its own once the min-max stretch has the whole image's extremes,
    taken first, block by block, from the modality values.

    Returns:
        ndarray uint8 (H, W).
    """
    rows = max(1, _FLOAT_BLOCK_PIXELS // max(1, arr.shape[1]))
    blocks = [slice(r, r + rows) for r in range(0, arr.shape[0], rows)]
    stretch_range = None
    if _stretched(ds) and len(blocks) > 1:
        lows, highs = [], []
        for b in blocks:
            values = np.asarray(_modality_values(ds, arr[b], source), dtype=np.float32)
            lows.append(values.min())
            highs.append(values.max())
        stretch_range = (float(np.min(lows)), float(np.max(highs)))
    out = np.empty(arr.shape, np.uint8)
    for b in blocks:
        out[b] = unit_to_uint8(dicom_to_unit(ds, arr[b], source, stretch_range=stretch_range))
    return out


def _pixel_bytes(head):
    """Bytes the uncompressed pixels of a checked header take (all frames)."""
    count = head["rows"] * head["columns"] * head["frames"] * head["samples"]
    return (count * head["bits_allocated"] + 7) // 8


# The decoder tried first per transfer syntax, before pydicom's own order. JPEG decoders round
# the inverse DCT differently (libjpeg and Pillow's libjpeg-turbo differ by up to 2 grey levels
# on the real SIIM film): Pillow, so installing the optional decoders changes no pixel of a
# file that decoded without them; 12-bit JPEG, which Pillow cannot read, through the same
# libjpeg-turbo in imagecodecs (:mod:`.dicom_imagecodecs`), 3.7x pylibjpeg. JPEG 2000: OpenJPEG
# in imagecodecs on torch's threads (1.9x Pillow's OpenJPEG on 2 cores, the same values), then
# Pillow. JPEG-LS: pyjpegls (CharLS), 3x pylibjpeg's libjpeg, the same pixels. Times on a
# 2500x2048 12-bit film: tools/benchmark_dicom.py.
_PREFERRED_DECODER = {
    "1.2.840.10008.1.2.4.50": ("pillow",),  # JPEG baseline
    "1.2.840.10008.1.2.4.51": (dicom_imagecodecs.LABEL,),  # JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.90": (dicom_imagecodecs.LABEL, "pillow"),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": (dicom_imagecodecs.LABEL, "pillow"),  # JPEG 2000
    "1.2.840.10008.1.2.4.80": ("pyjpegls",),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls",),  # JPEG-LS near-lossless
}


def _decode_first(ds, pixel_array):
    dicom_imagecodecs.register()
    for plugin in _PREFERRED_DECODER.get(ds.file_meta.TransferSyntaxUID, ()):
        if plugin == dicom_imagecodecs.LABEL and not dicom_imagecodecs.handles(ds):
            continue
        try:
            return pixel_array(ds, index=0, decoding_plugin=plugin)
        except Exception:  # not installed, or it cannot: the next, then pydicom's own order
            pass
    return pixel_array(ds, index=0)


def _first_frame(ds, head, path):
    """Stored values of the first frame: (H, W), or (H, W, 3) RGB for colour."""
    from pydicom.pixels import pixel_array

    if "PixelData" not in ds:
        raise DatasetError(f"{path}: DICOM file has no pixel data")
    if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < _pixel_bytes(head):
        raise DatasetError(
            f"{path}: cannot decode pixel data: {len(ds.PixelData)} bytes where the header "
            f"needs {_pixel_bytes(head)} ({head['columns']}x{head['rows']}, {head['frames']} "
            "frame(s)); the file is truncated, replace it"
        )
    try:
        return _decode_first(ds, pixel_array)
    except Exception as e:  # pydicom raises many types; all mean "cannot decode"
        syntax = ds.file_meta.TransferSyntaxUID
        hint = ""
        if syntax.is_compressed and "plugin" in str(e).lower():
            hint = ("; install the optional decoders (JPEG-LS, 12-bit JPEG, faster JPEG 2000): "
                    "pip install 'cxr-d2[dicom]'")
        raise DatasetError(
            f"{path}: cannot decode pixel data (transfer syntax {syntax.name}): "
            f"{type(e).__name__}: {_line(e)}{hint}"
        ) from None


def read_dicom(path):
    """
    Read a DICOM image (with or without file meta, any name) as 8-bit grayscale.

    Multi-frame files give their first frame; colour (RGB/YBR) files their luminance, stretched.

    Returns:
        ndarray uint8 (H, W), bright = dense.

    Raises:
        DatasetError: naming `path` when it is not a DICOM image, is over the pixel limit, or
        cannot be decoded.
    """
    head = dicom_header(_dcmread(path), path)
    ds = _dcmread(path, pixels_bytes=_pixel_bytes(head))
    arr = _first_frame(ds, dicom_header(ds, path), path)
    if head["samples"] == 3:  # pydicom gives RGB for every colour space
        luminance = arr[..., 0] * np.float32(0.299)
        luminance += arr[..., 1] * np.float32(0.587)
        luminance += arr[..., 2] * np.float32(0.114)
        return unit_to_uint8(stretch_to_unit(luminance))
    return dicom_to_uint8(ds, arr, source=path)


def _dicom_by_content(path, fmt):
    """Whether `path` (sniffed as `fmt`) holds a DICOM image."""
    if fmt is not None:
        return fmt == "DICOM"
    try:
        ds = _dcmread(path)
    except DatasetError:
        return False
    # force=True parses anything into some elements; an image needs at least these two.
    return "Rows" in ds and "Columns" in ds


def _read_as_dicom(path, fmt):
    """DICOM by content; a file of neither kind is read as DICOM (for its error) if so named."""
    return _dicom_by_content(path, fmt) or (fmt is None and path.lower().endswith(DICOM_EXTENSIONS))


def is_dicom(path):
    """Whether `path` holds a DICOM image, judged by its content (never by its name)."""
    try:
        return _dicom_by_content(path, sniff(path))
    except DatasetError:
        return False


def read_image(path, fmt="BGR"):
    """
    Read any image file of a dataset (PNG, JPEG, DICOM) in Detectron2's `INPUT.FORMAT`.

    Returns:
        ndarray uint8 (H, W, C), as `detectron2.data.detection_utils.read_image` returns.

    Raises:
        DatasetError: naming the file: missing, empty, truncated, not an image, over the pixel
        limit, undecodable.
    """
    if _read_as_dicom(path, sniff(path)):
        return gray_to_format(read_dicom(path), fmt)
    return read_raster(path, fmt)


def image_size(path):
    """
    (height, width) from the file header, without decoding the pixels; cached per process
    by (path, modification time, file size), since every split of a source reads them.
    The pixel limit in force is checked on every call.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file does not exist") from None
    height, width, frames = _image_size(path, st.st_mtime_ns, st.st_size)
    check_pixels(path, height, width, frames)
    return height, width


@functools.lru_cache(maxsize=None)
def _image_size(path, mtime_ns, size):
    if _read_as_dicom(path, sniff(path)):
        head = dicom_header(_dcmread(path), path)
        return head["rows"], head["columns"], head["frames"]
    return raster_size(path) + (1,)
