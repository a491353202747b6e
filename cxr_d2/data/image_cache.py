"""
A cache of decoded images: the pixels `read_image` gives (DICOM rescaled and windowed, in the
model's INPUT.FORMAT), stored once as a memory-mappable `.npy`, optionally shrunk so that the
longer side is at most MAX_SIZE. Decoding a 3000x3000 16-bit DICOM (or a JPEG 2000 one) costs
tens to hundreds of milliseconds every epoch; reading the cached array costs a file read.

The key of an entry is a hash of the file's bytes and of every setting that changes the
pixels (the format, MAX_SIZE, the decoder version), so a changed file, window or setting is a
new entry and never served stale. An entry is written to a temporary file and renamed, so a
crash never leaves a partial one. Old entries are not removed: delete the folder to reclaim it.

With MAX_SIZE the cached image is smaller than the record's `height` x `width`; the mapper
then scales the annotations by the same factors (Detectron2's ResizeTransform) and the models
rescale their predictions to `height` x `width` as always, so results stay in the original
image's pixels.
"""

import hashlib
import os
import tempfile

import cv2
import numpy as np

from ..errors import DatasetError
from .dicom import is_dicom, read_dicom, read_image
from .image_io import gray_to_format
from .paths import DATASETS_ROOT

__all__ = ["DECODER_VERSION", "ImageCache", "cached_size"]

#: Bumped whenever read_image's pixels change for the same file; part of every key.
DECODER_VERSION = 2  # 2: 12-bit JPEG through libjpeg-turbo (imagecodecs)
_CHUNK = 1 << 20


def cached_size(height, width, max_size):
    """(height, width) of an image of `height` x `width` after shrinking to `max_size`."""
    if not max_size or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class ImageCache:
    """
    Args:
        folder (str): where entries live (`<folder>/<2 hex>/<key>.npy`).
        max_size (int): shrink so the longer side is at most this (INTER_AREA); 0 = keep.
    """

    def __init__(self, folder, max_size=0):
        self.folder = folder
        self.max_size = int(max_size)
        self.hits = self.misses = 0

    @classmethod
    def from_config(cls, cfg):
        """The cache of `cfg.CXR.DATA.IMAGE_CACHE`, or None when it is off."""
        node = cfg.CXR.DATA.IMAGE_CACHE
        if not node.ENABLED:
            return None
        folder = node.DIR or os.path.join(DATASETS_ROOT, ".cache")
        return cls(folder, node.MAX_SIZE)

    def key(self, path, fmt):
        """The entry's name: a hash of the file's bytes and of the settings."""
        digest = hashlib.sha256()  # hardware-accelerated on current x86 and ARM
        digest.update(f"v{DECODER_VERSION}|{fmt}|{self.max_size}|".encode())
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    digest.update(chunk)
        except OSError as e:
            raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
        return digest.hexdigest()

    def _entry(self, key):
        return os.path.join(self.folder, key[:2], key + ".npy")

    def read(self, path, fmt):
        """
        `read_image(path, fmt)`, shrunk to `max_size`, from the cache or decoded and stored.

        Returns:
            ndarray uint8 (h, w, C).
        """
        entry = self._entry(self.key(path, fmt))
        try:
            stored = np.load(entry, allow_pickle=False)
            self.hits += 1
        except (OSError, ValueError):  # absent, or unreadable (then rewritten)
            self.misses += 1
            stored = self._decode(path, fmt)
            self._write(entry, stored)
        # DICOM is stored grayscale (H, W), a third of the bytes, and laid out as `fmt` here
        return gray_to_format(stored, fmt) if stored.ndim == 2 else stored

    def _decode(self, path, fmt):
        """read_image's pixels, (H, W) for DICOM, shrunk to max_size."""
        image = read_dicom(path) if is_dicom(path) else read_image(path, fmt)
        height, width = cached_size(*image.shape[:2], self.max_size)
        if (height, width) != image.shape[:2]:
            shrunk = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            image = shrunk.reshape((height, width) + image.shape[2:])
        return image

    def _write(self, entry, image):
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(entry), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(image))
            os.replace(tmp, entry)
        except OSError:  # a full disk costs the cache, never the run
            if os.path.exists(tmp):
                os.remove(tmp)
