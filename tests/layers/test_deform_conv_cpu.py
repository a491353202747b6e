"""The CPU inference path of deformable convolution (gather + 1x1 conv) against torchvision's
kernel run in float64, and the choice between the two."""
import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

from cxr_d2.layers import DeformConv, ModulatedDeformConv
from cxr_d2.layers import deform_conv as deform_conv_module
from cxr_d2.layers import deform_conv_cpu
from cxr_d2.layers.deform_conv_cpu import deform_conv2d_gather, gather_path_applies


def _reference(x, offset, weight, bias, stride, padding, dilation, mask):
    """torchvision's kernel in float64."""
    d = [None if t is None else t.double() for t in (x, offset, weight, bias, mask)]
    return deform_conv2d(d[0], d[1], d[2], d[3], stride=stride, padding=padding,
                         dilation=dilation, mask=d[4])  # fmt: skip


@pytest.mark.parametrize(
    "n,c,c_out,h,w,k,stride,padding,dilation,groups,modulated,scale",
    [
        (1, 8, 6, 9, 11, 3, 1, 1, 1, 1, False, 1.5),
        (2, 8, 5, 10, 7, 3, 2, 1, 1, 2, False, 4.0),  # stride 2, batch 2
        (1, 12, 4, 8, 8, 3, 1, 2, 2, 4, True, 2.0),  # dilation, modulated
        (1, 4, 3, 6, 9, 1, 1, 0, 1, 1, False, 0.5),  # 1x1 kernel
        (1, 8, 8, 7, 7, 5, 1, 2, 1, 2, True, 30.0),  # 5x5, most points far outside
        (1, 256, 16, 13, 13, 3, 1, 1, 1, 4, False, 3.0),  # SipMask's 4 groups of 64
    ],
)
def test_equals_torchvision(n, c, c_out, h, w, k, stride, padding, dilation, groups,
                            modulated, scale):  # fmt: skip
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    weight = torch.randn(c_out, c, k, k) * 0.1
    bias = torch.randn(c_out)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    offset = torch.randn(n, 2 * groups * k * k, ho, wo) * scale
    mask = torch.rand(n, groups * k * k, ho, wo) if modulated else None
    args = ((stride, stride), (padding, padding), (dilation, dilation))
    out = deform_conv2d_gather(x, offset, weight, bias, *args, mask=mask)
    ref = _reference(x, offset, weight, bias, *args, mask)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)


def test_points_on_and_beyond_the_border():
    """Integer and half-pixel positions at -1, -0.5, 0, H - 1, H - 0.5, H and beyond: the
    zero border and torchvision's `h <= -1 || h >= H` rule give the same values."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6)
    weight = torch.randn(3, 2, 1, 1)
    values = torch.tensor([-7.0, -1.0, -0.5, 0.0, 0.25, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 9.0])
    dy, dx = torch.meshgrid(values, values, indexing="ij")  # positions = offsets (1x1, pad 0)
    offset = torch.zeros(1, 2, 5, 6)
    for i in range(0, len(values), 5):
        for j in range(0, len(values), 6):
            oy, ox = dy[i : i + 5, j : j + 6], dx[i : i + 5, j : j + 6]
            hh, ww = oy.shape
            offset.zero_()
            base_y = torch.arange(5.0)[:hh, None]
            base_x = torch.arange(6.0)[None, :ww]
            offset[0, 0, :hh, :ww] = oy - base_y
            offset[0, 1, :hh, :ww] = ox - base_x
            out = deform_conv2d_gather(x, offset, weight)
            ref = _reference(x, offset, weight, None, (1, 1), (0, 0), (1, 1), None)
            torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-6)


def test_chunks_of_output_rows(monkeypatch):
    """Columns built a few output rows at a time give the same result as in one piece."""
    torch.manual_seed(0)
    x, weight = torch.randn(1, 8, 12, 10), torch.randn(4, 8, 3, 3)
    offset = torch.randn(1, 36, 12, 10) * 2
    whole = deform_conv2d_gather(x, offset, weight, padding=(1, 1))
    monkeypatch.setattr(deform_conv_cpu, "_CHUNK_FLOATS", 8 * 9 * 10 * 5)  # 5 rows a chunk
    torch.testing.assert_close(deform_conv2d_gather(x, offset, weight, padding=(1, 1)), whole,
                               atol=1e-6, rtol=1e-6)  # fmt: skip


def test_path_choice():
    x, offset, weight = torch.randn(1, 4, 5, 5), torch.randn(1, 18, 5, 5), torch.randn(4, 4, 3, 3)
    assert gather_path_applies(x, offset, weight, None, 1)
    assert not gather_path_applies(x, offset, weight, None, 2)  # grouped conv
    assert not gather_path_applies(x.double(), offset.double(), weight.double(), None, 1)
    weight.requires_grad_()
    assert not gather_path_applies(x, offset, weight, None, 1)  # training needs gradients
    with torch.no_grad():
        assert gather_path_applies(x, offset, weight, None, 1)


@pytest.mark.parametrize("modulated", [False, True])
def test_module_uses_it_without_gradients(monkeypatch, modulated):
    """Under no_grad the module runs the gather path (torchvision's kernel made to fail) and
    gives what torchvision gives with gradients on."""
    torch.manual_seed(0)
    conv = (ModulatedDeformConv if modulated else DeformConv)(8, 6, 3, padding=1,
                                                              deformable_groups=2)
    x = torch.randn(1, 8, 9, 9)
    offset = torch.randn(1, 36, 9, 9) * 2
    args = (x, offset, torch.rand(1, 18, 9, 9)) if modulated else (x, offset)
    ref = conv(*args)  # weights require grad: torchvision's kernel

    def fail(*a, **k):
        raise AssertionError("torchvision's kernel ran")

    monkeypatch.setattr(deform_conv_module, "deform_conv2d", fail)
    with torch.no_grad():
        out = conv(*args)
    torch.testing.assert_close(out, ref.detach(), atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(deform_conv_module, "CPU_GATHER", False)
    with torch.no_grad(), pytest.raises(AssertionError, match="torchvision's kernel ran"):
        conv(*args)


def test_traced_module_keeps_torchvision_op():
    """A traced (exported) graph holds torchvision::deform_conv2d, not the gather."""
    torch.manual_seed(0)
    conv = DeformConv(4, 4, 3, padding=1).eval()
    x, offset = torch.randn(1, 4, 6, 6), torch.randn(1, 18, 6, 6)
    with torch.no_grad():
        traced = torch.jit.trace(conv, (x, offset))
    assert "torchvision::deform_conv2d" in str(traced.graph)
    assert "embedding_bag" not in str(traced.graph)
    with torch.no_grad():
        torch.testing.assert_close(traced(x, offset), conv(x, offset), atol=1e-5, rtol=1e-5)


def test_zero_offsets_equal_a_plain_conv():
    torch.manual_seed(0)
    x, weight = torch.randn(1, 16, 20, 17), torch.randn(8, 16, 3, 3)
    out = deform_conv2d_gather(x, torch.zeros(1, 18, 10, 9), weight, stride=(2, 2),
                               padding=(1, 1))  # fmt: skip
    torch.testing.assert_close(out, F.conv2d(x, weight, stride=2, padding=1), atol=1e-4,
                               rtol=1e-5)  # fmt: skip


def test_non_contiguous_offsets_and_mask():
    """Offsets and mask sliced out of one channels-last head output (as DCNv2 blocks split
    theirs)."""
    torch.manual_seed(0)
    x, weight = torch.randn(2, 6, 8, 9), torch.randn(5, 6, 3, 3)
    head = torch.randn(2, 8, 9, 27).permute(0, 3, 1, 2)  # (2, 27, 8, 9), channels last
    offset, mask = head[:, :18], head[:, 18:]
    assert not offset.is_contiguous() and not mask.is_contiguous()
    out = deform_conv2d_gather(x, offset, weight, padding=(1, 1), mask=mask)
    ref = _reference(x, offset, weight, None, (1, 1), (1, 1), (1, 1), mask)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_in_float32(dtype, monkeypatch):
    """Under autocast (torchvision's CPU kernel has no half types) the conv runs in float32 on
    the gather path and returns the input's dtype."""
    torch.manual_seed(0)
    conv = DeformConv(8, 6, 3, padding=1, deformable_groups=2).eval()
    x, offset = torch.randn(1, 8, 9, 9), torch.randn(1, 36, 9, 9) * 2
    with torch.no_grad():
        ref = conv(x, offset)
        monkeypatch.setattr(deform_conv_module, "deform_conv2d", None)  # must not be reached
        out = conv(x.to(dtype), offset.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)
