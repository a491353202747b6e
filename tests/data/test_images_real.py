"""
The real published CXR DICOMs in ../shared/data/real, read through read_image/read_dicom and
compared with pixels computed here by hand from pydicom's raw values (PS3.3 C.11: window,
MONOCHROME1 inversion), plus an anatomical check that the display is not inverted.
"""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from cxr_d2.data.dicom import image_size, is_dicom, read_dicom, read_image
from tests.helpers import SHARED

REAL = os.path.join(SHARED, "data", "real")
CR_MONO1 = os.path.join(REAL, "dicom_cxr", "fo-dicom", "CR-MONO1-10-chest")
NIH_DX = os.path.join(
    REAL,
    "dicom_cxr",
    "nhsx",
    "1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
)
SIIM_JPEG = os.path.join(
    REAL,
    "torchxrayvision_tests",
    "tests",
    "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
)


def _need(path):
    if not os.path.isfile(path):
        pytest.skip(f"{path} absent (../shared/data/real is not checked out)")
    return path


def _raw(path):
    """Stored values through pydicom alone; a file without meta gets its syntax by hand."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian

    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds, ds.pixel_array.astype(np.float64)


def _to_uint8(unit):
    return np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8)


def _assert_close(got, expected):
    """Equal up to float32-versus-float64 rounding at a .5 boundary (at most 1 level, rarely)."""
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (diff.max(), (diff == 0).mean())


def _assert_not_inverted(gray):
    """Mediastinum and spine (central band) brighter than both lung fields, mid-height rows."""
    h, w = gray.shape
    rows = gray[h // 4 : 3 * h // 4].astype(float)
    centre = rows[:, int(0.42 * w) : int(0.58 * w)].mean()
    right_lung = rows[:, int(0.20 * w) : int(0.35 * w)].mean()
    left_lung = rows[:, int(0.65 * w) : int(0.80 * w)].mean()
    assert centre > right_lung + 20 and centre > left_lung + 20, (centre, right_lung, left_lung)


def test_monochrome1_cr_without_meta_or_extension():
    path = _need(CR_MONO1)
    ds, raw = _raw(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and "RescaleSlope" not in ds
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)  # 550, 1024
    # PS3.3 C.11.2.1.2.1 LINEAR, then MONOCHROME1: minimum stored value is white.
    window = (raw - (center - 0.5)) / (width - 1) + 0.5
    expected = _to_uint8(1.0 - np.clip(window, 0, 1))
    assert is_dicom(path) and image_size(path) == (440, 440)
    _assert_close(read_dicom(path), expected)
    _assert_close(read_image(path, "L")[:, :, 0], expected)
    assert np.array_equal(read_image(path, "BGR"), np.repeat(read_image(path, "L"), 3, axis=2))
    _assert_not_inverted(read_dicom(path))


@pytest.mark.parametrize("name", ["chest", "chest.dcm", "chest.png", "chest.jpg"])
def test_the_name_does_not_decide(tmp_path, name):
    """DICOM by content: the same pixels whatever the copy is called."""
    path = str(tmp_path / name)
    shutil.copyfile(_need(CR_MONO1), path)
    assert np.array_equal(read_image(path, "L"), read_image(CR_MONO1, "L"))
    assert image_size(path) == (440, 440)


def test_nih_dx_monochrome2_8bit():
    path = _need(NIH_DX)
    ds, raw = _raw(path)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and "WindowCenter" not in ds
    # No VOI: the image's own range spans 0..255.
    expected = _to_uint8((raw - raw.min()) / (raw.max() - raw.min()))
    assert image_size(path) == (1024, 1024)
    assert np.array_equal(read_dicom(path), expected)
    _assert_not_inverted(read_dicom(path))


def test_siim_jpeg_baseline():
    import pydicom
    from pydicom.encaps import generate_frames

    path = _need(SIIM_JPEG)
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    try:  # the JPEG bitstream decoded directly, not through pydicom's pixel handlers
        raw = np.asarray(Image.open(io.BytesIO(frame)), dtype=np.float64)
    except OSError as e:
        pytest.skip(f"no JPEG baseline decoder installed ({e})")
    expected = _to_uint8((raw - raw.min()) / (raw.max() - raw.min()))
    assert image_size(path) == (1024, 1024)
    _assert_close(read_dicom(path), expected)
    _assert_not_inverted(read_dicom(path))


def test_inversion_check_catches_an_inverted_display():
    """The anatomical check is not vacuous: the MONOCHROME1 film left uninverted fails it."""
    _, raw = _raw(_need(CR_MONO1))
    with pytest.raises(AssertionError):
        _assert_not_inverted(_to_uint8((raw - raw.min()) / (raw.max() - raw.min())))
