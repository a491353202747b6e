"""Thumbnails of dataset images as `data:` URIs, for a page that opens without a server."""

import base64
import io

import numpy as np
from PIL import Image

from ...data.dicom import read_image

__all__ = ["thumbnail_uri"]


def thumbnail_uri(path, size, quality=85):
    """
    The image at `path` (PNG, JPEG or DICOM, read as the dataset loader reads it) shrunk so
    that its longer side is at most `size` pixels, as a base64 JPEG `data:` URI (grayscale
    when the three channels are equal, as CXRs are).

    Raises:
        DatasetError: naming the file when it cannot be read.
    """
    rgb = read_image(path, "RGB")  # (H, W, 3) uint8
    gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    image = Image.fromarray(rgb[..., 0] if gray else rgb)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
