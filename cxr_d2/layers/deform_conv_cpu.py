"""
Deformable convolution for CPU inference, as a gather and a 1x1 convolution: the result of
`torchvision.ops.deform_conv2d` (to float rounding), 5x faster on the CPU at SipMask's P3
(100x100x256, 4 offset groups: 140 vs 714 ms), where torchvision samples one value at a time
before a plain matrix product.

Each sampling point's four bilinear corners are read as rows of `Cg` contiguous channels from
a channels-last copy of the input with a one-pixel zero border, weighted and summed by
`F.embedding_bag`; the columns, (H_out, W_out, G * kh * kw * Cg) channels-last, then meet the
reordered weights in a 1x1 convolution (oneDNN). Coordinates are clamped to [-1, H] x [-1, W],
so that a point outside the input reads the border's zeros, as torchvision's
`h <= -1 || h >= height` rule and its zero corners do.
"""
import torch
from torch.nn import functional as F

__all__ = ["deform_conv2d_gather", "gather_path_applies"]

# output rows per chunk are chosen so that one chunk's columns hold about this many floats
_CHUNK_FLOATS = 1 << 23


def gather_path_applies(x, offset, weight, mask, groups):
    """True where :func:`deform_conv2d_gather` gives torchvision's result and no gradient is
    needed: CPU float32 tensors, no grouped convolution, not traced or exported."""
    tensors = [t for t in (x, offset, weight, mask) if t is not None]
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    if groups != 1 or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _sampling_points(offset, kernel_size, stride, padding, dilation, groups):
    """
    Args:
        offset: (G * K * 2, Ho, Wo) one image's offsets, (dy, dx) per group and kernel point.
    Returns:
        y, x: (G, K, Ho, Wo) sampling positions in input pixels.
    """
    kh, kw = kernel_size
    ho, wo = offset.shape[-2:]
    off = offset.reshape(groups, kh * kw, 2, ho, wo)
    dev = offset.device
    ky, kx = torch.meshgrid(torch.arange(kh, device=dev), torch.arange(kw, device=dev),
                            indexing="ij")  # fmt: skip
    base_y = (torch.arange(ho, device=dev) * stride[0] - padding[0]).view(1, 1, ho, 1) + (
        ky.reshape(1, kh * kw, 1, 1) * dilation[0])
    base_x = (torch.arange(wo, device=dev) * stride[1] - padding[1]).view(1, 1, 1, wo) + (
        kx.reshape(1, kh * kw, 1, 1) * dilation[1])
    return off[:, :, 0] + base_y, off[:, :, 1] + base_x


def _bilinear_bags(y, x, height, width, groups, mask):
    """
    Corner rows and weights of each sampling point in the bordered channels-last input.

    Args:
        y, x: (G, K, Ho, Wo) positions; mask: (G, K, Ho, Wo) modulation or None.
    Returns:
        index (Ho * Wo * G * K, 4) int32 rows ((yb * (W + 2) + xb) * G + g), weights
        (Ho * Wo * G * K, 4), positions major, then group, then kernel point.
    """
    y = y.clamp(-1, height)
    x = x.clamp(-1, width)
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    y0 = y0.to(torch.int32) + 1  # into the bordered image
    x0 = x0.to(torch.int32) + 1
    y1 = (y0 + 1).clamp_(max=height + 1)
    x1 = (x0 + 1).clamp_(max=width + 1)
    g = torch.arange(groups, dtype=torch.int32, device=y.device).view(groups, 1, 1, 1)
    row0, row1 = y0 * (width + 2), y1 * (width + 2)
    index = torch.stack([(row0 + x0) * groups + g, (row0 + x1) * groups + g,
                         (row1 + x0) * groups + g, (row1 + x1) * groups + g], dim=-1)
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=-1)
    if mask is not None:
        weights = weights * mask.unsqueeze(-1)
    return index.permute(2, 3, 0, 1, 4).reshape(-1, 4), weights.permute(2, 3, 0, 1, 4).reshape(-1, 4)


def deform_conv2d_gather(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0),
                         dilation=(1, 1), mask=None):
    """
    `torchvision.ops.deform_conv2d` (v1, or v2 with `mask`), conv groups 1.

    Args:
        x: (N, C, H, W).
        offset: (N, 2 * G * kh * kw, Ho, Wo) (dy, dx) per offset group G and kernel point.
        weight: (C_out, C, kh, kw); bias: (C_out,) or None.
        stride, padding, dilation: pairs.
        mask: (N, G * kh * kw, Ho, Wo) or None.
    Returns:
        (N, C_out, Ho, Wo).
    """
    n, c, height, width = x.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    cg = c // groups
    ho, wo = offset.shape[-2:]
    # rows: ((y + 1) * (W + 2) + x + 1) * G + g, each Cg channels
    table = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(n, -1, cg)
    w1x1 = weight.reshape(c_out, groups, cg, k).transpose(2, 3).reshape(c_out, groups * k * cg, 1, 1)
    out = x.new_empty((n, c_out, ho, wo))
    rows = max(1, _CHUNK_FLOATS // (wo * groups * k * cg))
    for i in range(n):
        y, xs = _sampling_points(offset[i], (kh, kw), stride, padding, dilation, groups)
        m = None if mask is None else mask[i].reshape(groups, k, ho, wo)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            index, weights = _bilinear_bags(y[:, :, r0:r1], xs[:, :, r0:r1], height, width,
                                            groups, None if m is None else m[:, :, r0:r1])
            cols = F.embedding_bag(index, table[i], per_sample_weights=weights, mode="sum")
            cols = cols.view(1, r1 - r0, wo, groups * k * cg).permute(0, 3, 1, 2)
            out[i : i + 1, :, r0:r1] = F.conv2d(cols, w1x1, bias)
    return out
