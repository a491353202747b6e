"""Weight initialisations shared by the heads and backbones."""
import math

from fvcore.nn import weight_init
from torch import nn

__all__ = ["prior_bias", "init_conv"]

# LeakyReLU's negative slope in `conv_block` (Darknet's).
LEAKY_SLOPE = 0.1


def prior_bias(prior_prob):
    """
    The bias b with sigmoid(b) = prior_prob, -log((1 - p) / p): the focal-loss initialisation
    of classification logits (RetinaNet), so that every location starts as background with
    probability 1 - prior_prob. prior_prob 0.01 gives -4.595.
    """
    if not 0 < prior_prob < 1:
        raise ValueError(f"prior_prob is {prior_prob}; it must be in (0, 1)")
    return -math.log((1 - prior_prob) / prior_prob)


def init_conv(conv, init, activation="relu"):
    """
    Initialise `conv` (an nn.Conv2d or subclass) in place; its bias, if any, to 0.

    Args:
        init (str): "normal": N(0, 0.01) (AdelaiDet's heads); "xavier": fvcore's
            `c2_xavier_fill`; "kaiming": fvcore's `c2_msra_fill` for ReLU, else Kaiming normal,
            fan_out, with the gain of `activation`.
        activation (str): "relu", "leaky_relu" (slope LEAKY_SLOPE) or "" (linear); read by
            "kaiming" only.
    """
    if init == "xavier":
        weight_init.c2_xavier_fill(conv)
    elif init == "kaiming" and activation == "relu":
        weight_init.c2_msra_fill(conv)
    elif init in ("normal", "kaiming"):
        if init == "normal":
            nn.init.normal_(conv.weight, std=0.01)
        elif activation == "leaky_relu":
            nn.init.kaiming_normal_(
                conv.weight, a=LEAKY_SLOPE, mode="fan_out", nonlinearity="leaky_relu"
            )
        else:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="linear")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    else:
        raise ValueError(f"init is {init!r}; use 'normal', 'xavier', 'kaiming' or None")
