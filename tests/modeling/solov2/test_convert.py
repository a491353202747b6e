"""AdelaiDet SOLOv2 key names -> cxr-d2's for both of AdelaiDet's tower layouts: with GN
([conv, GN, ReLU] per layer, the parity fixture's) and with NORM "none" ([conv + bias, ReLU])."""

import re

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from cxr_d2.config import add_cxr_config
from cxr_d2.convert import convert_checkpoint

CONFIG = "configs/Phantom/solov2_R_18_FPN_cpu.yaml"


def _model(norm):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.SOLOV2.NUM_CLASSES", "4", "MODEL.SOLOV2.NORM", norm])
    return build_model(cfg)


def _adelaidet_name(key, per_layer):
    """AdelaiDet's name of cxr-d2 SOLOv2 key `key`, written out by hand from
    adet/modeling/solov2/solov2.py (`per_layer`: modules per tower layer, 3 with GN, 2 without)."""
    m = re.match(r"head\.(cate|kernel)_tower\.(\d+)\.(norm\.)?(\w+)$", key)
    if m:
        index = per_layer * int(m.group(2)) + (1 if m.group(3) else 0)
        return f"ins_head.{m.group(1)}_tower.{index}.{m.group(4)}"
    if key.startswith("head."):
        return "ins_head." + key[len("head."):]
    m = re.match(r"mask_branch\.levels\.(\d+)\.(\d+)\.(norm\.)?(\w+)$", key)
    if m:
        level, conv, part = m.group(1), int(m.group(2)) // 2, 1 if m.group(3) else 0
        return f"mask_head.convs_all_levels.{level}.conv{conv}.{part}.{m.group(4)}"
    m = re.match(r"mask_branch\.pred\.(norm\.)?(\w+)$", key)
    if m:
        return f"mask_head.conv_pred.{1 if m.group(1) else 0}.{m.group(2)}"
    return key  # backbone.*


def test_both_tower_layouts_map_back_to_every_key():
    for norm, per_layer in (("GN", 3), ("none", 2)):
        model = _model(norm)
        ours = model.state_dict()
        theirs = {_adelaidet_name(k, per_layer): v for k, v in ours.items()}
        conversion = convert_checkpoint("adelaidet", {"model": theirs})
        assert conversion.unmapped == [] and conversion.dropped == []
        assert sorted(conversion.model) == sorted(ours), norm
        model.load_state_dict(conversion.model, strict=True)
        if norm == "none":
            assert "head.cate_tower.0.bias" in conversion.model
            assert "mask_branch.levels.3.2.bias" in conversion.model  # conv1 of level 3


def test_unknown_keys_are_reported_not_mapped():
    state = {"ins_head.cate_pred.weight": torch.zeros(4, 8, 3, 3), "mask_head.x.w": torch.ones(1)}
    conversion = convert_checkpoint("adelaidet", {"model": state})
    assert conversion.unmapped == ["mask_head.x.w"]
    assert list(conversion.model) == ["head.cate_pred.weight"]
