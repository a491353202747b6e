"""
Detectron2 model-zoo checkpoints -> cxr-d2.

cxr-d2's R-CNNs and RetinaNet ARE Detectron2's, so a Detectron2-named checkpoint (the model
zoo's `model_final_*.pkl`, or a `.pth` a Detectron2 run wrote) keeps its keys: the conversion
turns NumPy arrays into tensors, drops the solver state and writes a `.pth` whose load needs no
name-matching heuristics. A Caffe2-named ImageNet backbone (`ImageNetPretrained/MSRA/R-50.pkl`,
`R-101.pkl`, `FAIR/X-101-32x8d.pkl`: `res2_0_branch2a_w`, ...) is renamed with Detectron2's own
rules (`convert_c2_detectron_names`) under `backbone.bottom_up.`, its `fc1000` dropped.

Either can also be given straight to `MODEL.WEIGHTS` (`detectron2://...` or a local `.pkl`):
Detectron2's checkpointer then aligns names by suffix, and cxr-d2's checks on norms and shapes
(:mod:`cxr_d2.engine.checkpoint`) apply in both cases.
"""

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import convert_c2_detectron_names

from ..errors import CXRError
from . import Conversion

__all__ = ["convert"]

BACKBONE_PREFIX = "backbone.bottom_up."


def _tensor(value):
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


def convert(checkpoint, *, prefix=BACKBONE_PREFIX, **options):
    """A Detectron2 checkpoint dict (`load_pkl_weights`' or torch.load's) -> Conversion."""
    if not isinstance(checkpoint, dict):
        raise CXRError("a Detectron2 checkpoint is a dict {'model': state_dict, ...}")
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, dict):
        raise CXRError("a Detectron2 checkpoint's 'model' entry is a dict of weights")
    conv = Conversion()
    for key in checkpoint:
        if key not in ("model", "__author__", "matching_heuristics") and state is not checkpoint:
            conv.drop(key, "training state (optimizer, scheduler, iteration), not weights")
    if checkpoint.get("__author__") == "Caffe2":
        return _convert_caffe2(state, conv, prefix)
    for key, value in state.items():
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            conv.unmapped.append(key)
        elif key.endswith("num_batches_tracked"):
            conv.drop(key, "BatchNorm step counter (not a weight)")
        else:
            conv.add(key, key, _tensor(value))
    return conv


def _convert_caffe2(state, conv, prefix):
    """Caffe2 names -> Detectron2's, under `prefix` (ImageNet backbones)."""
    renamed, original = convert_c2_detectron_names(dict(state))
    for key, value in renamed.items():
        src = original.get(key, key)
        if key.startswith("fc1000"):
            conv.drop(src, "ImageNet classifier (Detectron2's ResNet has no fc)")
        elif key.startswith(("stem.", "res2.", "res3.", "res4.", "res5.")):
            conv.add(src, prefix + key, _tensor(value))
        else:
            conv.unmapped.append(src)
    conv.notes.append(
        "Caffe2/MSRA layout: MODEL.RESNETS.STRIDE_IN_1X1 True (MSRA) or False (FAIR X-101), "
        "INPUT.FORMAT BGR, PIXEL_MEAN [103.53, 116.28, 123.675], PIXEL_STD [1, 1, 1] (MSRA) or "
        "[57.375, 57.12, 58.395] (FAIR); configs/Pretrained/ set them"
    )
    return conv
