"""The conv + norm + activation block of every head and backbone in cxr-d2."""
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from torch import nn

from .weight_init import LEAKY_SLOPE, init_conv

__all__ = ["conv_block"]

_ACTIVATIONS = ("relu", "leaky_relu", "")


def _leaky_relu(x):
    return F.leaky_relu(x, LEAKY_SLOPE)


def conv_block(
    in_channels,
    out_channels,
    kernel_size=3,
    *,
    stride=1,
    padding=None,
    dilation=1,
    norm="",
    activation="relu",
    init="normal",
    as_layers=False,
):
    """
    A kxk convolution, then `norm`, then `activation`.

    Args:
        kernel_size, stride, dilation: of the convolution.
        padding: default dilation * (kernel_size // 2), which keeps H x W at stride 1.
        norm (str): a `detectron2.layers.get_norm` name ("GN", "BN", ...) or "" for none.
            The convolution has a bias only without a norm.
        activation (str): "relu", "leaky_relu" (slope 0.1, Darknet's) or "" for none.
        init (str or None): the convolution's initialisation (`init_conv`: "normal" N(0, 0.01),
            "xavier", "kaiming"), or None for PyTorch's default, for a caller that initialises
            the whole module afterwards.
        as_layers (bool): False: one `detectron2.layers.Conv2d` holding the norm and the
            activation (state-dict keys `weight`, `bias`, `norm.*`). True: a list
            [nn.Conv2d, norm (if any), activation module (if any)] to splice into an
            nn.Sequential, whose keys are `i.weight`, `i+1.weight`, ... (AdelaiDet's FCOS
            towers, torchvision-style stacks).

    Returns:
        A module mapping (N, in_channels, H, W) to (N, out_channels, H', W'), or the list of
        modules that does so in sequence.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation is {activation!r}; use one of {_ACTIVATIONS}")
    if padding is None:
        padding = dilation * (kernel_size // 2)
    conv_args = dict(
        kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, bias=not norm
    )
    if as_layers:
        conv = nn.Conv2d(in_channels, out_channels, **conv_args)
        layers = [conv]
        if norm:
            layers.append(get_norm(norm, out_channels))
        if activation:
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(LEAKY_SLOPE))
    else:
        act = {"relu": F.relu, "leaky_relu": _leaky_relu, "": None}[activation]
        conv = Conv2d(
            in_channels, out_channels, norm=get_norm(norm, out_channels), activation=act,
            **conv_args,
        )  # fmt: skip
    if init is not None:
        init_conv(conv, init, activation)
    return layers if as_layers else conv
