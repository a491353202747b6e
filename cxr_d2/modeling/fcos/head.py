"""The FCOS head with AdelaiDet's options (tower depths, shared convs, per-level scales)."""
from typing import List

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm
from torch import nn
from torch.nn import functional as F

from ...layers import prior_bias

__all__ = ["FCOSHead", "LevelNorms", "Scale", "Tower"]


class Scale(nn.Module):
    """A learnable scalar multiplying its input (one per FPN level in FCOS)."""

    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x):
        return x * self.scale


# Norms that AdelaiDet's FCOS towers keep one of per FPN level (its ModuleListDial): batch
# statistics differ between levels. GroupNorm and no norm are shared across levels.
_PER_LEVEL_NORMS = ("BN", "SyncBN")


class LevelNorms(nn.ModuleList):
    """One norm per FPN level (keys `<i>.<level>.weight`, as AdelaiDet's BN towers)."""


class Tower(nn.Sequential):
    """
    AdelaiDet's tower layout: one flat sequence of 3x3 conv, norm (if any), ReLU, conv, ...
    (state-dict keys `i.weight`, `i.bias`, `i+1.weight`, ...). `forward(x, level)`: a
    :class:`LevelNorms` applies the norm of `level`.
    """

    def forward(self, x, level=None):
        for module in self:
            if isinstance(module, LevelNorms):
                if level is None:
                    raise ValueError("this tower has per-level norms: pass the FPN level")
                module = module[level]
            x = module(x)
        return x


def _tower(num_convs, channels, norm, num_levels, bias=True):
    """
    A :class:`Tower` of `num_convs` blocks. The convs have a bias when `bias` (AdelaiDet:
    always, even before the norm) or without a norm. BN/SyncBN are per level. Initialised
    by the head.
    """
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=bias or not norm))
        if norm in _PER_LEVEL_NORMS:
            layers.append(LevelNorms([get_norm(norm, channels) for _ in range(num_levels)]))
        elif norm:
            layers.append(get_norm(norm, channels))
        layers.append(nn.ReLU())
    return Tower(*layers)


class FCOSHead(nn.Module):
    """
    FCOS head: shared convs, a classification tower and a box tower (3x3 convs + norm + ReLU)
    shared across levels, then class logits, (l, t, r, b) and centerness. `towers()` and
    `predict()` are separate so that models on FCOS (SipMask, BlendMask) can use the towers'
    features.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        prior_prob: float = 0.01,
        use_scale: bool = True,
        centerness_on_reg: bool = True,
        norm_reg_targets: bool = True,
        tower_bias: bool = True,
    ):
        """
        Args:
            input_shape: shapes of the input features, finest first; all with equal channels.
            num_classes: number of foreground classes.
            num_cls_convs, num_box_convs, num_share_convs: depth of the towers.
            norm: normalisation after each tower conv ("" or "none" for none); BN and SyncBN
                are one per level, as AdelaiDet's.
            prior_prob: initial foreground probability of the class logits.
            use_scale: a learnable scalar per level on the box regression.
            centerness_on_reg: centerness from the box tower (else the classification tower).
            norm_reg_targets: regression in strides through ReLU (else in pixels through exp).
            tower_bias: the tower convs have a bias also before a norm (AdelaiDet; its
                checkpoints hold these biases); False: a bias only without a norm (mmdet's
                FCOS and SipMask).
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOS head inputs must have equal channels, got {channels}")
        ch = channels.pop()
        self.num_classes = num_classes
        self.centerness_on_reg = centerness_on_reg
        self.norm_reg_targets = norm_reg_targets
        num_levels = len(input_shape)
        if norm == "none":  # AdelaiDet's name of no norm
            norm = ""
        self.share_tower = _tower(num_share_convs, ch, norm, num_levels, tower_bias)
        self.cls_tower = _tower(num_cls_convs, ch, norm, num_levels, tower_bias)
        self.bbox_tower = _tower(num_box_convs, ch, norm, num_levels, tower_bias)
        self.cls_logits = nn.Conv2d(ch, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(ch, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(ch, 1, 3, padding=1)
        self.scales = nn.ModuleList(
            [Scale(1.0) if use_scale else nn.Identity() for _ in range(num_levels)]
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cls_logits.bias, prior_bias(prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape):
        f = cfg.MODEL.FCOS
        return {
            "input_shape": input_shape,
            "num_classes": f.NUM_CLASSES,
            "num_cls_convs": f.NUM_CLS_CONVS,
            "num_box_convs": f.NUM_BOX_CONVS,
            "num_share_convs": f.NUM_SHARE_CONVS,
            "norm": f.NORM,
            "prior_prob": f.PRIOR_PROB,
            "use_scale": f.USE_SCALE,
            "centerness_on_reg": f.CENTERNESS_ON_REG,
            "norm_reg_targets": f.NORM_REG_TARGETS,
            "tower_bias": f.TOWER_BIAS,
        }

    def towers(self, features):
        """
        Args:
            features: list of (N, C, Hi, Wi), finest first.
        Returns:
            cls_feats, box_feats: lists of (N, C, Hi, Wi), the two towers' outputs per level.
        """
        shared = [self.share_tower(x, i) for i, x in enumerate(features)]
        cls_feats = [self.cls_tower(x, i) for i, x in enumerate(shared)]
        return cls_feats, [self.bbox_tower(x, i) for i, x in enumerate(shared)]

    def predict_boxes(self, box_feats):
        """Per level (N, 4, Hi, Wi) regression (l, t, r, b), >= 0, and (N, 1, Hi, Wi) centerness
        logits when they come from the box tower (else None)."""
        reg, ctr = [], []
        for level, x in enumerate(box_feats):
            r = self.scales[level](self.bbox_pred(x))
            reg.append(F.relu(r) if self.norm_reg_targets else torch.exp(r.clamp(max=20)))
            ctr.append(self.ctrness(x) if self.centerness_on_reg else None)
        return reg, ctr

    def predict(self, cls_feats, box_feats):
        """Return (logits, bbox_reg, ctrness): per level (N, K, Hi, Wi), (N, 4, Hi, Wi),
        (N, 1, Hi, Wi), the layout Detectron2's FCOS expects."""
        bbox_reg, ctrness = self.predict_boxes(box_feats)
        logits = [self.cls_logits(x) for x in cls_feats]
        if not self.centerness_on_reg:
            ctrness = [self.ctrness(x) for x in cls_feats]
        return logits, bbox_reg, ctrness

    def forward(self, features):
        return self.predict(*self.towers(features))
