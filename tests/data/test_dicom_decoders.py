"""The optional DICOM decoders (the `dicom` extra): compressed files read as uncompressed."""
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from cxr_d2.data.dicom import read_dicom
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.errors import DatasetError


@pytest.fixture
def twelve_bit(tmp_path):
    rng = np.random.default_rng(1)
    stored = (rng.integers(0, 4096, (96, 72)) // 64 * 64 + np.arange(72)).astype(np.uint16)
    path = str(tmp_path / "plain.dcm")
    write_dicom(path, np.zeros(stored.shape, np.uint8), bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit, ds.PixelData = 12, 11, stored.tobytes()
    ds.WindowCenter, ds.WindowWidth = "2000", "3000"
    ds.save_as(path, enforce_file_format=True)
    return path


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
