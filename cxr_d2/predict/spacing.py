"""The physical size of a DICOM pixel, for box sizes in millimetres."""
import math

from ..data.dicom import is_dicom

__all__ = ["pixel_spacing"]

# PixelSpacing is the spacing in the patient; ImagerPixelSpacing (CR/DX files often carry only
# this) is the spacing at the detector, not corrected for the X-ray beam's magnification.
SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing")


def pixel_spacing(path):
    """
    The pixel spacing of a DICOM file's stored image grid.

    Returns:
        dict with "row_mm" (between rows: vertical), "col_mm" (between columns: horizontal)
        and "tag" (the element it came from), or None: not DICOM, or no usable spacing.
    """
    if not is_dicom(path):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # is_dicom read this header already; any failure means "no spacing"
        return None
    for tag in SPACING_TAGS:
        value = ds.get(tag, None)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (row, col)):
            return {"row_mm": row, "col_mm": col, "tag": tag}
    return None
