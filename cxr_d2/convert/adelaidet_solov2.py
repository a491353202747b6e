"""
AdelaiDet SOLOv2 state dict (`adet/modeling/solov2/solov2.py`) -> cxr-d2's `SOLOv2` keys.

| AdelaiDet | cxr-d2 |
|---|---|
| `backbone.*` | unchanged (both are Detectron2's `build_resnet_fpn_backbone`) |
| `ins_head.<b>_tower.<k>.*` (b: cate, kernel) | `head.<b>_tower.<j>.*` (conv j), `.<j>.norm.*` |
| `ins_head.{cate,kernel}_pred.*` | `head.{cate,kernel}_pred.*` |
| `mask_head.convs_all_levels.<i>.conv<j>.0.*` | `mask_branch.levels.<i>.<2j>.*` (2j + 1: 2x up) |
| `mask_head.convs_all_levels.<i>.conv<j>.1.*` | `mask_branch.levels.<i>.<2j>.norm.*` |
| `mask_head.conv_pred.0.*` / `.1.*` | `mask_branch.pred.*` / `mask_branch.pred.norm.*` |

AdelaiDet's towers are `nn.Sequential`s of [conv, GN, ReLU] per layer with `NORM "GN"` and
[conv, ReLU] with `NORM "none"` (the conv then has a bias), so the tower index of conv j is
found from the layout: the 4-D weights are the convs, in order, and a 1-D weight after a conv
is its norm.
"""

import re

from . import Conversion

__all__ = ["convert_solov2"]

_TOWER = re.compile(r"^ins_head\.(cate|kernel)_tower\.(\d+)\.(.+)$")
_PRED = re.compile(r"^ins_head\.((?:cate|kernel)_pred\..+)$")
_LEVEL = re.compile(r"^mask_head\.convs_all_levels\.(\d+)\.conv(\d+)\.([01])\.(.+)$")
_MASK_PRED = re.compile(r"^mask_head\.conv_pred\.([01])\.(.+)$")


def _tower_names(state):
    """
    {AdelaiDet tower key: cxr-d2 key} for both instance towers, from the layout of the
    `nn.Sequential` indices (conv j = the j-th index holding a 4-D weight; the index after it
    holding a 1-D weight is its norm).
    """
    layers = {}  # (branch, index) -> ndim of its weight
    for key, value in state.items():
        m = _TOWER.match(key)
        if m and m.group(3) == "weight":
            layers[(m.group(1), int(m.group(2)))] = value.dim()
    prefix = {}  # (branch, index) -> cxr-d2 module name
    for branch in ("cate", "kernel"):
        j = -1
        for index in sorted(i for b, i in layers if b == branch):
            if layers[(branch, index)] == 4:
                j += 1
                prefix[(branch, index)] = f"head.{branch}_tower.{j}"
            elif j >= 0:
                prefix[(branch, index)] = f"head.{branch}_tower.{j}.norm"
    names = {}
    for key in state:
        m = _TOWER.match(key)
        if m and (m.group(1), int(m.group(2))) in prefix:
            names[key] = f"{prefix[(m.group(1), int(m.group(2)))]}.{m.group(3)}"
    return names


def solov2_key(key, tower_names):
    """cxr-d2's name of AdelaiDet SOLOv2 key `key`, or None when it has none."""
    if key.startswith("backbone."):
        return key
    if key in tower_names:
        return tower_names[key]
    m = _PRED.match(key)
    if m:
        return "head." + m.group(1)
    m = _LEVEL.match(key)
    if m:
        level, j, part, leaf = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        return f"mask_branch.levels.{level}.{2 * j}.{'norm.' if part == '1' else ''}{leaf}"
    m = _MASK_PRED.match(key)
    if m:
        return f"mask_branch.pred.{'norm.' if m.group(1) == '1' else ''}{m.group(2)}"
    return None


def convert_solov2(state, **options):
    """
    Args:
        state (dict[str, Tensor]): AdelaiDet's SOLOv2 `model` state dict.
        options: none are used (accepted for `convert_checkpoint`'s uniform call).

    Returns:
        Conversion: every key mapped to cxr-d2's `SOLOv2`, or listed in `unmapped`.
    """
    out = Conversion()
    tower_names = _tower_names(state)
    for key, value in state.items():
        name = solov2_key(key, tower_names)
        if name is None:
            out.unmapped.append(key)
        else:
            out.add(key, name, value)
    return out
