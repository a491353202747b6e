"""The optional DICOM decoders (the `dicom` extra): compressed files read as uncompressed."""
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from cxr_d2.data.dicom import read_dicom
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.errors import DatasetError


def _plain_twelve_bit(path, stored):
    """`stored` (H, W) uint16 as an uncompressed 12-bit DICOM with a window."""
    write_dicom(path, np.zeros(stored.shape, np.uint8), bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit, ds.PixelData = 12, 11, stored.tobytes()
    ds.WindowCenter, ds.WindowWidth = "2000", "3000"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def twelve_bit(tmp_path):
    rng = np.random.default_rng(1)
    stored = (rng.integers(0, 4096, (96, 72)) // 64 * 64 + np.arange(72)).astype(np.uint16)
    return _plain_twelve_bit(str(tmp_path / "plain.dcm"), stored)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless], ids=lambda u: u.name)
def test_lossless_compressed_reads_as_uncompressed(twelve_bit, tmp_path, syntax):
    ds = pydicom.dcmread(twelve_bit)
    ds.compress(syntax)  # pyjpegls / pylibjpeg-openjpeg encode
    path = str(tmp_path / "compressed.dcm")
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(read_dicom(path), read_dicom(twelve_bit))


def test_missing_decoder_names_the_extra(twelve_bit, tmp_path, monkeypatch):
    ds = pydicom.dcmread(twelve_bit)
    ds.compress(JPEGLSLossless)
    path = str(tmp_path / "ls.dcm")
    ds.save_as(path, enforce_file_format=True)
    from pydicom.pixels.decoders import JPEGLSLosslessDecoder

    monkeypatch.setattr(JPEGLSLosslessDecoder, "_available", {})
    monkeypatch.setattr(JPEGLSLosslessDecoder, "_unavailable", {"pyjpegls": ("not installed",)})
    with pytest.raises(DatasetError, match=r"ls\.dcm: cannot decode.*JPEG-LS.*cxr-d2\[dicom\]"):
        read_dicom(path)


def _jpeg12_dicom(path, stored, quality):
    """`stored` (H, W) uint16 12-bit values as a JPEG Extended (process 4) DICOM, encoded by
    imagecodecs' libjpeg-turbo."""
    import imagecodecs
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGExtended12Bit

    write_dicom(path, np.zeros(stored.shape, np.uint8), bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.WindowCenter, ds.WindowWidth = "2000", "3000"
    ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(stored, level=quality, bitspersample=12)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit
    ds.save_as(path, enforce_file_format=True)
    return path


def _film(shape=(160, 128)):
    """A smooth 12-bit radiograph-like image (JPEG's error on it stays small)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    film = 1500 + 1200 * np.sin(y / 17.0) * np.cos(x / 23.0) + 6 * x
    return np.clip(film, 0, 4095).astype(np.uint16)


def test_twelve_bit_jpeg_reads_as_its_original(tmp_path):
    """A 12-bit JPEG (quality 100) reads within 4 stored levels of the array it encodes, and at
    most 1 grey level from the uncompressed file's 8-bit image."""
    pytest.importorskip("imagecodecs")
    from pydicom.pixels import pixel_array

    stored = _film()
    plain = _plain_twelve_bit(str(tmp_path / "plain.dcm"), stored)
    path = _jpeg12_dicom(str(tmp_path / "jpeg12.dcm"), stored, quality=100)
    decoded = pixel_array(pydicom.dcmread(path), decoding_plugin="imagecodecs")
    assert decoded.dtype == np.uint16 and decoded.max() > 255  # 12 bits kept
    assert np.abs(decoded.astype(int) - stored).max() <= 4
    diff = np.abs(read_dicom(path).astype(int) - read_dicom(plain))
    assert diff.max() <= 1


def test_pydicom_sample_12_bit_jpegs():
    """pydicom's own JPEG Extended samples: JPGExtended.dcm through libjpeg-turbo within 1 level
    of pylibjpeg's libjpeg (an independent decoder); JPEG-lossy.dcm, which pylibjpeg 2.x
    refuses ("scan start must be zero"), holds the same image and reads identically."""
    pytest.importorskip("imagecodecs")
    from pydicom.data import get_testdata_file
    from pydicom.pixels import pixel_array

    extended = get_testdata_file("JPGExtended.dcm")
    lossy = get_testdata_file("JPEG-lossy.dcm")
    read_dicom(extended)  # registers the plugin
    ours = pixel_array(pydicom.dcmread(extended), decoding_plugin="imagecodecs")
    theirs = pixel_array(pydicom.dcmread(extended), decoding_plugin="pylibjpeg")
    assert ours.shape == (1024, 256) and ours.max() == 264
    assert np.abs(ours.astype(int) - theirs).max() <= 1
    assert np.array_equal(read_dicom(lossy), read_dicom(extended))
    assert np.array_equal(pixel_array(pydicom.dcmread(lossy), decoding_plugin="imagecodecs"), ours)


def test_twelve_bit_jpeg_without_imagecodecs(tmp_path, monkeypatch):
    """Without imagecodecs pydicom's pylibjpeg reads the file (within 1 grey level); with no
    12-bit decoder at all the error names the extra."""
    pytest.importorskip("imagecodecs")
    from pydicom.pixels.decoders import JPEGExtended12BitDecoder

    path = _jpeg12_dicom(str(tmp_path / "j.dcm"), _film(), quality=90)
    with_it = read_dicom(path)
    available = dict(JPEGExtended12BitDecoder._available)
    monkeypatch.setattr(JPEGExtended12BitDecoder, "_available",
                        {k: v for k, v in available.items() if k != "imagecodecs"})
    monkeypatch.setattr(JPEGExtended12BitDecoder, "_unavailable",
                        {"imagecodecs": ("not installed",)})
    import imagecodecs

    def refuse(*args, **kwargs):
        raise AssertionError("imagecodecs was used")

    monkeypatch.setattr(imagecodecs, "jpeg8_decode", refuse)  # another decoder must read it
    without = read_dicom(path)
    assert np.abs(without.astype(int) - with_it).max() <= 1
    monkeypatch.setattr(JPEGExtended12BitDecoder, "_available", {})
    monkeypatch.setattr(JPEGExtended12BitDecoder, "_unavailable",
                        {"imagecodecs": ("not installed",), "pylibjpeg": ("not installed",)})
    with pytest.raises(DatasetError, match=r"j\.dcm: cannot decode.*JPEG Extended.*cxr-d2\[dicom\]"):
        read_dicom(path)


@pytest.mark.parametrize("threads", [1, 2])
def test_jpeg2000_through_imagecodecs_equals_pillow(twelve_bit, tmp_path, threads, monkeypatch):
    """Lossy JPEG 2000 (20:1): imagecodecs' OpenJPEG on 1 or 2 threads gives Pillow's values,
    and read_dicom takes it first."""
    pytest.importorskip("imagecodecs")
    import torch
    from pydicom.pixels import pixel_array
    from pydicom.uid import JPEG2000

    ds = pydicom.dcmread(twelve_bit)
    ds.compress(JPEG2000, j2k_cr=[20])
    path = str(tmp_path / "j2k.dcm")
    ds.save_as(path, enforce_file_format=True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    import imagecodecs

    calls = []
    decode = imagecodecs.jpeg2k_decode
    monkeypatch.setattr(imagecodecs, "jpeg2k_decode",
                        lambda src, numthreads: calls.append(numthreads) or decode(src, numthreads=numthreads))
    pillow = pixel_array(pydicom.dcmread(path), decoding_plugin="pillow")
    ours = read_dicom(path)
    assert calls == [threads]  # read_dicom went through imagecodecs on torch's threads
    assert np.array_equal(pixel_array(pydicom.dcmread(path), decoding_plugin="imagecodecs"),
                          pillow)  # fmt: skip
    assert not np.array_equal(pillow, pydicom.dcmread(twelve_bit).pixel_array)  # it is lossy
    from pydicom.pixels.decoders import JPEG2000Decoder

    monkeypatch.setattr(JPEG2000Decoder, "_available",
                        {k: v for k, v in JPEG2000Decoder._available.items() if k != "imagecodecs"})
    monkeypatch.setattr(JPEG2000Decoder, "_unavailable", {"imagecodecs": ("not installed",)})
    assert np.array_equal(read_dicom(path), ours)  # through Pillow
    assert calls == [threads, threads]  # the check above through imagecodecs, not this read
