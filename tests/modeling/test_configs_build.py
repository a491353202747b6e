"""Every config under configs/ and projects/SipMask/configs/ builds its model."""
import glob
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY, build_model

from cxr_d2.config import add_cxr_config, resolve_num_classes
from cxr_d2.engine.projects import project_config_fns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _configs():
    found = []
    for folder in ("configs", os.path.join("projects", "SipMask", "configs")):
        pattern = os.path.join(ROOT, folder, "**", "*.yaml")
        found += sorted(os.path.relpath(p, ROOT) for p in glob.glob(pattern, recursive=True))
    return [p for p in found if not os.path.basename(p).startswith("Base-")]


CONFIGS = _configs()
# In the default suite: the CPU configs and one config per architecture with the paper's
# backbone (R-50; SipMask++ for the deformable backbone and mask scoring); the rest are
# R-101 / X-101 / ablation variants of these.
# The per-dataset experiments (configs/<dataset>/, configs/Pretrained-paper/) repeat these
# architectures: tests/config/test_dataset_configs.py builds a subset of them by default.
DEFAULT = {
    p for p in CONFIGS
    if p.startswith(("configs/Phantom/", "configs/Pretrained/", "projects/"))
    and (p.endswith("_cpu.yaml") or os.path.basename(p) in {
        "faster_rcnn_R_50_FPN.yaml", "mask_rcnn_R_50_FPN.yaml", "retinanet_R_50_FPN.yaml",
        "fcos_R_50_FPN.yaml", "blendmask_R_50_FPN.yaml", "solov2_R_50_FPN.yaml",
        "ssd512_VGG16.yaml", "yolov3_608_DarkNet53.yaml", "sipmask++_R_50_FPN_544.yaml",
    })
}  # fmt: skip


def _cfg(path):
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_project_config in project_config_fns():
        add_project_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, path))
    resolve_num_classes(cfg)
    return cfg


def test_the_lists_cover_every_architecture():
    archs = {_cfg(p).MODEL.META_ARCHITECTURE for p in DEFAULT}
    assert archs == {
        "GeneralizedRCNN", "RetinaNet", "FCOS", "BlendMask", "SOLOv2", "SSD", "YOLOv3", "SipMask",
        "SipMaskVIS",
    }  # fmt: skip
    assert len(CONFIGS) > len(DEFAULT) >= 14


@pytest.mark.parametrize(
    "path", [p if p in DEFAULT else pytest.param(p, marks=pytest.mark.slow) for p in CONFIGS]
)
def test_config_builds_its_model(path):
    """Built on the meta device (shapes, no memory, no initialisation cost): every module's
    construction and config checks run; the parameter count rules out an empty model."""
    cfg = _cfg(path)
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        model = build_model(cfg)
    assert type(model) is META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
