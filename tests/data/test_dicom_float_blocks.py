"""The float DICOM path (values a lookup table cannot hold) runs in blocks of rows: the same
bytes as the whole image at once, in bounded memory."""
import tracemalloc

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from cxr_d2.data import dicom
from cxr_d2.data.dicom import dicom_to_uint8, dicom_to_unit
from cxr_d2.data.image_io import unit_to_uint8


def _ds(**attrs):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _whole(ds, arr):
    return unit_to_uint8(dicom_to_unit(ds, arr.copy(), "x.dcm"))


def _modality_lut(n):
    item = Dataset()
    item.LUTDescriptor = [n, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = [(v * 37) % n for v in range(n)]  # not monotone
    item["LUTData"].VR = "US"
    return Sequence([item])


def _wide(rng, shape):
    """Signed 32-bit values spanning more than a table holds; the extremes in the last rows."""
    arr = rng.integers(-200000, 200000, size=shape, dtype=np.int32)
    arr[-1, 0], arr[-2, 3] = -300000, 300000
    return arr


CASES = {
    "wide, stretch": lambda rng: (_ds(), _wide(rng, (37, 23))),
    "wide, rescale, stretch": lambda rng: (
        _ds(RescaleSlope="-0.5", RescaleIntercept="100"), _wide(rng, (37, 23))),
    "wide, window, MONOCHROME1": lambda rng: (
        _ds(WindowCenter="1000", WindowWidth="90000", PhotometricInterpretation="MONOCHROME1"),
        _wide(rng, (37, 23))),
    "modality LUT, stretch": lambda rng: (
        _ds(ModalityLUTSequence=_modality_lut(64)), rng.integers(0, 64, (37, 23)).astype(np.uint16)),
    "float pixels, stretch": lambda rng: (
        _ds(), rng.normal(0, 1000, (37, 23)).astype(np.float32)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block_rows", [1, 4, 36, 1000])
def test_blocks_equal_the_whole_image(case, block_rows, monkeypatch):
    ds, arr = CASES[case](np.random.default_rng(3))
    assert dicom._lut_range(ds, arr) is None  # the float path
    ref = _whole(ds, arr)
    before = arr.copy()
    monkeypatch.setattr(dicom, "_FLOAT_BLOCK_PIXELS", block_rows * arr.shape[1])
    out = dicom_to_uint8(ds, arr, "x.dcm")
    assert out.dtype == np.uint8 and np.array_equal(out, ref)
    assert np.array_equal(arr, before)  # the decoded values are not changed
    assert out.min() == 0 and out.max() == 255  # extremes from other blocks reached


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded(monkeypatch):
    """A 3000x3000 32-bit image with a rescale: the blocks need the uint8 result plus a few MB
    (numpy reports its buffers to tracemalloc); the whole image at once needed over 8 bytes per
    pixel more."""
    arr = _wide(np.random.default_rng(0), (3000, 3000))
    ds = _ds(RescaleSlope="2", RescaleIntercept="-5")
    pixels = arr.size
    blocked = _peak_bytes(lambda: dicom_to_uint8(ds, arr, "x.dcm"))
    assert blocked < pixels + 32 * 2**20
    monkeypatch.setattr(dicom, "_FLOAT_BLOCK_PIXELS", pixels)  # one block: the old way
    assert _peak_bytes(lambda: dicom_to_uint8(ds, arr, "x.dcm")) > 8 * pixels
