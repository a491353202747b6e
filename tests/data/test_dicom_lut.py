"""The lookup-table DICOM path equals the float path byte for byte (cxr_d2.data.dicom)."""
import glob
import os

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.sequence import Sequence

from cxr_d2.data import dicom
from cxr_d2.data.dicom import dicom_to_uint8, dicom_to_unit, read_dicom
from cxr_d2.data.image_io import unit_to_uint8
from cxr_d2.data.phantom.dicom_writer import write_dicom
from tests.helpers import SHARED

REAL = sorted(
    p for p in glob.glob(os.path.join(SHARED, "data", "real", "dicom_cxr", "*", "*"))
    if os.path.basename(p) not in ("License.txt", "LICENSE", "SOURCE.md", "README.md")
)


def float_path(path):
    ds = dicom._dcmread(path, pixels_bytes=1 << 30)  # as the reader parses it
    return unit_to_uint8(dicom_to_unit(ds, pixel_array(ds, index=0), path))


def lut_was_used(monkeypatch, path):
    calls = []
    real = dicom.dicom_to_unit
    monkeypatch.setattr(dicom, "dicom_to_unit", lambda ds, a, s="", **kw: calls.append(a.shape)
                        or real(ds, a, s, **kw))
    out = read_dicom(path)
    return out, calls[0][0] == 1  # the table is one row of values


@pytest.mark.skipif(not REAL, reason="../shared is absent")
@pytest.mark.parametrize("path", REAL, ids=os.path.basename)
def test_real_files(path, monkeypatch):
    out, used = lut_was_used(monkeypatch, path)
    assert used and np.array_equal(out, float_path(path))


def _written(tmp_path, name, stored, signed=False, **attrs):
    path = str(tmp_path / name)
    write_dicom(path, np.zeros(stored.shape, np.uint8), bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _voi_lut(path):
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = (np.sqrt(np.arange(4096) / 4095) * 4095).astype(np.uint16).tolist()
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)


CASES = {
    "stretch": {},
    "monochrome1_stretch": dict(PhotometricInterpretation="MONOCHROME1"),
    "rescale_window": dict(RescaleSlope="0.5", RescaleIntercept="-1024", WindowCenter="300",
                           WindowWidth="1500"),
    "negative_slope_stretch": dict(RescaleSlope="-2", RescaleIntercept="100"),
    "linear_exact": dict(WindowCenter="2000", WindowWidth="1000", VOILUTFunction="LINEAR_EXACT"),
    "sigmoid_monochrome1": dict(WindowCenter="2000", WindowWidth="3000", VOILUTFunction="SIGMOID",
                                PhotometricInterpretation="MONOCHROME1"),
    "voi_lut": dict(WindowCenter="10", WindowWidth="2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("signed", [False, True])
def test_generated_files(tmp_path, monkeypatch, case, signed):
    rng = np.random.default_rng(7)
    low = -1500 if signed else 500  # unsigned: the table starts at 0, below the image's min
    stored = rng.integers(low, 4000, size=(96, 80))
    stored[0, 0], stored[0, 1] = low + 3, 3999  # known extremes
    path = _written(tmp_path, f"{case}.dcm", stored, signed, **CASES[case])
    if case == "voi_lut":
        _voi_lut(path)
    out, used = lut_was_used(monkeypatch, path)
    assert used and np.array_equal(out, float_path(path))


def test_falls_back_where_a_table_cannot_hold(tmp_path, monkeypatch):
    wide = np.array([[0, 60000], [3, 9]])  # span larger than the image
    out, used = lut_was_used(monkeypatch, _written(tmp_path, "w.dcm", wide))
    assert not used and out.tolist() == [[0, 255], [0, 0]]
    ds = pydicom.dcmread(_written(tmp_path, "m.dcm", np.arange(64).reshape(8, 8)))
    item = Dataset()
    item.LUTDescriptor = [64, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = [(v * 37) % 64 for v in range(64)]  # not monotone
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([item])
    arr = pixel_array(ds)
    assert dicom._lut_range(ds, arr) is None
    assert np.array_equal(dicom_to_uint8(ds, arr), unit_to_uint8(dicom_to_unit(ds, arr)))
