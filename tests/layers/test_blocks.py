"""cxr_d2.layers.conv_block and prior_bias: hand-worked values, layouts, initialisations."""
import math

import pytest
import torch
from detectron2.layers import Conv2d
from torch import nn

from cxr_d2.layers import conv_block, prior_bias


def _set(conv, weight, bias=None):
    with torch.no_grad():
        conv.weight.fill_(weight)
        if bias is not None:
            conv.bias.fill_(bias)


def test_prior_bias_by_hand():
    assert prior_bias(0.01) == pytest.approx(-math.log(99))  # -4.59512
    assert prior_bias(0.01) == pytest.approx(-4.59512, abs=1e-5)
    assert prior_bias(0.5) == 0.0
    assert prior_bias(0.2) == pytest.approx(-math.log(4))
    for p in (0.001, 0.01, 0.3, 0.9):
        assert torch.sigmoid(torch.tensor(prior_bias(p), dtype=torch.float64)).item() == (
            pytest.approx(p, rel=1e-12)
        )
    for p in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="prior_prob"):
            prior_bias(p)


@pytest.mark.parametrize(
    "activation, expected", [("relu", [3.0, 1.0, 0.0]), ("leaky_relu", [3.0, 1.0, -0.1]),
                             ("", [3.0, 1.0, -1.0])],
)  # fmt: skip
def test_values_by_hand(activation, expected):
    """1x1 conv, weight -2, bias 1 on x = (-1, 0, 1): pre-activation (3, 1, -1)."""
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    fused = conv_block(1, 1, 1, activation=activation)
    _set(fused, -2.0, 1.0)
    layers = nn.Sequential(*conv_block(1, 1, 1, activation=activation, as_layers=True))
    _set(layers[0], -2.0, 1.0)
    for block in (fused, layers):
        assert block(x).flatten().tolist() == pytest.approx(expected)


def test_norm_drops_the_bias_and_normalises():
    """Identity 1x1 conv, GN (32 groups of one channel): each channel's (0, 2) becomes (-1, 1)
    (mean 1, variance 1)."""
    block = conv_block(32, 32, 1, norm="GN", activation="")
    assert isinstance(block, Conv2d) and block.bias is None
    assert isinstance(block.norm, nn.GroupNorm) and block.norm.num_groups == 32
    with torch.no_grad():
        block.weight.copy_(torch.eye(32).view(32, 32, 1, 1))
    x = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2).expand(1, 32, 1, 2)
    assert block(x).flatten().tolist() == pytest.approx([-1.0, 1.0] * 32, abs=1e-4)


def test_state_dict_keys_of_both_layouts():
    fused = conv_block(4, 32, norm="GN")
    assert set(fused.state_dict()) == {"weight", "norm.weight", "norm.bias"}
    layers = conv_block(4, 32, norm="GN", as_layers=True)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.GroupNorm, nn.ReLU]
    assert set(nn.Sequential(*layers).state_dict()) == {"0.weight", "1.weight", "1.bias"}
    plain = conv_block(4, 8, activation="leaky_relu", as_layers=True)
    assert [type(m) for m in plain] == [nn.Conv2d, nn.LeakyReLU] and plain[1].negative_slope == 0.1
    assert set(nn.Sequential(*plain).state_dict()) == {"0.weight", "0.bias"}


@pytest.mark.parametrize(
    "kwargs, size", [({}, 9), ({"dilation": 2}, 9), ({"stride": 2}, 5),
                     ({"stride": 2, "padding": 0}, 4)],
)  # fmt: skip
def test_default_padding_keeps_the_size(kwargs, size):
    out = conv_block(1, 2, 3, **kwargs)(torch.zeros(1, 1, 9, 9))
    assert tuple(out.shape) == (1, 2, size, size)


def _reference(init, activation, norm):
    """The initialisations the heads and backbones wrote out before conv_block."""
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=not norm)
    if init == "normal":
        nn.init.normal_(conv.weight, std=0.01)
    elif init == "xavier":
        nn.init.kaiming_uniform_(conv.weight, a=1)
    elif activation == "leaky_relu":
        nn.init.kaiming_normal_(conv.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
    else:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


@pytest.mark.parametrize(
    "init, activation, norm",
    [("normal", "relu", ""), ("normal", "relu", "GN"), ("xavier", "relu", "GN"),
     ("kaiming", "relu", ""), ("kaiming", "leaky_relu", "BN")],
)  # fmt: skip
def test_seeded_initialisation_is_the_reference(init, activation, norm):
    torch.manual_seed(0)
    block = conv_block(16, 32, 3, norm=norm, activation=activation, init=init)
    torch.manual_seed(0)
    ref = _reference(init, activation, norm)
    assert torch.equal(block.weight, ref.weight)
    assert (block.bias is None) == bool(norm)
    if block.bias is not None:
        assert torch.equal(block.bias, torch.zeros(32))


def test_init_none_is_pytorch_default():
    torch.manual_seed(0)
    (conv,) = conv_block(3, 5, init=None, activation="", as_layers=True)
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 5, 3, padding=1)
    assert torch.equal(conv.weight, ref.weight) and torch.equal(conv.bias, ref.bias)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation is 'gelu'"):
        conv_block(1, 1, activation="gelu")
    with pytest.raises(ValueError, match="init is 'zeros'"):
        conv_block(1, 1, init="zeros")
