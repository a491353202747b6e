"""cxr_d2.layers deformable convs (torchvision) and the deformable ResNet backbone builders."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.resnet import BottleneckBlock
from torch.nn import functional as F

from cxr_d2.config.deform_resnet import add_deform_resnet_config
from cxr_d2.layers import DeformConv, ModulatedDeformConv
from cxr_d2.modeling.backbone.deform_resnet import (
    DeformBottleneckBlock,
    build_deform_resnet_backbone,
)


def _offsets(n, groups, k, h, w, dy=0.0, dx=0.0):
    """(N, 2*groups*k*k, h, w) with every kernel point displaced by (dy, dx)."""
    o = torch.zeros(n, groups * k * k, 2, h, w, dtype=torch.float64)
    o[:, :, 0], o[:, :, 1] = dy, dx
    return o.flatten(1, 2)


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1)]
)
def test_zero_offsets_equal_plain_conv(stride, padding, dilation, groups):
    torch.manual_seed(0)
    conv = DeformConv(4, 6, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.randn(2, 4, 9, 11)
    ref = F.conv2d(x, conv.weight, None, stride, padding, dilation, groups)
    out = conv(x, torch.zeros(2, 18, *ref.shape[-2:]))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_integer_offset_is_a_shifted_input():
    """Every kernel point moved by (dy, dx) = (1, -2): out[y, x] = sum_ij w[i, j] *
    in[y - 1 + i + 1, x - 1 + j - 2] (zeros outside the input), a plain unpadded conv over a
    window of the zero-padded input."""
    torch.manual_seed(0)
    conv = DeformConv(3, 5, 3, padding=1).double()
    x = torch.randn(1, 3, 8, 10, dtype=torch.float64)
    m, dy, dx = 3, 1, -2
    big = F.pad(x, (m, m, m, m))
    window = big[:, :, m - 1 + dy : m + 1 + dy + 8, m - 1 + dx : m + 1 + dx + 10]
    ref = F.conv2d(window, conv.weight)
    out = conv(x, _offsets(1, 1, 3, 8, 10, dy=float(dy), dx=float(dx)))
    torch.testing.assert_close(out, ref)


def test_half_pixel_offset_interpolates_bilinearly():
    """dx = 0.5 samples halfway between columns: the mean of the input and its left-shifted
    copy (reading 0 beyond the right border)."""
    torch.manual_seed(0)
    conv = DeformConv(2, 3, 1).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    right = torch.zeros_like(x)
    right[..., :-1] = x[..., 1:]
    ref = F.conv2d((x + right) / 2, conv.weight)
    torch.testing.assert_close(conv(x, _offsets(1, 1, 1, 5, 6, dx=0.5)), ref)


def test_deformable_groups_and_modulation():
    """Two offset groups act on their own halves of the input channels; the mask scales each
    sampled value."""
    torch.manual_seed(0)
    conv = ModulatedDeformConv(4, 3, 1, deformable_groups=2, bias=True).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    offset = torch.cat([_offsets(1, 1, 1, 5, 6), _offsets(1, 1, 1, 5, 6, dy=-1.0)], dim=1)
    mask = torch.cat([torch.full((1, 1, 5, 6), 0.5), torch.full((1, 1, 5, 6), 0.25)], dim=1)
    down = torch.zeros_like(x[:, 2:])
    down[:, :, 1:] = x[:, 2:, :-1]  # reads row y - 1
    w = conv.weight
    ref = (F.conv2d(x[:, :2], w[:, :2]) * 0.5 + F.conv2d(down, w[:, 2:]) * 0.25
           + conv.bias[None, :, None, None])  # fmt: skip
    torch.testing.assert_close(conv(x, offset, mask.double()), ref)


def test_gradcheck():
    torch.manual_seed(0)
    conv = ModulatedDeformConv(2, 2, 3, padding=1, bias=True).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    offset = (torch.rand(1, 18, 4, 5, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    mask = torch.rand(1, 9, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: conv(*a), (x, offset, mask))
    conv(x, offset, mask).sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and conv.bias.grad.abs().sum() > 0


def test_empty_input_and_bad_offsets():
    conv = DeformConv(4, 6, 3, padding=1)
    assert conv(torch.zeros(0, 4, 7, 7), torch.zeros(0, 18, 7, 7)).shape == (0, 6, 7, 7)
    with pytest.raises(ValueError, match="offset has 9 channels"):
        conv(torch.zeros(1, 4, 7, 7), torch.zeros(1, 9, 7, 7))


def _cfg(*opts):
    cfg = get_cfg()
    add_deform_resnet_config(cfg)
    cfg.merge_from_list([
        "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "8",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "16", "MODEL.RESNETS.WIDTH_PER_GROUP", "4",
        "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RESNETS.OUT_FEATURES",
        "['res3', 'res4', 'res5']", "MODEL.FPN.IN_FEATURES", "['res3', 'res4', 'res5']",
        "MODEL.FPN.OUT_CHANNELS", "16", *opts,
    ])  # fmt: skip
    return cfg


def test_deform_resnet_interval_and_zero_init_equals_plain_resnet():
    """DCN in res3-res5 every 3rd block (SipMask++): block 0 and 3 of res3/res4, 0 of res5.
    Offsets start at 0, so with the plain ResNet's weights it computes the same features."""
    deform = ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, True, True, True]",
              "MODEL.RESNETS.DEFORM_INTERVAL", "3"]  # fmt: skip
    torch.manual_seed(0)
    net = build_deform_resnet_backbone(_cfg(*deform), ShapeSpec(channels=3))
    plain = build_deform_resnet_backbone(_cfg(), ShapeSpec(channels=3))
    kinds = {name: [isinstance(b, DeformBottleneckBlock) for b in getattr(net, name)]
             for name in ("res2", "res3", "res4", "res5")}  # fmt: skip
    assert kinds == {"res2": [False] * 3, "res3": [True, False, False, True],
                     "res4": [True, False, False, True, False, False], "res5": [True, False, False]}
    assert all(type(b) is BottleneckBlock for b in plain.res3)
    missing, unexpected = net.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("conv2_offset" in k for k in missing)
    x = torch.randn(1, 3, 64, 64)
    out, ref = net(x), plain(x)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], atol=1e-4, rtol=1e-4)
    sum(v.sum() for v in out.values()).backward()
    assert net.res4[3].conv2_offset.weight.grad.abs().sum() > 0  # the offsets learn


@pytest.mark.parametrize("modulated", [False, True])
def test_registered_fpn_builders(modulated):
    cfg = _cfg("MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, False, False, True]",
               "MODEL.RESNETS.DEFORM_MODULATED", str(modulated),
               "MODEL.BACKBONE.NAME", "build_retinanet_deform_resnet_fpn_backbone")  # fmt: skip
    backbone = build_backbone(cfg)
    assert all(isinstance(b, DeformBottleneckBlock) for b in backbone.bottom_up.res5)
    conv = backbone.bottom_up.res5[0].conv2
    assert isinstance(conv, ModulatedDeformConv if modulated else DeformConv)
    out = backbone(torch.randn(1, 3, 64, 64))
    assert sorted(out) == ["p3", "p4", "p5", "p6", "p7"]
    cfg.MODEL.BACKBONE.NAME = "build_deform_resnet_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    out = build_backbone(cfg)(torch.randn(1, 3, 64, 64))
    assert sorted(out) == ["p2", "p3", "p4", "p5", "p6"]


def test_deform_on_basic_blocks_is_a_config_error():
    from cxr_d2.errors import ConfigError

    cfg = _cfg("MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
               "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, True, True, True]")  # fmt: skip
    with pytest.raises(ConfigError, match="depth 50, 101, 152"):
        build_deform_resnet_backbone(cfg, ShapeSpec(channels=3))


def test_no_offset_runs_the_same_weights_as_a_plain_conv():
    """offset=None: a regular convolution with the layer's weight and bias (one parameter set
    for a deformable and a plain mode); zero offsets give the same result."""
    torch.manual_seed(0)
    conv = DeformConv(4, 6, 3, stride=2, padding=1, groups=2, bias=True, activation=F.relu)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 4, 9, 11)
    ref = F.relu(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=2))
    assert torch.equal(conv(x), ref)
    zero = torch.zeros(2, conv.offset_channels, *ref.shape[-2:])
    assert torch.allclose(conv(x, zero), ref, atol=1e-5)
    assert set(conv.state_dict()) == {"weight", "bias"}


def test_subclass_initialises_through_reset_parameters():
    """A subclass's reset_parameters replaces the Kaiming init, drawing from the RNG once."""

    class Normal(DeformConv):
        def reset_parameters(self):
            torch.nn.init.normal_(self.weight, std=0.01)

    torch.manual_seed(0)
    w = Normal(3, 5, 3).weight
    torch.manual_seed(0)
    assert torch.equal(w, torch.randn(5, 3, 3, 3) * 0.01)
