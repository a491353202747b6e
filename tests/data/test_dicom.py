"""DICOM and image reading: rescale, VOI window and LUT, MONOCHROME1, bit depth, bad files."""

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import RLELossless

from cxr_d2.data.dicom import image_size, read_dicom, read_image, window_to_unit
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.errors import DatasetError


def _gradient(h=16, w=24):
    return (np.arange(h * w).reshape(h, w) * 255 // (h * w - 1)).astype(np.uint8)


def _dicom(tmp_path, stored, name="x.dcm", **attrs):
    """A DICOM of `stored` values with `attrs` set: written with pydicom itself."""
    import pydicom

    path = str(tmp_path / name)
    bits = attrs.pop("bits_stored", 8 if stored.dtype == np.uint8 else 16)
    write_dicom(path, np.zeros(stored.shape, np.uint8), bits_stored=bits)
    ds = pydicom.dcmread(path)
    ds.PixelData = stored.tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_window_formula_by_hand():
    # PS3.3 C.11.2.1.2.1 LINEAR: c=100, w=51 -> <=74.5 is 0, >124.5 is 1, (x - 99.5)/50 + .5
    out = window_to_unit(np.array([0, 74.5, 99.5, 112, 124.5, 200]), 100, 51)
    assert np.allclose(out, [0, 0, 0.5, 0.75, 1, 1])
    assert np.allclose(window_to_unit(np.array([50.0, 100.0]), 100, 100, "LINEAR_EXACT"), [0, 0.5])
    assert np.isclose(window_to_unit(np.array([100.0]), 100, 10, "SIGMOID")[0], 0.5)


def test_monochrome2_8bit_round_trip(tmp_path):
    img = _gradient()
    path = write_dicom(str(tmp_path / "a.dcm"), img)
    assert np.array_equal(read_dicom(path), img)  # no window: min..max spans 0..255
    assert image_size(path) == img.shape
    assert read_image(path, "BGR").shape == img.shape + (3,)
    assert read_image(path, "L").shape == img.shape + (1,)


def test_monochrome1_is_inverted(tmp_path):
    img = _gradient()
    m1 = write_dicom(str(tmp_path / "m1.dcm"), img, bits_stored=12, monochrome1=True)
    m2 = write_dicom(str(tmp_path / "m2.dcm"), img, bits_stored=12)
    a, b = read_dicom(m1), read_dicom(m2)
    assert np.array_equal(a, b) and np.array_equal(b, img)  # same film, bright = dense


def test_12_and_16_bits_kept_until_the_last_scaling(tmp_path):
    # 12-bit values 0..4095: scaled once, value v -> round(v / 4095 * 255).
    stored = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    out = read_dicom(_dicom(tmp_path, stored, bits_stored=12))
    assert np.array_equal(out, np.round(stored / 4095 * 255).astype(np.uint8))
    # 16-bit: values that differ only in their low bits within a narrow window stay distinct.
    stored = (30000 + np.arange(256, dtype=np.uint16)).reshape(16, 16)
    out = read_dicom(
        _dicom(tmp_path, stored, "w.dcm", bits_stored=16, WindowCenter="30128", WindowWidth="256")
    )
    expected = np.clip((stored - 30127.5) / 255 + 0.5, 0, 1) * 255  # = stored - 30000
    assert np.array_equal(out, np.round(expected).astype(np.uint8))
    assert len(np.unique(out)) == 256


def test_rescale_then_window(tmp_path):
    # stored s, modality value m = 2 s - 1024 (RescaleSlope 2, Intercept -1024); window on m.
    stored = np.array([[0, 400, 512, 600, 1024]], dtype=np.uint16)
    path = _dicom(
        tmp_path,
        stored,
        bits_stored=12,
        RescaleSlope="2",
        RescaleIntercept="-1024",
        WindowCenter="0",
        WindowWidth="401",
    )
    m = stored * 2.0 - 1024
    expected = np.clip((m - (0 - 0.5)) / 400 + 0.5, 0, 1)
    assert np.array_equal(read_dicom(path), np.round(expected * 255).astype(np.uint8))


def test_voi_lut_sequence_preferred_over_window(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    path = _dicom(tmp_path, stored, bits_stored=12, WindowCenter="1000", WindowWidth="10")
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first input value 0, 8-bit output
    item.LUTData = [0, 255, 51, 102]
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    assert read_dicom(path).tolist() == [[0, 255, 51, 102]]


def test_rle_compressed_decodes_like_uncompressed(tmp_path):
    img = _gradient(32, 32)
    path = write_dicom(str(tmp_path / "rle.dcm"), img, bits_stored=12, transfer_syntax=RLELossless)
    assert np.array_equal(read_dicom(path), img)


def test_truncated_dicom_names_the_file(tmp_path):
    path = write_dicom(str(tmp_path / "cut.dcm"), _gradient(64, 64))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) - 2000])
    with pytest.raises(DatasetError, match=r"cut\.dcm: .*") as e:
        read_image(path)
    assert "\n" not in str(e.value)


def test_not_a_dicom_and_missing_file(tmp_path):
    bad = tmp_path / "text.dcm"
    bad.write_text("hello")
    with pytest.raises(DatasetError, match=r"text\.dcm: not a readable DICOM"):
        read_dicom(str(bad))
    with pytest.raises(DatasetError, match="does not exist"):
        read_image(str(tmp_path / "none.png"))


def test_truncated_png_and_non_image(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_gradient(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"a\.png: not a readable image"):
        read_image(str(path))
    junk = tmp_path / "b.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"b\.png: not a readable image"):
        read_image(str(junk))


def test_jpeg_baseline_through_the_installed_handler(tmp_path):
    import io

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    img = np.kron(_gradient(8, 8), np.ones((8, 8), np.uint8))  # smooth: JPEG keeps it closely
    path = write_dicom(str(tmp_path / "j.dcm"), img)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    out = read_dicom(path).astype(int)
    assert np.abs(out - img.astype(int)).max() <= 8
