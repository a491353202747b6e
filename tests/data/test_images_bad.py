"""
Bad image files, one class per table: each case ends in one DatasetError line naming the file
and what is wrong (DICOM header values, files that are not images), or reads sensibly
(multi-valued windows, colour and multi-frame DICOM, names that lie about the content).
"""

import os
import re

import numpy as np
import pytest
from PIL import Image

from cxr_d2.data.dicom import image_size, is_dicom, read_dicom, read_image, window_to_unit
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.errors import DatasetError

IMG = (np.arange(16 * 16).reshape(16, 16) % 256).astype(np.uint8)


def _dicom(tmp_path, name="x.dcm", raw=None, **values):
    """
    A 16x16 8-bit DICOM with `values` set through pydicom (None deletes) and `raw` DS/IS/CS
    values written as bytes, bypassing pydicom's validation (as a broken modality would).
    """
    import pydicom

    path = write_dicom(str(tmp_path / name), IMG)
    ds = pydicom.dcmread(path)
    placeholders = {}
    for k, (keyword, text) in enumerate((raw or {}).items()):
        placeholders[f"{k + 1}" * 8] = text.ljust(8).encode()
        setattr(ds, keyword, f"{k + 1}" * 8 if keyword != "VOILUTFunction" else f"Q{k}" * 4)
        if keyword == "VOILUTFunction":
            placeholders[f"Q{k}" * 4] = placeholders.pop(f"{k + 1}" * 8)
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    data = open(path, "rb").read()
    for placeholder, text in placeholders.items():
        assert data.count(placeholder.encode()) == 1
        data = data.replace(placeholder.encode(), text)
    open(path, "wb").write(data)
    return path


# (case, raw values, pydicom values, message fragment, refused already by the header reader)
DICOM_CASES = [
    ("slope_text", {"RescaleSlope": "abc"}, {}, "RescaleSlope 'abc' is not a finite number", 0),
    (
        "slope_two_values",
        {"RescaleSlope": "1\\2"},
        {},
        "RescaleSlope has 2 values, expected one",
        0,
    ),
    ("intercept_nan", {"RescaleIntercept": "nan"}, {}, "RescaleIntercept 'nan' is not a finite", 0),
    ("slope_zero", {"RescaleSlope": "0"}, {}, "RescaleSlope is 0, which blanks the image", 0),
    (
        "width_zero",
        {"WindowCenter": "40", "WindowWidth": "0"},
        {},
        "WindowWidth 0.0 is too small",
        0,
    ),
    (
        "width_negative",
        {"WindowCenter": "40", "WindowWidth": "-5"},
        {},
        "WindowWidth -5.0 is too",
        0,
    ),
    (
        "center_text",
        {"WindowCenter": "abc", "WindowWidth": "100"},
        {},
        "WindowCenter 'abc' is not",
        0,
    ),
    (
        "center_inf",
        {"WindowCenter": "inf", "WindowWidth": "100"},
        {},
        "WindowCenter 'inf' is not",
        0,
    ),
    (
        "voi_function_unknown",
        {"WindowCenter": "40", "WindowWidth": "100", "VOILUTFunction": "CUBIC"},
        {},
        "VOILUTFunction 'CUBIC' is not LINEAR, LINEAR_EXACT or SIGMOID",
        0,
    ),
    (
        "bits_stored_over_allocated",
        {},
        {"BitsStored": 12},
        "BitsStored 12 is not within 1..Bits",
        1,
    ),
    ("bits_allocated_odd", {}, {"BitsAllocated": 12}, "BitsAllocated 12 is not valid", 1),
    ("rows_zero", {}, {"Rows": 0}, "header states an empty image (16x0 pixels)", 1),
    ("columns_missing", {}, {"Columns": None}, "its header has no Columns", 1),
    ("frames_text", {"NumberOfFrames": "abc"}, {}, "NumberOfFrames 'abc' is not an integer", 1),
    ("frames_zero", {"NumberOfFrames": "0"}, {}, "header states an empty image", 1),
    (
        "palette_colour",
        {},
        {"PhotometricInterpretation": "PALETTE COLOR"},
        "PhotometricInterpretation 'PALETTE COLOR' with SamplesPerPixel 1 is not supported",
        1,
    ),
    ("rgb_one_sample", {}, {"PhotometricInterpretation": "RGB"}, "'RGB' with SamplesPerPixel 1", 1),
    ("four_samples", {}, {"SamplesPerPixel": 4}, "with SamplesPerPixel 4 is not supported", 1),
    ("rows_lie", {}, {"Rows": 32}, "256 bytes where the header needs 512 (16x32, 1 frame(s))", 0),
    ("pixel_data_missing", {}, {"PixelData": None}, "DICOM file has no pixel data", 0),
]


@pytest.mark.parametrize("case,raw,values,fragment,in_header", DICOM_CASES, ids=lambda c: c)
def test_bad_dicom_value_is_one_line(tmp_path, case, raw, values, fragment, in_header):
    path = _dicom(tmp_path, f"{case}.dcm", raw, **values)
    with pytest.raises(DatasetError) as e:
        read_image(path)
    assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    if in_header:  # dataset parsers skip and count the image at load time
        with pytest.raises(DatasetError, match=f"{case}.dcm: "):
            image_size(path)
    else:
        assert image_size(path) == (values.get("Rows", 16), 16)


def test_multivalued_window_uses_the_first(tmp_path):
    path = _dicom(tmp_path, raw={"WindowCenter": "100\\200", "WindowWidth": "51\\10"})
    expected = np.round(window_to_unit(IMG.astype(np.float64), 100, 51) * 255).astype(np.uint8)
    assert np.array_equal(read_dicom(path), expected)


def _truncate(path, cut):
    """`path` less its last `cut` bytes (half of it when `cut` is None)."""
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - (cut or len(data) // 2)])
    return path


def _png(path, img=IMG, fmt="PNG"):
    Image.fromarray(img).save(path, format=fmt)
    return str(path)


def _without_meta(path):
    """The same DICOM rewritten as an ACR-NEMA style file: no preamble, no file meta."""
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def _random_bytes(path):
    return _file(path, np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _file(path, data):
    path.write_bytes(data)
    return str(path)


SMOOTH = np.kron(IMG, np.ones((8, 8), np.uint8))

# (case, builder of the bad file, message fragment)
FILE_CASES = [
    ("empty_png", lambda d: _file(d / "e.png", b""), "file is empty"),
    ("empty_no_name", lambda d: _file(d / "e", b""), "file is empty"),
    ("directory", lambda d: str(d), "is a directory, not an image file"),
    ("missing", lambda d: str(d / "none.png"), "file does not exist"),
    (
        "text_named_png",
        lambda d: _file(d / "t.png", b"hello"),
        "not a readable image (UnidentifiedImageError",
    ),
    (
        "text_named_dcm",
        lambda d: _file(d / "t.dcm", b"hello"),
        "not a readable DICOM image (its header has no Rows)",
    ),
    ("random_bytes", lambda d: _random_bytes(d / "r"), "not a readable image"),
]
DECODE_CASES = [
    (
        "truncated_png",
        lambda d: _truncate(_png(d / "a.png", SMOOTH), None),
        "not a readable image (OSError: image file is truncated)",
    ),
    (
        "truncated_jpeg",
        lambda d: _truncate(_png(d / "a.jpg", SMOOTH, "JPEG"), None),
        "not a readable image (OSError: Truncated File Read)",
    ),
    (
        "truncated_dicom_without_meta",
        lambda d: _truncate(_without_meta(write_dicom(str(d / "m"), IMG)), 100),
        "cannot decode pixel data: 156 bytes where the header needs 256",
    ),
]


@pytest.mark.parametrize("case,build,fragment", FILE_CASES + DECODE_CASES, ids=lambda c: c)
def test_bad_file_is_one_line(tmp_path, case, build, fragment):
    path = build(tmp_path)
    with pytest.raises(DatasetError) as e:
        read_image(path)
    assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    if (case, build, fragment) in FILE_CASES:
        with pytest.raises(DatasetError, match=re.escape(fragment)):
            image_size(path)


def test_names_that_lie(tmp_path):
    png_as_dcm = _png(tmp_path / "really_png.dcm")
    dicom_as_png = write_dicom(str(tmp_path / "really_dicom.png"), IMG)
    for path in (png_as_dcm, dicom_as_png):
        assert np.array_equal(read_image(path, "L")[:, :, 0], IMG) and image_size(path) == (16, 16)
    with pytest.raises(DatasetError, match=r"really_png\.dcm: is a PNG image, not a DICOM file"):
        read_dicom(png_as_dcm)
    junk_dcm = _file(tmp_path / "junk.dcm", b"hello")
    assert is_dicom(dicom_as_png) and not is_dicom(png_as_dcm) and not is_dicom(junk_dcm)


def test_dicom_without_file_meta(tmp_path):
    path = _without_meta(write_dicom(str(tmp_path / "acr_nema"), IMG))
    assert open(path, "rb").read(132)[128:] != b"DICM"
    assert np.array_equal(read_image(path, "L")[:, :, 0], IMG) and image_size(path) == (16, 16)


def _colour_dicom(tmp_path, rgb, photometric):
    import pydicom
    from pydicom.pixels import convert_color_space

    path = write_dicom(str(tmp_path / f"{photometric}.dcm"), rgb[..., 0])
    ds = pydicom.dcmread(path)
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", photometric)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_dicom_gives_its_luminance(tmp_path, photometric):
    rng = np.random.default_rng(1)
    rgb = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    y = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    expected = np.round((y - y.min()) / (y.max() - y.min()) * 255)
    got = read_dicom(_colour_dicom(tmp_path, rgb, photometric)).astype(int)
    assert np.abs(got - expected).max() <= (0 if photometric == "RGB" else 3)


def test_multiframe_dicom_gives_its_first_frame(tmp_path):
    import pydicom

    path = write_dicom(str(tmp_path / "frames.dcm"), IMG)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3
    ds.PixelData = IMG.tobytes() + (255 - IMG).tobytes() + np.zeros_like(IMG).tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert np.array_equal(read_dicom(path), IMG) and image_size(path) == (16, 16)
    assert os.path.getsize(path) > 3 * IMG.size
