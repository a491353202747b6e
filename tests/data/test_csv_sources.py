"""
The CSV sources (NIH, RSNA, SIIM, VinDr) lose nothing silently: a file that cannot be read as
the source's table is one line naming the file and the expected columns; a bad row is
reported at its row and skipped and counted; a dataset left with no image is a DatasetError
naming it (and a problem of check_dataset), never Detectron2's bare "Dataset is empty".
"""

import csv
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_d2.data.checks import ProblemLog, check_dataset
from cxr_d2.data.datasets.common import register_source
from cxr_d2.data.datasets.nih_cxr14 import SOURCE as NIH
from cxr_d2.data.datasets.rsna_pneumonia import SOURCE as RSNA
from cxr_d2.data.datasets.siim_ptx import SOURCE as SIIM
from cxr_d2.data.datasets.vindr_cxr import SOURCE as VINDR
from cxr_d2.data.phantom.layouts import random_plan, write_layout
from cxr_d2.errors import DatasetError

SIZE = 64
# source -> (table row, its CSV under the source folder, its first column's name)
SOURCES = {
    "nih_cxr14": (NIH, "BBox_List_2017.csv", "Image Index"),
    "rsna_pneumonia": (RSNA, "stage_2_train_labels.csv", "patientId"),
    "siim_ptx": (SIIM, "train-rle.csv", "ImageId"),
    "vindr_cxr": (VINDR, "train.csv", "image_id"),
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv_sources")
    for layout in SOURCES:
        write_layout(layout, str(root), random_plan(layout, 6, SIZE, seed=5), SIZE, seed=5)
    return root


def _copy(phantoms, tmp_path, source):
    """A private copy of the source folder; returns (folder, CSV path, header, rows)."""
    folder = tmp_path / source
    shutil.copytree(phantoms / source, folder)
    path = folder / SOURCES[source][1]
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return folder, path, header, rows


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def _parse(source, folder):
    log = ProblemLog("t")
    src = SOURCES[source][0]
    records = src.parse(str(folder), list(src.classes), log, **src.variants[0].options)
    return records, log


def _count(records):
    return sum(len(r["annotations"]) for r in records)


# ------------------------------------------------------------------------------------------
# The file as a whole
# ------------------------------------------------------------------------------------------


def _semicolons(header, rows):
    return ";".join(header) + "\n" + "".join(";".join(r) + "\n" for r in rows)


FILE_FAULTS = {
    "empty file": (lambda h, rows: "", "the file is empty; expected a header"),
    "header only": (lambda h, rows: ",".join(h) + "\n", "a header and no data row"),
    "';' delimiter": (_semicolons, "it looks separated by ';'"),
    "a column missing": (
        lambda h, rows: ",".join(h[1:]) + "\n" + "".join(",".join(r[1:]) + "\n" for r in rows),
        "the header",
    ),
    "not UTF-8": (
        lambda h, rows: ",".join(h) + "\n" + ",".join(rows[0]) + "\n" + "caf\udce9,1\n",
        "not UTF-8 text (byte 0xe9)",
    ),
}


@pytest.mark.parametrize("fault", list(FILE_FAULTS))
@pytest.mark.parametrize("source", list(SOURCES))
def test_unreadable_table_is_one_line_naming_file_and_columns(phantoms, tmp_path, source, fault):
    folder, path, header, rows = _copy(phantoms, tmp_path, source)
    make, fragment = FILE_FAULTS[fault]
    path.write_bytes(make(header, rows).encode("utf-8", "surrogateescape"))
    with pytest.raises(DatasetError) as e:
        _parse(source, folder)
    message = str(e.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert fragment in message and SOURCES[source][2] in message, message


@pytest.mark.parametrize("source", list(SOURCES))
def test_byte_order_mark_is_read_as_utf8(phantoms, tmp_path, source):
    folder, path, _, _ = _copy(phantoms, tmp_path, source)
    before, log = _parse(source, folder)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    after, log = _parse(source, folder)
    assert after == before and not log.problems


# ------------------------------------------------------------------------------------------
# One bad row appended to the good ones: reported at its row, skipped, counted
# ------------------------------------------------------------------------------------------


def _with(row, **cells):
    """`row` with cells replaced by index: _with(r, c2="nan")."""
    row = list(row)
    for key, value in cells.items():
        row[int(key[1:])] = value
    return row


# (source, name, make bad row from the first good row, message fragment, counted as, change
# in the number of annotations kept)
ROW_FAULTS = (
    [(s, "an extra cell", lambda r: r + ["7"], "cells, expected", "row", 0) for s in SOURCES]
    + [(s, "a cell missing", lambda r: r[:-1], "cells, expected", "row", 0) for s in SOURCES]
    + [(s, "a NUL byte", lambda r: _with(r, c0=r[0] + "\0"), "NUL byte", "row", 0) for s in SOURCES]
    + [
        ("rsna_pneumonia", "exact duplicate", lambda r: r, "listed twice", "row", 0),
        ("siim_ptx", "exact duplicate", lambda r: r, "listed twice", "row", 0),
        ("vindr_cxr", "exact duplicate", lambda r: r, "listed twice", "row", 0),
        ("nih_cxr14", "exact duplicate", lambda r: r, "listed twice", "annotation", 0),
        (
            "nih_cxr14",
            "NaN x",
            lambda r: _with(r, c2="nan"),
            "not a finite number",
            "annotation",
            0,
        ),
        (
            "nih_cxr14",
            "inf w",
            lambda r: _with(r, c4="inf"),
            "not a finite number",
            "annotation",
            0,
        ),
        (
            "nih_cxr14",
            "1e30 w",
            lambda r: _with(r, c4="1e30"),
            "outside the 64x64",
            "annotation",
            0,
        ),
        ("nih_cxr14", "negative w", lambda r: _with(r, c4="-20"), "x2 < x1", "annotation", 0),
        ("rsna_pneumonia", "NaN y", lambda r: _with(r, c2="NaN"), "not a finite", "annotation", 0),
        (
            "rsna_pneumonia",
            "1e30 w",
            lambda r: _with(r, c3="1e30"),
            "outside the 64x64",
            "annotation",
            0,
        ),
        ("rsna_pneumonia", "negative h", lambda r: _with(r, c4="-5"), "y2 < y1", "annotation", 0),
        (
            "rsna_pneumonia",
            "Target yes",
            lambda r: _with(r, c5="yes"),
            "Target 'yes' is not 0 or 1",
            "row",
            0,
        ),
        (
            "rsna_pneumonia",
            "Target empty",
            lambda r: _with(r, c5=""),
            "Target '' is not 0 or 1",
            "row",
            0,
        ),
        (
            "rsna_pneumonia",
            "Target 2",
            lambda r: _with(r, c5="2"),
            "Target '2' is not 0 or 1",
            "row",
            0,
        ),
        (
            "rsna_pneumonia",
            "Target nan",
            lambda r: _with(r, c5="nan"),
            "Target 'nan' is not",
            "row",
            0,
        ),
        ("rsna_pneumonia", "Target 1.0", lambda r: _with(r, c1="1", c5="1.0"), None, None, 1),
        ("rsna_pneumonia", "patientId empty", lambda r: _with(r, c0=""), "no patientId", "row", 0),
        ("vindr_cxr", "inf x_max", lambda r: _with(r, c6="inf"), "not a finite", "annotation", 0),
        (
            "vindr_cxr",
            "1e30 y_max",
            lambda r: _with(r, c7="1e30"),
            "outside the 64x64",
            "annotation",
            0,
        ),
        ("vindr_cxr", "x_max < x_min", lambda r: _with(r, c6="1"), "x2 < x1", "annotation", 0),
        ("vindr_cxr", "another reader", lambda r: _with(r, c3="R99"), None, None, 1),
        (
            "siim_ptx",
            "RLE start 1e30",
            lambda r: _with(r, c1="1e30 5"),
            "'1e30' is not a non-negative integer",
            "annotation",
            0,
        ),
        (
            "siim_ptx",
            "RLE start 10^30",
            lambda r: _with(r, c1="1" + "0" * 30 + " 5"),
            "is too large",
            "annotation",
            0,
        ),
        ("siim_ptx", "RLE negative", lambda r: _with(r, c1="-3 2"), "'-3' is not", "annotation", 0),
        ("siim_ptx", "RLE odd", lambda r: _with(r, c1="1 2 3"), "odd number", "annotation", 0),
        (
            "siim_ptx",
            "RLE beyond image",
            lambda r: _with(r, c1="4090 10"),
            "ends beyond the 64x64",
            "annotation",
            0,
        ),
        (
            "siim_ptx",
            "RLE of zeros",
            lambda r: _with(r, c1="0 0"),
            "mask is empty",
            "annotation",
            0,
        ),
    ]
)


@pytest.mark.parametrize(
    "source, name, make, fragment, counted, change",
    ROW_FAULTS,
    ids=[f"{c[0]}-{c[1]}" for c in ROW_FAULTS],
)
def test_bad_row_is_reported_skipped_and_counted(
    phantoms, tmp_path, source, name, make, fragment, counted, change
):
    folder, path, header, rows = _copy(phantoms, tmp_path, source)
    good, _ = _parse(source, folder)
    first = next(r for r in rows if r[-1].strip() not in ("", "-1", "0"))  # a finding
    _write(path, header, rows + [make(first)])
    records, log = _parse(source, folder)
    assert _count(records) == _count(good) + change
    assert len(records) == len(good)
    if fragment is None:
        assert not log.problems
        return
    where = f"{path}:{len(rows) + 2}"
    assert [str(p) for p in log.problems if fragment in p.message] == [
        str(p) for p in log.problems
    ], log.problems
    ((problem,),) = ([p for p in log.problems if p.where == where],)
    assert fragment in problem.message and problem.skipped == counted, str(problem)
    assert sum(log.skipped.values()) == 1


# ------------------------------------------------------------------------------------------
# Nothing left: never a normal film, never Detectron2's bare assertion
# ------------------------------------------------------------------------------------------


def test_abnormal_film_without_a_usable_box_is_left_out_not_normal(phantoms, tmp_path):
    folder, path, header, rows = _copy(phantoms, tmp_path, "rsna_pneumonia")
    good, _ = _parse("rsna_pneumonia", folder)
    pid = next(r[0] for r in rows if r[-1] == "1")
    _write(path, header, [_with(r, c1="nan") if r[0] == pid else r for r in rows])
    records, log = _parse("rsna_pneumonia", folder)
    assert pid not in {r["patient_id"] for r in records} and len(records) == len(good) - 1
    assert log.skipped["image"] == 1
    assert any(f"patient {pid} has Target 1 but no usable box" in str(p) for p in log.problems)


@pytest.fixture
def registered(tmp_path):
    names = []
    yield lambda source, root: names.extend(
        register_source(SOURCES[source][0], str(root), prefix="csvt_", replace=True)
    )
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("source", ["rsna_pneumonia", "vindr_cxr", "nih_cxr14"])
def test_dataset_with_every_row_skipped_is_one_dataset_error(
    phantoms, tmp_path, registered, source
):
    folder, path, header, rows = _copy(phantoms, tmp_path, source)
    _write(path, header, [r + ["extra"] for r in rows])
    registered(source, tmp_path)
    name = f"csvt_{source}_train"
    with pytest.raises(DatasetError) as e:
        DatasetCatalog.get(name)
    message = str(e.value)
    assert message.startswith(f"dataset {name} has no image: everything in {folder} was skipped")
    assert f"{len(rows)} row(s)" in message and "\n" not in message
    summary, problems = check_dataset(name, progress=False)
    assert summary["images"] == 0
    assert sum("cells, expected" in p.message for p in problems) == len(rows)
    assert [p.where for p in problems if "has no image" in p.message] == [name]
