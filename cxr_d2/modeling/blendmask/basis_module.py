"""BlendMask's bottom module: K basis maps from the FPN (ProtoNet), and its semantic head."""

from typing import Dict, List

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError
from ...layers import conv_block

__all__ = ["BASIS_MODULE_REGISTRY", "build_basis_module", "ProtoNet"]

BASIS_MODULE_REGISTRY = Registry("BASIS_MODULE")
BASIS_MODULE_REGISTRY.__doc__ = """
Bottom modules of BlendMask: `obj(cfg, input_shape)` with `input_shape` the backbone's
dict of ShapeSpec; the module maps the backbone's dict of features to (bases, sem_logits or
None) and has `stride`, the input pixels per basis pixel.
"""


def build_basis_module(cfg, input_shape: Dict[str, ShapeSpec]):
    """The bottom module named by MODEL.BASIS_MODULE.NAME."""
    name = cfg.MODEL.BASIS_MODULE.NAME
    if name not in BASIS_MODULE_REGISTRY:
        known = sorted(k for k, _ in BASIS_MODULE_REGISTRY)
        raise ConfigError(f"MODEL.BASIS_MODULE.NAME is {name!r}; use one of {known}")
    return BASIS_MODULE_REGISTRY.get(name)(cfg, input_shape)


@BASIS_MODULE_REGISTRY.register()
class ProtoNet(nn.Module):
    """
    The bottom module (as YOLACT's ProtoNet and AdelaiDet's): each input level through a 3x3
    conv block, upsampled (bilinear) to the finest and summed, NUM_CONVS conv blocks, 2x
    bilinear upsampling, one more block and a 1x1 conv to K bases. With `num_classes` > 0,
    a semantic head (two conv blocks and a 1x1 conv to num_classes + 1 logits, 0 =
    background) on the finest input level, for the auxiliary loss.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: Dict[str, ShapeSpec],
        in_features: List[str],
        num_bases: int,
        convs_dim: int = 128,
        num_convs: int = 3,
        norm: str = "GN",
        num_classes: int = 0,
        sem_norm: str = "BN",
    ):
        """
        Args:
            input_shape: the backbone's output shapes.
            in_features: levels fused, finest first.
            num_bases: K.
            convs_dim: channels of the convs.
            num_convs: conv blocks between fusion and upsampling.
            norm: normalisation of every conv block ("" for none).
            num_classes: foreground classes of the semantic head; 0 = no semantic head.
            sem_norm: normalisation of the semantic head's convs ("BN" as AdelaiDet).
        """
        super().__init__()
        self.in_features = list(in_features)
        block = dict(norm=norm, init="xavier")  # Kaiming uniform, a = 1
        self.refine = nn.ModuleList(
            [conv_block(input_shape[f].channels, convs_dim, **block) for f in self.in_features]
        )
        tower = [conv_block(convs_dim, convs_dim, **block) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(conv_block(convs_dim, convs_dim, **block))
        tower.append(nn.Conv2d(convs_dim, num_bases, 1))
        self.tower = nn.Sequential(*tower)
        self.stride = input_shape[self.in_features[0]].stride // 2  # of the bases
        self.seg_head = None
        if num_classes > 0:
            ch = input_shape[self.in_features[0]].channels
            sem = dict(norm=sem_norm, init="xavier")
            self.seg_head = nn.Sequential(
                conv_block(ch, convs_dim, **sem),
                conv_block(convs_dim, convs_dim, **sem),
                nn.Conv2d(convs_dim, num_classes + 1, 1),
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        b = cfg.MODEL.BASIS_MODULE
        missing = [f for f in b.IN_FEATURES if f not in input_shape]
        if missing or not b.IN_FEATURES:
            raise ConfigError(
                f"MODEL.BASIS_MODULE.IN_FEATURES {list(b.IN_FEATURES)} must be backbone "
                f"outputs ({sorted(input_shape)}), finest first"
            )
        if b.NUM_BASES < 1:
            raise ConfigError(f"MODEL.BASIS_MODULE.NUM_BASES is {b.NUM_BASES}; give K >= 1")
        if b.LOSS_ON and b.NUM_CLASSES < 1:
            raise ConfigError(
                f"MODEL.BASIS_MODULE.NUM_CLASSES is {b.NUM_CLASSES} with LOSS_ON; set it to the "
                "number of classes, or leave it 0 and name a dataset in DATASETS.TRAIN"
            )
        stride = input_shape[b.IN_FEATURES[0]].stride
        if b.LOSS_ON and b.COMMON_STRIDE != stride:
            raise ConfigError(
                f"MODEL.BASIS_MODULE.COMMON_STRIDE is {b.COMMON_STRIDE} but the semantic logits "
                f"are at the stride of {b.IN_FEATURES[0]}, {stride}; set COMMON_STRIDE {stride}"
            )
        return {
            "input_shape": input_shape,
            "in_features": list(b.IN_FEATURES),
            "num_bases": b.NUM_BASES,
            "convs_dim": b.CONVS_DIM,
            "num_convs": b.NUM_CONVS,
            "norm": b.NORM,
            "num_classes": b.NUM_CLASSES if b.LOSS_ON else 0,
            "sem_norm": b.SEM_NORM,
        }

    def forward(self, features):
        """
        Args:
            features: dict of the backbone's (N, C, Hl, Wl) maps, holding `in_features`.
        Returns:
            bases: (N, K, 2*H0, 2*W0), H0 x W0 the size of in_features[0] (stride `self.stride`).
            sem_logits: (N, num_classes + 1, H0, W0), or None without a semantic head.
        """
        x = self.refine[0](features[self.in_features[0]])
        for refine, name in zip(self.refine[1:], self.in_features[1:]):
            y = refine(features[name])
            x = x + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        bases = self.tower(x)
        sem = self.seg_head(features[self.in_features[0]]) if self.seg_head is not None else None
        return bases, sem
