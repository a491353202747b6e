"""Every pretrained-start config merges, builds, and sets what its weights need."""
import glob
import os

import pytest
import torch
from detectron2.modeling import build_model

from cxr_d2.config import resolve_num_classes

from tests.helpers import REPO_ROOT, base_config

CONFIGS = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "Pretrained", "*.yaml"))
    if not os.path.basename(p).startswith("Base-")
)
# What each source's weights need (mean, std, format, STRIDE_IN_1X1 for ResNets).
MSRA = ([103.53, 116.28, 123.675], [1.0, 1.0, 1.0], "BGR", True)
FAIR = ([103.53, 116.28, 123.675], [57.375, 57.12, 58.395], "BGR", False)
TORCHVISION = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], "RGB", False)
XRV = ([127.5] * 3, [255 / 2048] * 3, "BGR", False)
DARKNET = ([0.0] * 3, [255.0] * 3, "RGB", None)


def expected(path):
    name = os.path.basename(path)
    if "torchvision" in name:
        return TORCHVISION[:3] + ((None,) if "VGG" in name else TORCHVISION[3:])
    if "xrv" in name:
        return XRV
    if "darknet" in name:
        return DARKNET
    return FAIR if "X_101" in name else MSRA


def test_there_is_a_start_per_architecture():
    names = " ".join(CONFIGS)
    for arch in ("faster_rcnn", "mask_rcnn", "retinanet", "fcos", "blendmask", "solov2"):
        for backbone in ("R_50", "R_101", "X_101_32x8d"):
            assert f"{arch}_{backbone}_FPN_ImageNet.yaml" in names
    for arch in ("faster_rcnn", "mask_rcnn", "retinanet"):
        assert f"{arch}_R_50_FPN_COCO.yaml" in names
    assert "ssd512_VGG16_torchvision.yaml" in names and "yolov3_608_DarkNet53_darknet" in names


@pytest.mark.parametrize("path", CONFIGS)
def test_pretrained_config_merges_builds_and_fits_its_weights(path):
    cfg = base_config(path)
    mean, std, fmt, stride_in_1x1 = expected(path)
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx(mean) and cfg.MODEL.PIXEL_STD == pytest.approx(std)
    assert cfg.INPUT.FORMAT == fmt
    if stride_in_1x1 is not None:
        assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is stride_in_1x1
        assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.BACKBONE.FREEZE_AT == 2
    weights = cfg.MODEL.WEIGHTS
    assert weights.startswith("detectron2://") or weights.startswith("weights/"), weights
    cfg.MODEL.WEIGHTS = ""  # tests never download
    cfg.MODEL.DEVICE = "meta"
    resolve_num_classes(cfg)
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
