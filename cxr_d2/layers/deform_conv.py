"""
Deformable convolution (v1, and v2 "modulated") on `torchvision.ops.deform_conv2d`, with the
constructor, parameters and forward signature of `detectron2.layers.DeformConv` and
`ModulatedDeformConv`, whose CUDA kernels live in `detectron2._C` (absent here).

Offsets follow Detectron2/mmcv (and torchvision): for offset group g and kernel point
k = i * kw + j (row-major), channel 2 * (g * kh * kw + k) is the displacement along y (rows)
and the next channel the displacement along x (columns), in input pixels, at each output
location. A sampling point outside the input reads 0 (bilinear interpolation with zero
padding).
"""
import torch
from detectron2.layers.wrappers import _NewEmptyTensorOp
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from .deform_conv_cpu import deform_conv2d_gather, gather_path_applies

__all__ = ["DeformConv", "ModulatedDeformConv"]

CPU_GATHER = True


class _DeformConvBase(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deformable_groups=1, bias=False, norm=None, activation=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels {in_channels} and out_channels {out_channels} must be divisible "
                f"by groups {groups}"
            )
        if in_channels % deformable_groups:
            raise ValueError(
                f"in_channels {in_channels} must be divisible by deformable_groups "
                f"{deformable_groups}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.norm = norm
        self.activation = activation
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """Kaiming uniform weights (as Detectron2's); a subclass may initialise otherwise."""
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    @property
    def offset_channels(self):
        """Channels of the offset input: 2 * deformable_groups * kh * kw."""
        return 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]

    def _output_shape(self, x):
        hw = [
            (i + 2 * p - (d * (k - 1) + 1)) // s + 1
            for i, p, d, k, s in zip(
                x.shape[-2:], self.padding, self.dilation, self.kernel_size, self.stride
            )
        ]
        return [x.shape[0], self.out_channels] + hw

    def _deform(self, x, offset, mask):
        if x.numel() == 0:  # as Detectron2: an empty tensor of the right shape
            return _NewEmptyTensorOp.apply(x, self._output_shape(x))
        if offset is None:  # the same weights as a regular convolution
            x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        else:
            if offset.shape[1] != self.offset_channels:
                raise ValueError(
                    f"offset has {offset.shape[1]} channels; expected {self.offset_channels} "
                    f"(2 x {self.deformable_groups} deformable groups x {self.kernel_size} "
                    "kernel)"
                )
            x = self._deform_conv(x, offset, mask)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _deform_conv(self, x, offset, mask):
        """The deformable convolution; half-precision inputs (autocast) are computed in
        float32 and returned in their dtype, as torchvision's CUDA autocast does (its CPU
        kernel has no float16/bfloat16)."""
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(x.device.type, enabled=False):
                x, offset = x.float(), offset.float()
                mask = None if mask is None else mask.float()
                return self._deform_conv(x, offset, mask).to(dtype)
        fn = deform_conv2d
        if CPU_GATHER and gather_path_applies(x, offset, self.weight, mask, self.groups):
            fn = deform_conv2d_gather
        return fn(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                  dilation=self.dilation, mask=mask)  # fmt: skip

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )


class DeformConv(_DeformConvBase):
    """
    Deformable convolution v1 (Dai et al., 2017), as `detectron2.layers.DeformConv`
    (optional norm and activation after the convolution). Two additions: `bias=True` (default
    False, Detectron2's has none), and `offset=None`, which runs the same weights as a regular
    convolution (a model with a deformable and a plain mode keeps one set of parameters).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deformable_groups=1, bias=False, norm=None, activation=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deformable_groups, bias, norm, activation)

    def forward(self, x, offset=None):
        """
        Args:
            x: (N, C_in, H, W).
            offset: (N, 2 * deformable_groups * kh * kw, H_out, W_out), (dy, dx) pairs; None
                for a regular convolution.
        Returns:
            (N, C_out, H_out, W_out).
        """
        return self._deform(x, offset, None)


class ModulatedDeformConv(_DeformConvBase):
    """
    Modulated deformable convolution v2 (Zhu et al., 2019), as
    `detectron2.layers.ModulatedDeformConv`: each sampled value is multiplied by its mask.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deformable_groups=1, bias=True, norm=None, activation=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deformable_groups, bias, norm, activation)

    def forward(self, x, offset, mask):
        """
        Args:
            x: (N, C_in, H, W).
            offset: (N, 2 * deformable_groups * kh * kw, H_out, W_out), (dy, dx) pairs.
            mask: (N, deformable_groups * kh * kw, H_out, W_out) modulation (usually in [0, 1]).
        Returns:
            (N, C_out, H_out, W_out).
        """
        return self._deform(x, offset, mask)
