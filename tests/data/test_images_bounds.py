"""
Bounded decoding: an image whose header states more pixels than CXR.DATA.MAX_IMAGE_PIXELS is
refused from its header, before any decoder runs, with one line naming the file and the key.
The bomb files are tiny and crafted here.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from cxr_d2.data import dicom
from cxr_d2.data.dicom import image_size, read_dicom, read_image
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.data.policy import set_data_policy
from cxr_d2.errors import DatasetError

LIMIT_HINT = "raise CXR.DATA.MAX_IMAGE_PIXELS"


@pytest.fixture
def limit():
    """Set the pixel limit for one test: `limit(n)`; the old policy comes back afterwards."""
    saved = []

    def set_limit(n):
        saved.append(set_data_policy(max_image_pixels=n))

    yield set_limit
    if saved:
        set_data_policy(**saved[0].__dict__)


@pytest.fixture
def no_decoding(monkeypatch):
    """Every pixel decoder (Pillow's, pydicom's, deflate beyond the header) fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("a decoder ran")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    monkeypatch.setattr("pydicom.pixels.pixel_array", boom)
    inflate = dicom._inflate

    def header_only(path, meta, limit):
        assert limit == dicom._HEADER_BYTES, "inflated beyond the header"
        return inflate(path, meta, limit)

    monkeypatch.setattr(dicom, "_inflate", header_only)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(path, width, height, depth=8):
    """A PNG of a few bytes whose IHDR states width x height grayscale pixels of `depth` bits."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return str(path)


def _jpeg_claiming(path, width, height):
    """A real 16x16 JPEG whose SOF0 marker is rewritten to state width x height."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return str(path)


def _dicom(path, rows=None, columns=None, frames=None, deflated=False, trailing=0):
    """A 64x64 DICOM (optionally deflated, with `trailing` zero bytes after the pixels) whose
    header may claim other Rows/Columns/NumberOfFrames."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    write_dicom(str(path), img)
    ds = pydicom.dcmread(str(path))
    if rows:
        ds.Rows, ds.Columns = rows, columns
    if frames:
        ds.NumberOfFrames = frames
    if trailing:  # a private element after the pixel data, as a bomb would hide its payload
        ds.private_block(0x7FE1, "CXR-D2 TEST", create=True).add_new(0x00, "OB", bytes(trailing))
    if deflated:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(str(path), enforce_file_format=True)
    return str(path), img


# name -> builder of a file whose header states too many pixels for the default limit (1e8).
BOMBS = {
    "png_57_bytes_20000x20000": lambda d: _png_header(d / "bomb.png", 20000, 20000),
    "png16_20000x20000": lambda d: _png_header(d / "bomb16.png", 20000, 20000, depth=16),
    "jpeg_60000x60000": lambda d: _jpeg_claiming(d / "bomb.jpg", 60000, 60000),
    "dicom_30000x30000": lambda d: _dicom(d / "bomb.dcm", 30000, 30000)[0],
    "deflated_dicom_30000x30000": lambda d: _dicom(d / "d", 30000, 30000, deflated=True)[0],
    "dicom_64x64_30000_frames": lambda d: _dicom(d / "frames.dcm", frames=30000)[0],
}


@pytest.mark.parametrize("case", sorted(BOMBS))
@pytest.mark.parametrize("reader", [image_size, read_image])
def test_bomb_refused_from_the_header(tmp_path, no_decoding, case, reader):
    path = BOMBS[case](tmp_path)
    with pytest.raises(DatasetError) as e:
        reader(path)
    message = str(e.value)
    assert message.startswith(f"{path}: header states ") and LIMIT_HINT in message
    assert "over the limit of 100000000" in message and "\n" not in message


def test_the_57_byte_png(tmp_path):
    path = _png_header(tmp_path / "bomb.png", 20000, 20000)
    assert len(open(path, "rb").read()) == 57
    with pytest.raises(Image.DecompressionBombError):  # what Pillow alone does with it
        Image.open(path)


def test_the_configured_limit_rules_not_pillows(tmp_path, limit, no_decoding):
    """Raised above Pillow's own bomb limit, the header of a genuine huge PNG is accepted."""
    path = _png_header(tmp_path / "big.png", 20000, 20000)
    limit(20000 * 20000)
    assert image_size(path) == (20000, 20000)
    with pytest.raises(AssertionError, match="a decoder ran"):  # the guard above is live
        read_image(path)
    limit(20000 * 20000 - 1)
    with pytest.raises(DatasetError, match="over the limit of 399999999"):
        image_size(path)


def test_deflated_guard_is_live(tmp_path, limit, no_decoding):
    path, _ = _dicom(tmp_path / "d", 30000, 30000, deflated=True)
    limit(30000 * 30000)
    assert image_size(path) == (30000, 30000)
    # (the reader turns every failure inside pydicom's parsing into one DatasetError line)
    with pytest.raises((AssertionError, DatasetError), match="inflated beyond the header"):
        read_image(path)


@pytest.mark.parametrize("deflated", [False, True])
def test_real_small_dicom_over_a_low_limit(tmp_path, limit, deflated):
    path, img = _dicom(tmp_path / "small", deflated=deflated)
    assert np.array_equal(read_dicom(path), np.round((img / img.max()) * 255).astype(np.uint8))
    limit(64 * 64 - 1)
    with pytest.raises(DatasetError, match=r"64x64 = 4096 pixels, over the limit of 4095"):
        image_size(path)
    with pytest.raises(DatasetError, match=r"64x64 = 4096 pixels, over the limit of 4095"):
        read_image(path)


def test_deflated_stream_longer_than_its_header_is_refused(tmp_path, monkeypatch):
    """Inflation stops at what the header accounts for (pixels + a header allowance)."""
    monkeypatch.setattr(dicom, "_HEADER_BYTES", 2**16)
    path, img = _dicom(tmp_path / "long", deflated=True, trailing=2**16)
    assert image_size(path) == (64, 64)  # the header alone inflates within the allowance
    with pytest.raises(
        DatasetError, match=r"long: deflated DICOM inflates to more than the 69632 bytes"
    ):
        read_dicom(path)
    ok, _ = _dicom(tmp_path / "short", deflated=True, trailing=2**10)
    assert np.array_equal(read_dicom(ok), read_dicom(_dicom(tmp_path / "plain")[0]))


def test_lut_arithmetic_stays_float32(tmp_path):
    import pydicom

    stored = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    path = write_dicom(str(tmp_path / "r.dcm"), np.zeros((64, 64), np.uint8), bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-1024"
    ds.WindowCenter, ds.WindowWidth = "0", "401"
    assert dicom.dicom_to_unit(ds, stored).dtype == np.float32
    del ds.WindowCenter, ds.WindowWidth
    assert dicom.dicom_to_unit(ds, stored).dtype == np.float32
