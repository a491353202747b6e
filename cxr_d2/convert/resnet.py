"""
torchvision / mmdetection ResNet and ResNeXt key names -> Detectron2's (`ResNet` of
`build_resnet_backbone`), as Detectron2's `tools/convert-torchvision-to-d2.py` maps them.
"""

import re

__all__ = ["resnet_key"]

_LAYER = re.compile(r"^layer([1-4])\.")


def resnet_key(key):
    """
    Detectron2's name of torchvision ResNet key `key` (e.g. `layer1.0.bn2.weight` ->
    `res2.0.conv2.norm.weight`, `conv1.weight` -> `stem.conv1.weight`), or None for what
    Detectron2's ResNet has no counterpart of (`fc.*`, `num_batches_tracked`).
    """
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
        return None
    m = _LAYER.match(key)
    if not m:
        return "stem." + key.replace("bn1.", "conv1.norm.")
    key = f"res{int(m.group(1)) + 1}." + key[m.end():]
    for j in (1, 2, 3):
        key = key.replace(f"bn{j}.", f"conv{j}.norm.")
    return key.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
