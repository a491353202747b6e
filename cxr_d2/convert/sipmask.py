"""
Official SipMask checkpoints (JialeCao001/SipMask, SipMask-mmdetection: mmdetection 1.x
`{"state_dict": ..., "meta": ...}`) -> cxr-d2's SipMask (`projects/SipMask`), for
`projects/SipMask/configs/official/sipmask_R_50_caffe_FPN_GN_1x.yaml`.

| official | cxr-d2 |
|---|---|
| `backbone.*` (mmdet ResNet) | `backbone.bottom_up.*` (:func:`resnet_key`) |
| `neck.lateral_convs.i.conv.*`, `neck.fpn_convs.i.conv.*` (i < 3) | `backbone.fpn_lateral{i+3}.*`, `backbone.fpn_output{i+3}.*` |
| `neck.fpn_convs.{3,4}.conv.*` | `backbone.top_block.p{6,7}.*` |
| `bbox_head.cls_convs.i.conv.weight`, `.gn.*` (`reg_convs` alike) | `head.cls_tower.{3i}.weight`, `.{3i+1}.*` (`bbox_tower`) |
| `bbox_head.fcos_{cls,reg,centerness}.*` | `head.{cls_logits,bbox_pred,ctrness}.*` |
| `bbox_head.scales.i.scale` () | `head.scales.i.scale` (1,) |
| `bbox_head.feat_align.conv_adaption.weight`, `.conv_offset.weight`, `.norm.*` | `head.feature_align.weight`, `.offset.weight`, `.norm.*` |
| `bbox_head.sip_cof.*` | `head.coefficients.*` (TL, TR, BL, BR = row-major) |
| `bbox_head.sip_mask_lat0.*` (1x1), `sip_mask_lat.*` (3x3) | `head.basis_module.conv.*`, `.out.*` |
| SipMask++: `bbox_head.convs_scoring.i.conv.*`, `mask_scoring.*` | `mask_iou_head.convs.{2i}.*`, `mask_iou_head.predictor.*` |

Dropped: the BN counters `num_batches_tracked` (Detectron2's FrozenBN has none).
"""

import re

from ..errors import CXRError
from . import Conversion
from .resnet import resnet_key

__all__ = ["convert", "sipmask_key"]

_HEAD = {
    "fcos_cls.": "cls_logits.",
    "fcos_reg.": "bbox_pred.",
    "fcos_centerness.": "ctrness.",
    "sip_cof.": "coefficients.",
    "sip_mask_lat0.": "basis_module.conv.",
    "sip_mask_lat.": "basis_module.out.",
    "feat_align.conv_adaption.": "feature_align.",
    "feat_align.conv_offset.": "feature_align.offset.",
    "feat_align.norm.": "feature_align.norm.",
}
_TOWER = re.compile(r"^(cls|reg)_convs\.(\d+)\.(conv|gn)\.(.+)$")
_NECK = re.compile(r"^(lateral|fpn)_convs\.(\d+)\.conv\.(.+)$")
_SCORING = re.compile(r"^convs_scoring\.(\d+)\.conv\.(.+)$")


def _neck_key(key):
    m = _NECK.match(key)
    if not m:
        return None
    kind, i, rest = m.group(1), int(m.group(2)), m.group(3)
    if kind == "lateral":
        return f"backbone.fpn_lateral{i + 3}.{rest}"
    if i < 3:
        return f"backbone.fpn_output{i + 3}.{rest}"
    return f"backbone.top_block.p{i + 3}.{rest}"


def _head_key(key):
    m = _TOWER.match(key)
    if m:
        tower = "cls_tower" if m.group(1) == "cls" else "bbox_tower"
        index = 3 * int(m.group(2)) + (0 if m.group(3) == "conv" else 1)
        return f"head.{tower}.{index}.{m.group(4)}"
    if key.startswith("scales."):
        return "head." + key
    for src, dst in _HEAD.items():
        if key.startswith(src):
            return "head." + dst + key[len(src):]
    m = _SCORING.match(key)
    if m:  # conv_block layers: conv, ReLU per stride-2 conv
        return f"mask_iou_head.convs.{2 * int(m.group(1))}.{m.group(2)}"
    if key.startswith("mask_scoring."):
        return "mask_iou_head.predictor." + key[len("mask_scoring."):]
    return None


def sipmask_key(key):
    """cxr-d2's name of official SipMask key `key`, or None when it has none."""
    prefix, _, rest = key.partition(".")
    if prefix == "backbone":
        name = resnet_key(rest)
        return None if name is None else "backbone.bottom_up." + name
    if prefix == "neck":
        return _neck_key(rest)
    if prefix == "bbox_head":
        return _head_key(rest)
    return None


def convert(checkpoint, **options):
    """
    Args:
        checkpoint: the official `.pth` as `torch.load` returns it (`{"state_dict": ...}`), or
            the state dict itself.
    Returns:
        a :class:`Conversion`: the 0-d `scales.i.scale` reshaped to (1,); `num_batches_tracked`
        dropped; anything else unknown in `unmapped`.
    """
    if not isinstance(checkpoint, dict):
        raise CXRError("an official SipMask checkpoint is a dict {'state_dict': ...}")
    state = checkpoint.get("state_dict", checkpoint)
    if not any(k.startswith("bbox_head.") for k in state):
        raise CXRError("not an official SipMask checkpoint: no bbox_head.* keys in its "
                       "state_dict")
    out = Conversion()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            out.drop(key, "BN step counter; Detectron2's FrozenBN keeps none")
            continue
        name = sipmask_key(key)
        if name is None:
            out.unmapped.append(key)
            continue
        if key.startswith("bbox_head.scales.") and value.dim() == 0:
            value = value.reshape(1)
        out.add(key, name, value)
    if any(k.startswith("bbox_head.convs_scoring.") for k in state):
        out.notes.append("SipMask++ mask scoring: set MODEL.SIPMASK.MASK_SCORING.ENABLED True")
    return out
