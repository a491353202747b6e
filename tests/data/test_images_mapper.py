"""
Where a refused image goes: a counted skip in a dataset load (parsers read sizes through
image_size) and in a training mapper, one DatasetError line in a test mapper.
"""

import struct
import zlib

import pytest
from detectron2.data import DatasetCatalog

from cxr_d2.data.checks import collect_problems
from cxr_d2.data.datasets import register_all_cxr
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.data.phantom.layouts import random_plan, write_layout
from cxr_d2.errors import DatasetError

SIZE = 64


def _png_bomb(path):
    """57 bytes: a PNG whose IHDR states 20000x20000 grayscale pixels and no image data."""

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    )
    return str(path)


@pytest.fixture(scope="module")
def nih_with_bomb(tmp_path_factory):
    """An NIH-layout phantom of 6 films, the second replaced by a 20000x20000 PNG bomb."""
    root = tmp_path_factory.mktemp("bomb")
    plan = random_plan("nih_cxr14", 6, SIZE, seed=5, normal_fraction=0)
    write_layout("nih_cxr14", str(root), plan, SIZE, seed=5)
    bomb = _png_bomb(root / "nih_cxr14" / "images" / plan[1].name)
    names = register_all_cxr(str(root), prefix="bomb_", sources=["nih_cxr14"])
    yield root, plan, bomb
    for name in names:
        DatasetCatalog.remove(name)


def test_bomb_is_a_counted_skip_when_loading(nih_with_bomb):
    _, plan, bomb = nih_with_bomb
    with collect_problems() as problems:
        records = [
            r for s in ("train", "val", "test") for r in DatasetCatalog.get(f"bomb_nih_cxr14_{s}")
        ]
    about_bomb = [p for p in problems if bomb in str(p)]
    assert about_bomb and all(p.skipped == "annotation" for p in about_bomb)
    assert "over the limit of 100000000" in str(about_bomb[0])
    assert len(about_bomb) == len(plan[1].findings)  # each of its rows, counted
    assert bomb not in {r["file_name"] for r in records} and len(records) == 5


def test_mapper_skips_the_bomb_in_training_and_refuses_it_in_testing(nih_with_bomb):
    _, _, bomb = nih_with_bomb
    record = {"file_name": bomb, "height": SIZE, "width": SIZE, "image_id": 1, "annotations": []}
    kwargs = dict(augmentations=[], image_format="L")
    train = CXRDatasetMapper(is_train=True, **kwargs)
    assert train(record) is None and train(record) is None and train.skipped == 2
    with pytest.raises(DatasetError) as e:
        CXRDatasetMapper(is_train=False, **kwargs)(record)
    assert str(e.value).startswith(f"{bomb}: header states 20000x20000")
    assert "raise CXR.DATA.MAX_IMAGE_PIXELS" in str(e.value) and "\n" not in str(e.value)
