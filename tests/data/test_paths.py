"""
No file outside a dataset's folder is opened because an annotation file names it (absolute
names, `../`, symlinks leading elsewhere), unless CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT is set.
"""

import csv
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from cxr_d2.data.checks import ProblemLog
from cxr_d2.data.datasets import SOURCES
from cxr_d2.data.paths import resolve_in_root
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.data.policy import set_data_policy
from cxr_d2.errors import DatasetError

_WATCHED = []  # (folder, opened paths under it) while a test watches


def _audit(event, args):
    if event != "open" or not _WATCHED or not args or not isinstance(args[0], (str, bytes)):
        return
    path = os.path.realpath(os.fsdecode(args[0]))
    for folder, opened in _WATCHED:
        if path.startswith(folder + os.sep):
            opened.append(path)


sys.addaudithook(_audit)  # audit hooks cannot be removed; it is idle unless _WATCHED is set


@pytest.fixture
def policy():
    """Restores the data policy a test changes."""
    old = set_data_policy()
    yield set_data_policy
    set_data_policy(**old.__dict__)


# ------------------------------------------------------------------------------------------
# resolve_in_root
# ------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """root/ with images/a.png and images/link -> outside/; outside/secret.png; a root link."""
    (tmp_path / "root" / "images").mkdir(parents=True)
    (tmp_path / "root" / "images" / "a.png").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(b"")
    os.symlink(tmp_path / "outside", tmp_path / "root" / "images" / "link")
    os.symlink(tmp_path / "root", tmp_path / "root_link")
    return tmp_path


RESOLVE_CASES = [
    # (id, root, name, refused)
    ("inside", "root", "images/a.png", False),
    ("inside_dotdot", "root", "images/../images/a.png", False),
    ("not_yet_existing", "root", "images/b.png", False),
    ("root_is_a_symlink", "root_link", "images/a.png", False),
    ("absolute", "root", "{tmp}/outside/secret.png", True),
    ("dotdot", "root", "images/../../outside/secret.png", True),
    ("symlink_elsewhere", "root", "images/link/secret.png", True),
    ("symlink_via_root_link", "root_link", "images/link/secret.png", True),
    ("etc_passwd", "root", "/etc/passwd", True),
]


@pytest.mark.parametrize(
    "root,name,refused", [c[1:] for c in RESOLVE_CASES], ids=[c[0] for c in RESOLVE_CASES]
)
def test_resolve_in_root(tree, policy, root, name, refused):
    root, name = str(tree / root), name.format(tmp=tree)
    if refused:
        with pytest.raises(DatasetError) as e:
            resolve_in_root(root, name)
        line = str(e.value)
        assert repr(name) in line and "outside the dataset folder" in line and "\n" not in line
        assert "CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT" in line
        policy(allow_outside_root=True)
    assert resolve_in_root(root, name) == os.path.join(root, name)


@pytest.mark.parametrize("name", ["", None, 17, "a\x00b"])
def test_resolve_in_root_refuses_non_names(tree, name):
    with pytest.raises(DatasetError, match="is not a usable path"):
        resolve_in_root(str(tree / "root"), name)


# ------------------------------------------------------------------------------------------
# Every parser that reads a file name from an annotation file
# ------------------------------------------------------------------------------------------


def _png(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(path)


def _coco(name):
    return {
        "images": [{"id": 1, "file_name": name, "width": 8, "height": 8}],
        "annotations": [],
        "categories": [],
    }


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def _write_csv(path, header, row):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, row])


def _chestx_det10(src, name):
    _write_json(os.path.join(src, "train.json"), [{"file_name": name, "syms": [], "boxes": []}])
    _write_json(os.path.join(src, "test.json"), [])


def _chestx_det(src, name):
    entry = {"file_name": name, "syms": [], "boxes": [], "polygons": []}
    _write_json(os.path.join(src, "ChestX_Det_train.json"), [entry])
    _write_json(os.path.join(src, "ChestX_Det_test.json"), [])


def _uml_peru(src, name):
    _write_json(os.path.join(src, "annotations.json"), _coco(name))


def _tbx11k_json(src, name):
    _write_json(os.path.join(src, "annotations", "json", "TBX11K_train.json"), _coco(name))
    _write_json(os.path.join(src, "annotations", "json", "TBX11K_val.json"), _coco("tb/x.png"))


def _tbx11k_list(src, name):
    os.makedirs(os.path.join(src, "lists"))
    for part, listed in (("TBX11K_train", name), ("TBX11K_val", "")):
        with open(os.path.join(src, "lists", part + ".txt"), "w") as f:
            f.write(listed + "\n")


def _rsna(src, name):
    header = ["patientId", "x", "y", "width", "height", "Target"]
    _write_csv(os.path.join(src, "stage_2_train_labels.csv"), header, [name, "", "", "", "", 0])


def _vindr(src, name):
    header = ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
    _write_csv(os.path.join(src, "train.csv"), header, [name, "No finding", 14, "R1"] + [""] * 4)


# source -> (write its annotation file naming `name`, folder the names are relative to,
#            extension the loader appends, image writer)
LAYOUTS = {
    "chestx_det10": (_chestx_det10, "train_data", "", _png),
    "chestx_det": (_chestx_det, "train", "", _png),
    "uml_peru": (_uml_peru, "images", "", _png),
    "tbx11k_json": (_tbx11k_json, "imgs", "", _png),
    "tbx11k_list": (_tbx11k_list, "imgs", "", _png),
    "rsna_pneumonia": (_rsna, "stage_2_train_images", ".dcm", None),
    "vindr_cxr": (_vindr, "train", ".dicom", None),
}

# The file whose line the report names (the file, and its row or entry).
ANNOTATION_FILES = {
    "chestx_det10": "train.json",
    "chestx_det": "ChestX_Det_train.json",
    "uml_peru": "annotations.json",
    "tbx11k_json": "TBX11K_train.json",
    "tbx11k_list": "TBX11K_train.txt",
    "rsna_pneumonia": "stage_2_train_labels.csv",
    "vindr_cxr": "train.csv",
}
ESCAPES = ("absolute", "dotdot", "symlink")


def _escaping_name(tmp, src, layout, escape):
    """A name in `layout`'s annotation file that leads to tmp/outside/secret<ext>."""
    _, folder, ext, writer = LAYOUTS[layout]
    target = os.path.join(tmp, "outside", "secret" + (ext or ".png"))
    if writer:
        writer(target)
    else:
        write_dicom(target, np.full((8, 8), 100, np.uint8))
    base = os.path.join(src, folder)
    os.makedirs(base, exist_ok=True)
    if escape == "absolute":
        name = target
    elif escape == "dotdot":
        name = os.path.relpath(target, base)
    else:
        os.symlink(os.path.dirname(target), os.path.join(base, "link"))
        name = os.path.join("link", os.path.basename(target))
    return name[: -len(ext)] if ext else name


def _parse(layout, src):
    source = SOURCES[layout.split("_json")[0].split("_list")[0]]
    log = ProblemLog(layout)
    return source.parse(src, list(source.classes), log), log


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_escaping_file_name_is_skipped_and_never_opened(tmp_path, policy, layout, escape):
    src = str(tmp_path / "datasets" / "src")
    name = _escaping_name(str(tmp_path), src, layout, escape)
    LAYOUTS[layout][0](src, name)
    outside = os.path.realpath(tmp_path / "outside")
    opened = []
    _WATCHED.append((outside, opened))
    try:
        records, log = _parse(layout, src)
    finally:
        _WATCHED.clear()
    assert opened == []
    assert not any("secret" in r["file_name"] for r in records)
    hits = [str(p) for p in log.problems if "outside the dataset folder" in p.message]
    assert len(hits) == 1, [str(p) for p in log.problems]
    assert ANNOTATION_FILES[layout] in hits[0] and "secret" in hits[0] and "\n" not in hits[0]
    assert hits[0].endswith("(skipped: image)")
    # With the switch, the same file is read.
    policy(allow_outside_root=True)
    records, log = _parse(layout, src)
    assert [r for r in records if "secret" in r["file_name"]], [str(p) for p in log.problems]
