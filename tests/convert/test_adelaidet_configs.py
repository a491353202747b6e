"""
The COCO-start configs of AdelaiDet's published checkpoints (configs/Pretrained/*_AdelaiDet_COCO.yaml)
build the published architecture: merged, shrunk by the parity fixtures' own overrides
(`../shared/parity/adelaidet_*/README.md`: R-18, 64-channel FPN and heads, 4 classes), the
model takes AdelaiDet's seeded checkpoint of that architecture, converted by
`tools/convert_weights.py --from adelaidet`, through MODEL.WEIGHTS's loader with no key missing,
unexpected or of another shape; and the keys that decide the weights' outputs (norms, mean/std,
FREEZE_AT, inference thresholds, NMS, top-k) equal the values AdelaiDet itself ran with (the
fixtures' `config.yaml`, read as plain YAML).
"""
import os

import pytest
import torch
import yaml
from detectron2.modeling import build_model

from cxr_d2.convert.cli import run
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import REPO_ROOT, SHARED, base_config

PARITY = os.path.join(SHARED, "parity")

# The fixtures' overrides of the published configs (each README's "Overrides" table), less the
# input size and device.
SHRINK = {
    "MODEL.RESNETS.DEPTH": 18, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64, "MODEL.FPN.OUT_CHANNELS": 64,
}  # fmt: skip
HEAD_OVERRIDES = {
    "fcos": {"MODEL.FCOS.NUM_CLASSES": 4},
    "blendmask": {
        "MODEL.FCOS.NUM_CLASSES": 4, "MODEL.BASIS_MODULE.NUM_CLASSES": 4,
        "MODEL.BASIS_MODULE.CONVS_DIM": 64,
    },
    "solov2": {
        "MODEL.SOLOV2.NUM_CLASSES": 4, "MODEL.SOLOV2.INSTANCE_IN_CHANNELS": 64,
        "MODEL.SOLOV2.INSTANCE_CHANNELS": 64, "MODEL.SOLOV2.MASK_IN_CHANNELS": 64,
        "MODEL.SOLOV2.MASK_CHANNELS": 32, "MODEL.SOLOV2.NUM_MASKS": 64,
        "MODEL.SOLOV2.NUM_KERNELS": 64,
    },
}  # fmt: skip
# config -> (fixture, AdelaiDet's published depth, the converted file MODEL.WEIGHTS names)
CONFIGS = {
    "fcos_R_50_FPN_AdelaiDet_COCO.yaml": ("fcos", 50, "weights/FCOS_R_50_1x_cxr.pth"),
    "fcos_R_101_FPN_AdelaiDet_COCO.yaml": ("fcos", 101, "weights/FCOS_MS_R_101_2x_cxr.pth"),
    "blendmask_R_50_FPN_AdelaiDet_COCO.yaml": ("blendmask", 50, "weights/BlendMask_R_50_1x_cxr.pth"),
    "blendmask_R_101_FPN_AdelaiDet_COCO.yaml": ("blendmask", 101, "weights/BlendMask_R_101_3x_cxr.pth"),
    "solov2_R_50_FPN_AdelaiDet_COCO.yaml": ("solov2", 50, "weights/SOLOv2_R50_3x_cxr.pth"),
}  # fmt: skip

# Keys whose value must be AdelaiDet's, per model (looked up in the fixture's config.yaml).
BACKBONE_KEYS = [
    "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNETS.NORM",
    "MODEL.RESNETS.STRIDE_IN_1X1", "MODEL.RESNETS.OUT_FEATURES", "MODEL.RESNETS.NUM_GROUPS",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "MODEL.FPN.NORM",
    "MODEL.FPN.IN_FEATURES", "MODEL.FPN.FUSE_TYPE", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
    "INPUT.FORMAT", "TEST.DETECTIONS_PER_IMAGE",
]  # fmt: skip
FCOS_KEYS = [
    f"MODEL.FCOS.{k}" for k in (
        "IN_FEATURES", "FPN_STRIDES", "TOP_LEVELS", "NORM", "NUM_CLS_CONVS", "NUM_BOX_CONVS",
        "NUM_SHARE_CONVS", "USE_SCALE", "BOX_QUALITY",
        "USE_DEFORMABLE", "THRESH_WITH_CTR", "INFERENCE_TH_TEST", "PRE_NMS_TOPK_TEST", "NMS_TH",
        "POST_NMS_TOPK_TEST", "LOSS_NORMALIZER_CLS", "SIZES_OF_INTEREST", "CENTER_SAMPLE",
        "POS_RADIUS",
    )
]  # fmt: skip
BLENDMASK_KEYS = [
    "MODEL.META_ARCHITECTURE", "MODEL.MASK_ON",
    *(f"MODEL.BASIS_MODULE.{k}" for k in (
        "NAME", "NORM", "NUM_BASES", "NUM_CONVS", "IN_FEATURES", "COMMON_STRIDE", "LOSS_ON",
    )),
    *(f"MODEL.BLENDMASK.{k}" for k in (
        "ATTN_SIZE", "TOP_INTERP", "BOTTOM_RESOLUTION", "POOLER_TYPE", "POOLER_SAMPLING_RATIO",
        "POOLER_SCALES",
    )),
]  # fmt: skip
SOLOV2_KEYS = [
    "MODEL.META_ARCHITECTURE", "MODEL.MASK_ON",
    *(f"MODEL.SOLOV2.{k}" for k in (
        "INSTANCE_IN_FEATURES", "FPN_INSTANCE_STRIDES", "NUM_GRIDS", "NUM_INSTANCE_CONVS",
        "USE_DCN_IN_INSTANCE", "USE_COORD_CONV", "MASK_IN_FEATURES", "NORM", "SCORE_THR",
        "MASK_THR", "NMS_PRE", "UPDATE_THR", "MAX_PER_IMG", "NMS_TYPE", "NMS_KERNEL", "NMS_SIGMA",
    )),
]  # fmt: skip
KEYS = {
    "fcos": BACKBONE_KEYS + FCOS_KEYS,
    "blendmask": BACKBONE_KEYS + FCOS_KEYS + BLENDMASK_KEYS,
    "solov2": BACKBONE_KEYS + SOLOV2_KEYS,
}
# Keys absent from AdelaiDet's config (cxr-d2's switches; FCOS's own keys for what AdelaiDet
# hard-codes: centerness on the box tower, stride-normalised regression): AdelaiDet's behaviour.
FCOS_OWN = {
    "MODEL.FCOS.TOWER_BIAS": True, "MODEL.FCOS.CLIP_BEFORE_NMS": False,
    "MODEL.FCOS.CENTERNESS_ON_REG": True, "MODEL.FCOS.NORM_REG_TARGETS": True,
}
OWN_KEYS = {
    "fcos": FCOS_OWN,
    "blendmask": {**FCOS_OWN, "MODEL.BASIS_MODULE.SEM_NORM": "BN"},
    "solov2": {"MODEL.SOLOV2.MIN_MASK_AREA": "cells", "MODEL.SOLOV2.MASK_UPSAMPLE": "probs"},
}  # fmt: skip


def fixture_dir(name):
    path = os.path.join(PARITY, f"adelaidet_{name}")
    if not os.path.isfile(os.path.join(path, "weights.pth")):
        pytest.skip(f"{path} is absent")
    return path


def lookup(tree, dotted):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def plain(value):
    """Tuples as lists, ints as floats: YAML's and CfgNode's spellings of one value compare."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def start_config(name, **over):
    return base_config(os.path.join(REPO_ROOT, "configs", "Pretrained", name), **over)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """fixture name -> the fixture's weights.pth converted by convert_weights --from adelaidet."""
    out, cache = tmp_path_factory.mktemp("adelaidet"), {}

    def convert(name):
        if name not in cache:
            src = os.path.join(fixture_dir(name), "weights.pth")
            with open(os.devnull, "w") as quiet:
                conversion = run("adelaidet", src, str(out / f"{name}_cxr.pth"), out=quiet)
            assert not conversion.unmapped and not conversion.dropped
            cache[name] = str(out / f"{name}_cxr.pth")
        return cache[name]

    return convert


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_coco_start_loads_adelaidets_checkpoint_strictly(config, converted):
    """With the fixture's overrides, the config's model has exactly the checkpoint's keys and
    shapes: every tensor loads through AtomicCheckpointer (MODEL.WEIGHTS's path), none missing,
    unexpected, reshaped or re-initialised, and the model then holds the checkpoint's values."""
    name, depth, weights = CONFIGS[config]
    cfg = start_config(config)
    assert cfg.MODEL.RESNETS.DEPTH == depth and cfg.MODEL.WEIGHTS == weights
    over = {**SHRINK, **HEAD_OVERRIDES[name], "MODEL.WEIGHTS": ""}
    cfg = start_config(config, **over)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = converted(name)
    checkpointer = AtomicCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(path))
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    state, loaded = model.state_dict(), torch.load(path, weights_only=True)["model"]
    assert set(state) == set(loaded)
    differ = [k for k, v in loaded.items() if not torch.equal(state[k], v)]
    assert differ == []


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_coco_start_keys_are_adelaidets(config):
    """Table-driven: each key that decides what the published weights compute equals the value
    in AdelaiDet's own config dump of that model; cxr-d2's switches are at AdelaiDet's
    behaviour."""
    name = CONFIGS[config][0]
    with open(os.path.join(fixture_dir(name), "config.yaml")) as f:
        reference = yaml.safe_load(f)
    cfg = start_config(config)
    differ = {
        key: (lookup(cfg, key), lookup(reference, key))
        for key in KEYS[name]
        if plain(lookup(cfg, key)) != plain(lookup(reference, key))
    }
    assert differ == {}, "ours, AdelaiDet's: " + str(differ)
    assert {k: lookup(cfg, k) for k in OWN_KEYS[name]} == OWN_KEYS[name]
