"""
Darknet's binary weights (`darknet53.conv.74`, the ImageNet Darknet-53 YOLOv3 starts from) ->
cxr-d2's :class:`~cxr_d2.modeling.backbone.darknet.Darknet` (`backbone.`).

The format (darknet's `parser.c`, `save_weights_upto`): three int32 (major, minor, revision),
`seen` as int64 when major * 10 + minor >= 2 (int32 before), then every conv layer of the cfg
in order as float32: with batch_normalize, biases (BN beta), scales (gamma), rolling mean,
rolling variance, each of length `filters`, then the weights (filters, channels, k, k); without,
biases then weights. Shortcut and route layers hold nothing. Darknet-53's 52 convs in cfg order
are the stem, then per stage the 3x3/2 conv and each residual block's 1x1 and 3x3, which is the
module order of our Darknet. Darknet's BN adds its epsilon (1e-6) to the standard deviation,
PyTorch's (1e-5) to the variance: features agree to about 1e-5 relative.
"""

import numpy as np
import torch

from ..errors import CXRError
from . import Conversion

__all__ = ["convert", "darknet_convs", "read_darknet"]

PREFIX = "backbone."


def read_darknet(path):
    """
    Read a Darknet weights file with NumPy.

    Returns:
        dict: {"version": (major, minor, revision), "seen": int, "weights": float32 array}.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16:
        raise CXRError(f"{path}: {len(data)} bytes is too short for a Darknet weights file")
    major, minor, revision = (int(v) for v in np.frombuffer(data, np.int32, 3))
    if not (0 <= major < 1000 and 0 <= minor < 1000):
        raise CXRError(f"{path}: not a Darknet weights file (version {major}.{minor}.{revision})")
    seen_bytes = 8 if major * 10 + minor >= 2 else 4
    seen = int(np.frombuffer(data, np.int64 if seen_bytes == 8 else np.int32, 1, 12)[0])
    body = data[12 + seen_bytes:]
    if len(body) % 4:
        raise CXRError(f"{path}: its weights are not whole float32 values (cut short?)")
    weights = np.frombuffer(body, np.float32).copy()
    return {"version": (major, minor, revision), "seen": seen, "weights": weights}


def darknet_convs(num_blocks=(1, 2, 8, 8, 4), stem_out_channels=32, in_channels=3):
    """
    The convs of Darknet (Darknet-53 by default) in cfg order, each (our key prefix, filters,
    channels, kernel size), all batch-normalised.
    """
    convs = [("stem.", stem_out_channels, in_channels, 3)]
    ch = stem_out_channels
    for k, n in enumerate(num_blocks):
        convs.append((f"dark{k + 1}.0.", ch * 2, ch, 3))
        ch *= 2
        for j in range(1, n + 1):
            convs.append((f"dark{k + 1}.{j}.conv1.", ch // 2, ch, 1))
            convs.append((f"dark{k + 1}.{j}.conv2.", ch, ch // 2, 3))
    return convs


def convert(checkpoint, *, prefix=PREFIX, num_blocks=(1, 2, 8, 8, 4), stem_out_channels=32,
            **options):  # fmt: skip
    """
    :func:`read_darknet`'s dict -> :class:`Conversion` into Darknet's keys (`norm` = BN).
    Floats after the last backbone conv (a full `yolov3.weights` holds the YOLO layers too)
    are reported as unmapped.
    """
    if not isinstance(checkpoint, dict) or "weights" not in checkpoint:
        raise CXRError("a Darknet checkpoint is read by cxr_d2.convert.darknet.read_darknet")
    w = checkpoint["weights"]
    conv, at = Conversion(), 0
    for name, filters, channels, k in darknet_convs(num_blocks, stem_out_channels):
        parts = [("norm.bias", (filters,)), ("norm.weight", (filters,)),
                 ("norm.running_mean", (filters,)), ("norm.running_var", (filters,)),
                 ("weight", (filters, channels, k, k))]  # fmt: skip
        for param, shape in parts:
            n = int(np.prod(shape))
            if at + n > w.size:
                raise CXRError(
                    f"the Darknet file ends inside conv {name} ({w.size} floats); it is not "
                    f"Darknet-53's {list(num_blocks)} (darknet53.conv.74) or it is cut short"
                )
            conv.add(f"float32[{at}:{at + n}]", prefix + name + param,
                     torch.from_numpy(w[at:at + n].reshape(shape).copy()))  # fmt: skip
            at += n
    if at < w.size:
        conv.unmapped.append(f"float32[{at}:{w.size}] (layers after Darknet-53's 52 convs)")
    conv.notes.append(
        f"Darknet {'.'.join(map(str, checkpoint.get('version', ())))}, seen "
        f"{checkpoint.get('seen')} images; set MODEL.DARKNET.NORM BN or FrozenBN, INPUT.FORMAT "
        "RGB, PIXEL_MEAN [0, 0, 0], PIXEL_STD [255, 255, 255] (darknet scales pixels to [0, 1])"
    )
    return conv
