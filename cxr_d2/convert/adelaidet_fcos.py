"""
AdelaiDet FCOS and BlendMask state dicts (AdelaiDet 36721221 key names) -> cxr-d2's
(`cxr_d2.modeling.FCOS` / `OneStageDetector`, `cxr_d2.modeling.BlendMask`).

| AdelaiDet                                         | cxr-d2                                    |
|---------------------------------------------------|-------------------------------------------|
| `backbone.*` (ResNet `bottom_up`, FPN, top block) | unchanged                                 |
| `proposal_generator.fcos_head.<rest>`             | `head.<rest>` (towers with their biases,  |
|                                                   | per-level BN, logits, `scales.i.scale`)   |
| `top_layer.{weight,bias}`                         | `top_layer.conv.{weight,bias}`            |
| `basis_module.{refine,tower}.<i>.0.<p>`           | `basis_module.{refine,tower}.<i>.<p>`     |
| `basis_module.{refine,tower}.<i>.1.<p>`           | `basis_module.{refine,tower}.<i>.norm.<p>`|
| `basis_module.tower.<last>.<p>` (1x1 to bases)    | unchanged                                 |
| `basis_module.seg_head.{0,1,3,4,6}.<p>`           | `basis_module.seg_head.{0,0.norm,1,1.norm,2}.<p>` |

The models must be built with MODEL.FCOS.TOWER_BIAS True (the default) for the tower biases
to load, and with MODEL.BASIS_MODULE.LOSS_ON True when the checkpoint has a semantic head.
"""

import re

__all__ = ["convert_fcos", "fcos_key"]

_FCOS_HEAD = "proposal_generator.fcos_head."
# AdelaiDet's conv_with_kaiming_uniform block: Sequential(conv, norm, ReLU) -> our Conv2d with
# `.norm`. A block without norm is a bare conv there (no `.0.`), so it needs no renaming.
_BLOCK = re.compile(r"^basis_module\.(refine|tower)\.(\d+)\.([01])\.(.+)$")
# seg_head: Sequential(conv, BN, ReLU, conv, BN, ReLU, conv) -> three conv blocks.
_SEG_HEAD = {"0": "0", "1": "0.norm", "3": "1", "4": "1.norm", "6": "2"}
_SEG = re.compile(r"^basis_module\.seg_head\.(\d+)\.(.+)$")


def fcos_key(key):
    """cxr-d2's name of AdelaiDet FCOS/BlendMask key `key`, or None for a key it does not know."""
    if key.startswith("backbone."):
        return key
    if key.startswith(_FCOS_HEAD):
        return "head." + key[len(_FCOS_HEAD):]
    if key.startswith("top_layer."):
        return "top_layer.conv." + key[len("top_layer."):]
    m = _BLOCK.match(key)
    if m:
        part, index, sub, rest = m.groups()
        return f"basis_module.{part}.{index}.{'norm.' if sub == '1' else ''}{rest}"
    if re.match(r"^basis_module\.tower\.\d+\.(weight|bias)$", key):
        return key  # the last 1x1 conv (no norm)
    m = _SEG.match(key)
    if m and m.group(1) in _SEG_HEAD:
        return f"basis_module.seg_head.{_SEG_HEAD[m.group(1)]}.{m.group(2)}"
    return None


def convert_fcos(state, **options):
    """
    Args:
        state: an AdelaiDet FCOS or BlendMask state dict (the checkpoint's "model").
        options: none are read (accepted for the `convert_checkpoint` interface).
    Returns:
        :class:`cxr_d2.convert.Conversion`: every key mapped or listed in `unmapped` (a
        key of another AdelaiDet model, e.g. CondInst's `controller`, MEInst's `mask_head`).
    """
    from . import Conversion

    out = Conversion()
    for key, value in state.items():
        new = fcos_key(key)
        if new is None:
            out.unmapped.append(key)
        else:
            out.add(key, new, value)
    if any(k.endswith(".bias") and "_tower." in k for k in out.model):
        out.notes.append(
            "the FCOS tower convs have biases (AdelaiDet): build the model with "
            "MODEL.FCOS.TOWER_BIAS True (the default)"
        )
    return out
