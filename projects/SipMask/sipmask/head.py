"""SipMask's head: FCOS towers, feature alignment, coefficients per sub-region, basis masks."""
from typing import List

from detectron2.config import configurable
from detectron2.layers import get_norm
from torch import nn
from torch.nn import functional as F

from cxr_d2.layers import DeformConv
from cxr_d2.modeling.fcos import FCOSHead

from .basis import BasisModule

__all__ = ["FeatureAlign", "SipMaskHead"]


class FeatureAlign(DeformConv):
    """
    A 3x3 conv on the classification tower, weights N(0, 0.01), then `norm` and ReLU (the conv
    has a bias only without a norm). With `deformable`, its sampling offsets (`groups` offset
    fields) come from a zero-initialised, bias-free 1x1 conv over the detached box regression
    (l, t, r, b) in strides (the official `FeatureAlign`), so it starts as a plain conv;
    without, the same weights run as a plain conv.
    """

    def __init__(self, channels: int, deformable: bool = True, kernel_size: int = 3,
                 groups: int = 4, norm: str = "GN"):
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2,
                         deformable_groups=groups if deformable else 1, bias=not norm,
                         norm=get_norm(norm, channels) if norm else None,
                         activation=F.relu)  # fmt: skip
        self.deformable = deformable
        if deformable:
            self.offset = nn.Conv2d(4, self.offset_channels, 1, bias=False)
            nn.init.zeros_(self.offset.weight)

    def reset_parameters(self):
        nn.init.normal_(self.weight, std=0.01)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x, box_reg):
        """
        Args:
            x: (N, C, H, W) classification tower features.
            box_reg: (N, 4, H, W) regressed (l, t, r, b) in strides.
        Returns:
            (N, C, H, W) aligned features.
        """
        if not self.deformable:
            return super().forward(x)
        return super().forward(x, self.offset(box_reg.detach()))


class SipMaskHead(FCOSHead):
    """
    FCOSHead plus: feature alignment on the classification tower (class logits and
    coefficients read the aligned features), a 3x3 conv giving rows*cols*m coefficients per
    location, and the basis masks from the box tower.
    """

    @configurable
    def __init__(self, *, basis_module: nn.Module, basis_in_levels: List[int], num_basis: int,
                 grid, feature_align: bool = True, feature_align_groups: int = 4,
                 feature_align_norm: str = "GN", reg_relu: bool = False, strides: List[int],
                 **kwargs):
        """
        Args:
            basis_module: maps the box-tower features of `basis_in_levels` to the basis.
            basis_in_levels: indices of the head's input levels feeding the basis.
            num_basis: m.
            grid: (rows, cols) sub-regions.
            feature_align: deformable (True) or plain (False) alignment conv.
            feature_align_groups, feature_align_norm: its offset groups and norm.
            reg_relu: ReLU on the regression (else the raw distances, official).
            strides: stride of each input level (offsets are in strides).
            kwargs: arguments of :class:`FCOSHead`.
        """
        super().__init__(**kwargs)
        ch = kwargs["input_shape"][0].channels
        self.basis_module = basis_module
        self.basis_in_levels = list(basis_in_levels)
        self.strides = list(strides)
        self.reg_relu = reg_relu
        self.feature_align = FeatureAlign(ch, deformable=feature_align,
                                          groups=feature_align_groups, norm=feature_align_norm)
        self.coefficients = nn.Conv2d(ch, grid[0] * grid[1] * num_basis, 3, padding=1)
        nn.init.normal_(self.coefficients.weight, std=0.01)
        nn.init.constant_(self.coefficients.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        kwargs = super().from_config(cfg, input_shape)
        s = cfg.MODEL.SIPMASK
        names = list(cfg.MODEL.FCOS.IN_FEATURES)
        levels = [names.index(k) for k in s.BASIS_IN_FEATURES]
        kwargs.update(
            basis_module=BasisModule(cfg, input_shape[0].channels),
            basis_in_levels=levels,
            num_basis=s.NUM_BASIS,
            grid=tuple(s.GRID),
            feature_align=s.FEATURE_ALIGN,
            feature_align_groups=s.FEATURE_ALIGN_GROUPS,
            feature_align_norm=s.FEATURE_ALIGN_NORM,
            reg_relu=s.REG_RELU,
            strides=[x.stride for x in input_shape],
        )
        return kwargs

    def predict_boxes(self, box_feats):
        """As :meth:`FCOSHead.predict_boxes`; without `reg_relu` (and with NORM_REG_TARGETS) the
        distances are the raw Scale(conv) output, which may be negative (official)."""
        if self.reg_relu or not self.norm_reg_targets:
            return super().predict_boxes(box_feats)
        reg = [self.scales[i](self.bbox_pred(x)) for i, x in enumerate(box_feats)]
        ctr = [self.ctrness(x) if self.centerness_on_reg else None for x in box_feats]
        return reg, ctr

    def forward(self, features):
        """
        Returns:
            logits, bbox_reg, ctrness, coefficients: per level (N, K, Hi, Wi), (N, 4, Hi, Wi),
                (N, 1, Hi, Wi), (N, rows*cols*m, Hi, Wi) (sub-region major, then basis).
            basis: (N, m, Hb, Wb).
        """
        cls_feats, box_feats = self.towers(features)
        bbox_reg, ctrness = self.predict_boxes(box_feats)
        reg_in_strides = bbox_reg if self.norm_reg_targets else [
            r / s for r, s in zip(bbox_reg, self.strides)
        ]
        aligned = [self.feature_align(x, r) for x, r in zip(cls_feats, reg_in_strides)]
        logits = [self.cls_logits(x) for x in aligned]
        if not self.centerness_on_reg:
            ctrness = [self.ctrness(x) for x in cls_feats]
        coefficients = [self.coefficients(x) for x in aligned]
        basis = self.basis_module([box_feats[i] for i in self.basis_in_levels])
        return logits, bbox_reg, ctrness, coefficients, basis
