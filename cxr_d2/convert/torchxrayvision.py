"""
torchxrayvision's CXR-pretrained ResNet-50 (`xrv.models.ResNet(weights="resnet50-res512-all")`,
a torchvision ResNet-50 under `model.` whose conv1 takes one channel) -> Detectron2's ResNet
(`backbone.bottom_up.`).

The one-channel conv1 is FOLDED to three channels (its weight divided by 3 on each): cxr-d2
feeds grayscale films replicated to three equal channels, on which the folded conv gives what
the original gives on the single channel, so no mapper, model or evaluator changes and every
3-channel config works. torchxrayvision's input scaling, [0, 255] -> [-1024, 1024], is
PIXEL_MEAN 127.5 and PIXEL_STD 255 / 2048 = 0.1245 on each channel; set them with
`STRIDE_IN_1X1 False` (a torchvision ResNet) as `configs/Pretrained/*xrv*.yaml` do.
"""

from ..errors import CXRError
from .torchvision import RESNET_PREFIX, convert_resnet, state_dict_of

__all__ = ["convert", "fold_input_conv"]

# Not weights of the ResNet: the pathology thresholds torchxrayvision calibrates its 18
# outputs with.
_XRV_BUFFERS = ("op_threshs",)


def fold_input_conv(weight, channels=3):
    """(O, 1, k, k) -> (O, channels, k, k), each channel weight / channels: equal outputs on an
    input whose channels are equal copies of the one channel."""
    return weight.repeat(1, channels, 1, 1) / channels


def convert(checkpoint, *, prefix=RESNET_PREFIX, **options):
    """A torchxrayvision ResNet state dict (`model.*` keys, or torchvision's) -> Conversion."""
    state = state_dict_of(checkpoint)
    resnet, other = {}, []
    for key, value in state.items():
        if key.startswith("model."):
            resnet[key[len("model."):]] = value
        elif key.split(".")[0] in _XRV_BUFFERS:
            other.append(key)
        else:
            resnet[key] = value
    if "conv1.weight" not in resnet or "layer4.0.conv1.weight" not in resnet:
        raise CXRError("not a torchxrayvision ResNet (no model.conv1 / model.layer4 weights)")
    conv1 = resnet["conv1.weight"]
    if conv1.shape[1] != 1:
        raise CXRError(f"torchxrayvision's conv1 takes 1 channel; this one {conv1.shape[1]}")
    resnet["conv1.weight"] = fold_input_conv(conv1)
    result = convert_resnet(resnet, prefix=prefix)
    result.mapped = [("model." + s if "model." + s in state else s, d) for s, d in result.mapped]
    result.dropped = [("model." + s if "model." + s in state else s, w) for s, w in result.dropped]
    for key in other:
        result.drop(key, "torchxrayvision's pathology thresholds (not a weight)")
    result.notes[:] = [
        "conv1 folded from 1 to 3 input channels (weight / 3 each): equal on grayscale films",
        "torchxrayvision scaling: PIXEL_MEAN [127.5, 127.5, 127.5], PIXEL_STD [0.1245, 0.1245, "
        "0.1245] (x * 2048 / 255 - 1024), MODEL.RESNETS.STRIDE_IN_1X1 False",
    ]
    return result
