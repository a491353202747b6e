"""
torchvision ImageNet checkpoints -> cxr-d2: ResNet / ResNeXt (`torchvision.models.resnet*`,
`resnext*`) into Detectron2's `ResNet` (`backbone.bottom_up.` of the FPN backbones), VGG16 and
VGG16-BN (`torchvision.models.vgg16[_bn]`) into SSD's :class:`SSDVGG` (`backbone.`).

The features equal torchvision's only with torchvision's preprocessing and block layout: RGB
input, mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) in 0-255 units, and for
ResNets `MODEL.RESNETS.STRIDE_IN_1X1 False` (torchvision strides in the 3x3 conv) and a BN-type
norm (`FrozenBN` or `BN`); `configs/Pretrained/*torchvision*` set them.
"""

import re

import torch

from ..errors import CXRError
from . import Conversion
from .resnet import resnet_key

__all__ = ["convert", "convert_resnet", "convert_vgg16"]

RESNET_PREFIX = "backbone.bottom_up."
VGG_PREFIX = "backbone."
# Convs per VGG16 stage (conv1_x ... conv5_x), as cxr_d2.modeling.backbone.vgg.
_VGG16_DEPTHS = (2, 2, 3, 3, 3)
_FEATURE = re.compile(r"^features\.(\d+)\.(\w+)$")


def state_dict_of(checkpoint):
    """The state dict inside a torchvision-style checkpoint: the dict itself, or its "state_dict"
    or "model" entry; a "module." (DataParallel) prefix removed."""
    state = checkpoint
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state:
        raise CXRError("not a torchvision checkpoint: expected a dict of tensors (a state_dict)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def convert(checkpoint, *, prefix=None, **options):
    """A torchvision ResNet/ResNeXt or VGG16(-BN) state dict -> :class:`Conversion`."""
    state = state_dict_of(checkpoint)
    if any(k.startswith("features.") for k in state):
        return convert_vgg16(state, prefix=VGG_PREFIX if prefix is None else prefix, **options)
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
        return convert_resnet(state, prefix=RESNET_PREFIX if prefix is None else prefix)
    raise CXRError(
        "not a torchvision ResNet/ResNeXt (conv1., layer1. keys) or VGG16 (features. keys) "
        "state dict"
    )


def convert_resnet(state, *, prefix=RESNET_PREFIX):
    """torchvision ResNet/ResNeXt keys -> `prefix` + Detectron2's (see :func:`resnet_key`)."""
    conv = Conversion()
    for key, value in state.items():
        if key.startswith("fc."):
            conv.drop(key, "ImageNet classifier (Detectron2's ResNet has no fc)")
            continue
        if key.endswith("num_batches_tracked"):
            conv.drop(key, "BatchNorm step counter (not a weight)")
            continue
        if not key.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
            conv.unmapped.append(key)
            continue
        conv.add(key, prefix + resnet_key(key), value)
    conv.notes.append(
        "torchvision layout: set MODEL.RESNETS.STRIDE_IN_1X1 False, INPUT.FORMAT RGB, "
        "PIXEL_MEAN [123.675, 116.28, 103.53], PIXEL_STD [58.395, 57.12, 57.375] "
        "(configs/Pretrained/ do)"
    )
    return conv


def _vgg_layers(state):
    """[(index, {param: tensor})] of `features.<index>.<param>` in index order; other keys
    are returned apart: (layers, other keys)."""
    layers, other = {}, []
    for key, value in state.items():
        m = _FEATURE.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = (key, value)
        else:
            other.append(key)
    return sorted(layers.items()), other


def convert_vgg16(state, *, prefix=VGG_PREFIX, reduce_fc=True):
    """
    torchvision VGG16 (`features.<i>` convs) or VGG16-BN (conv + BatchNorm pairs) -> SSDVGG's
    `stages.<s>.<i>.` keys. A conv followed by BN has its bias folded into the BN's running
    mean (SSDVGG's normalised convs have no bias; exact in eval mode, and a batch-statistics BN
    cancels any bias). With `reduce_fc`, the classifier's fc6 (25088 -> 4096) and fc7 (4096 ->
    4096) become SSD's atrous fc6 (3x3, 1024) and fc7 (1x1, 1024) by sub-sampling, as SSD's
    `VGG_ILSVRC_16_layers_fc_reduced` (every 4th filter, every 3rd tap of the 7x7 kernel).
    """
    conv = Conversion()
    layers, other = _vgg_layers(state)
    slots = [f"stages.{s}.{i}." for s, depth in enumerate(_VGG16_DEPTHS) for i in range(depth)]
    convs = [(idx, p) for idx, p in layers if p.get("weight", (None, torch.zeros(0)))[1].dim() == 4]
    if len(convs) != len(slots):
        raise CXRError(f"a VGG16 has {len(slots)} convs in features.; this one has {len(convs)}")
    conv_slot = {idx: slot for (idx, _), slot in zip(convs, slots)}
    last_bias = {}
    for idx, params in layers:
        if idx in conv_slot:
            slot = prefix + conv_slot[idx]
            last = (slot, params.get("bias"))
            conv.add(params["weight"][0], slot + "weight", params["weight"][1])
        elif "running_mean" in params:
            slot, bias = last
            for name, (key, value) in params.items():
                if name == "num_batches_tracked":
                    conv.drop(key, "BatchNorm step counter (not a weight)")
                    continue
                if name == "running_mean" and bias is not None:
                    value = value - bias[1]
                    conv.drop(bias[0], f"folded into {slot}norm.running_mean (no conv bias before a norm)")
                    last_bias[slot] = True
                conv.add(key, f"{slot}norm.{name}", value)
        else:
            conv.unmapped.extend(key for key, _ in params.values())
    for idx, params in convs:
        slot = prefix + conv_slot[idx]
        if "bias" in params and slot not in last_bias:
            conv.add(params["bias"][0], slot + "bias", params["bias"][1])
    _convert_classifier(conv, state, other, prefix, reduce_fc)
    conv.notes.append(
        "torchvision VGG: set INPUT.FORMAT RGB, PIXEL_MEAN [123.675, 116.28, 103.53], "
        "PIXEL_STD [58.395, 57.12, 57.375] and MODEL.VGG.NORM '' (vgg16) or BN/FrozenBN (vgg16_bn)"
    )
    return conv


def _convert_classifier(conv, state, keys, prefix, reduce_fc):
    """classifier.0 (fc6), .3 (fc7) -> reduced atrous fc6/fc7; .6 (fc8) dropped."""
    for key in keys:
        value = state[key]
        if key.startswith("classifier.6."):
            conv.drop(key, "ImageNet classifier fc8 (SSD has its own heads)")
        elif key.startswith(("classifier.0.", "classifier.3.")) and not reduce_fc:
            conv.drop(key, "fully-connected fc6/fc7 (reduce_fc off: SSD's fc6/fc7 start fresh)")
        elif key == "classifier.0.weight":  # (4096, 512 * 7 * 7)
            conv.add(key, prefix + "fc6.weight", value.view(4096, 512, 7, 7)[::4, :, ::3, ::3].clone())
        elif key == "classifier.3.weight":  # (4096, 4096)
            conv.add(key, prefix + "fc7.weight", value[::4, ::4, None, None].clone())
        elif key in ("classifier.0.bias", "classifier.3.bias"):
            name = "fc6" if key.startswith("classifier.0.") else "fc7"
            conv.add(key, f"{prefix}{name}.bias", value[::4].clone())
        else:
            conv.unmapped.append(key)
    if reduce_fc and "classifier.0.weight" in state:
        conv.notes.append(
            "fc6/fc7 reduced to 1024 channels as SSD's fc_reduced VGG (MODEL.VGG.FC_CHANNELS 1024)"
        )
