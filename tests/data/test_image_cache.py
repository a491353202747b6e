"""The decoded-image cache: same pixels as decoding, never stale, annotations scaled with it."""
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from cxr_d2.config import add_cxr_config
from cxr_d2.data import image_cache
from cxr_d2.data.cache_cli import main as cache_main
from cxr_d2.data.dicom import read_image
from cxr_d2.data.image_cache import ImageCache, cached_size
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.data.phantom.dicom_writer import write_dicom
from tests.helpers import SHARED, TINY, cpu_config

REAL_CR = os.path.join(SHARED, "data", "real", "dicom_cxr", "fo-dicom", "CR-MONO1-10-chest")


def test_hit_equals_decoding_real_dicom(tmp_path):
    if not os.path.isfile(REAL_CR):
        pytest.skip("../shared is absent")
    cache = ImageCache(str(tmp_path / "cache"))
    first = cache.read(REAL_CR, "BGR")
    again = cache.read(REAL_CR, "BGR")
    assert (cache.misses, cache.hits) == (1, 1)
    assert np.array_equal(first, read_image(REAL_CR, "BGR"))
    assert np.array_equal(again, first) and again.dtype == np.uint8


def test_changed_file_or_setting_is_a_new_entry(tmp_path):
    path = str(tmp_path / "film")
    write_dicom(path, np.full((40, 60), 10, np.uint8) + np.arange(60, dtype=np.uint8))
    stat = os.stat(path)
    cache = ImageCache(str(tmp_path / "cache"))
    before = cache.read(path, "L")
    write_dicom(path, np.full((40, 60), 200, np.uint8) - np.arange(60, dtype=np.uint8),
                bits_stored=12)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same name and time
    after = cache.read(path, "L")
    assert cache.misses == 2 and np.array_equal(after, read_image(path, "L"))
    assert not np.array_equal(after, before)
    keys = {cache.key(path, "L"), cache.key(path, "BGR"), ImageCache("x", 32).key(path, "L")}
    assert len(keys) == 3


def test_max_size_shrinks_by_cached_size(tmp_path):
    path = str(tmp_path / "wide.png")
    import cv2

    cv2.imwrite(path, (np.arange(300 * 500) % 251).astype(np.uint8).reshape(300, 500))
    image = ImageCache(str(tmp_path / "c"), max_size=128).read(path, "BGR")
    assert image.shape == cached_size(300, 500, 128) + (3,) == (77, 128, 3)
    assert cached_size(100, 90, 128) == (100, 90)


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    path = str(tmp_path / "a.dcm")
    write_dicom(path, np.arange(64, dtype=np.uint8).reshape(8, 8))

    def full_disk(f, arr):
        f.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_cache.np, "save", full_disk)
    cache = ImageCache(str(tmp_path / "c"))
    assert np.array_equal(cache.read(path, "L"), read_image(path, "L"))  # the run goes on
    assert [f for _, _, fs in os.walk(tmp_path / "c") for f in fs] == []


def _mapper(cache_dir=None, max_size=0, is_train=True):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(cpu_config("mask_rcnn"))
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (128,), 1333
    cfg.INPUT.RANDOM_FLIP = "none"
    if cache_dir:
        cfg.CXR.DATA.IMAGE_CACHE.ENABLED = True
        cfg.CXR.DATA.IMAGE_CACHE.DIR = cache_dir
        cfg.CXR.DATA.IMAGE_CACHE.MAX_SIZE = max_size
    return CXRDatasetMapper(cfg, is_train=is_train)


def test_mapper_with_cache_gives_the_same_training_input(tiny_phantom, tmp_path):
    record = next(r for r in DatasetCatalog.get(f"{TINY}_train") if r["annotations"])
    plain = _mapper()(record)
    cached = _mapper(str(tmp_path / "c"))
    for _ in range(2):  # a miss, then a hit
        out = cached(record)
        assert torch.equal(out["image"], plain["image"])
        assert torch.equal(out["instances"].gt_boxes.tensor, plain["instances"].gt_boxes.tensor)
        assert torch.equal(out["instances"].gt_masks.tensor, plain["instances"].gt_masks.tensor)
    assert (cached.image_cache.misses, cached.image_cache.hits) == (1, 1)


def test_shrunk_cache_scales_annotations_and_keeps_the_original_size(tiny_phantom, tmp_path):
    record = next(r for r in DatasetCatalog.get(f"{TINY}_train") if r["annotations"])
    mapper = _mapper(str(tmp_path / "c"), max_size=64)
    mapper.augmentations.augs = []  # no resize of the mapper's own: see the cache's alone
    out = mapper(record)
    assert tuple(out["image"].shape[1:]) == (64, 64) and (out["height"], out["width"]) == (128, 128)
    expected = np.array([a["bbox"] for a in record["annotations"]]) * 0.5  # XYXY_ABS at 128 px
    assert np.allclose(out["instances"].gt_boxes.tensor.numpy(), expected)
    test_out = _mapper(str(tmp_path / "c"), 64, is_train=False)(record)
    assert (test_out["height"], test_out["width"]) == (128, 128)  # predictions rescaled to it


def test_cache_tool_fills_and_counts(tiny_phantom, tmp_path, capsys):
    assert cache_main([f"{TINY}_val", "--dir", str(tmp_path / "c"), "--max-size", "64"]) == 0
    n = len(DatasetCatalog.get(f"{TINY}_val"))
    assert f"{n} images: {n} decoded and stored, 0 already cached, 0 unreadable" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "c" / os.listdir(tmp_path / "c")[0])
    assert cache_main([f"{TINY}_val", "--dir", str(tmp_path / "c"), "--max-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "0 unreadable" in out and "already cached" in out and f"{n} decoded" not in out
