"""VGG16 with SSD's atrous fc6/fc7, the L2-normalised conv4_3 source and the extra layers."""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ...errors import ConfigError
from ...layers import conv_block

__all__ = ["L2Norm", "SSDVGG", "build_ssd_vgg_backbone"]

# Convs per VGG16 stage.
_VGG16_DEPTHS = (2, 2, 3, 3, 3)
# Every conv + norm + ReLU: Kaiming normal (fan_out), zero bias.
_INIT = "kaiming"


class L2Norm(nn.Module):
    """Normalise every location's channel vector to unit L2 norm, times a learnt per-channel
    scale (SSD's conv4_3 normalisation, ParseNet)."""

    def __init__(self, channels, scale=20.0, eps=1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, H, W)."""
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


class SSDVGG(Backbone):
    """
    VGG16 (conv1_1 ... conv5_3, pools with ceil mode, pool5 3x3/1), fc6 as a dilated 3x3 conv,
    fc7 as a 1x1 conv, then SSD's extra layers conv8 ... (a 1x1 and a strided conv each).

    Features (for a 512x512 input with the SSD512 layers): conv4_3 (stride 8, L2-normalised),
    fc7 (16), conv8_2 (32), conv9_2 (64), conv10_2 (128), conv11_2 (256), conv12_2 (512).
    """

    @configurable
    def __init__(
        self,
        *,
        stage_channels,
        fc_channels,
        fc6_dilation,
        extra_layers,
        l2norm_scale,
        norm="",
        out_features,
        in_channels=3,
    ):
        """
        Args:
            stage_channels (list[int]): output channels of the five VGG stages.
            fc_channels (int): channels of fc6 and fc7.
            fc6_dilation (int): dilation of fc6.
            extra_layers (list[list[int]]): [mid, out, kernel, stride, padding] per extra layer.
            l2norm_scale (float): initial scale of conv4_3's L2Norm.
            norm (str): normalisation after each conv ("" for none).
            out_features (list[str]): names of the features to return.
        """
        super().__init__()
        self.stages = nn.ModuleList()
        ch = in_channels
        for depth, out_ch in zip(_VGG16_DEPTHS, stage_channels):
            self.stages.append(
                nn.Sequential(
                    *[
                        conv_block(ch if i == 0 else out_ch, out_ch, 3, norm=norm, init=_INIT)
                        for i in range(depth)
                    ]
                )
            )
            ch = out_ch
        self.l2norm = L2Norm(stage_channels[3], l2norm_scale)
        self.fc6 = conv_block(ch, fc_channels, 3, dilation=fc6_dilation, norm=norm, init=_INIT)
        self.fc7 = conv_block(fc_channels, fc_channels, 1, norm=norm, init=_INIT)
        self.extras = nn.ModuleList()
        ch = fc_channels
        for mid, out_ch, kernel, stride, padding in extra_layers:
            self.extras.append(
                nn.Sequential(
                    conv_block(ch, mid, 1, norm=norm, init=_INIT),
                    conv_block(mid, out_ch, kernel, stride=stride, padding=padding, norm=norm,
                               init=_INIT),  # fmt: skip
                )
            )
            ch = out_ch
        channels = {"conv4_3": stage_channels[3], "fc7": fc_channels}
        strides = {"conv4_3": 8, "fc7": 16}
        stride = 16
        for k, (layer, spec) in enumerate(zip(self.extras, extra_layers)):
            stride *= spec[3]
            channels[f"conv{k + 8}_2"] = spec[1]
            strides[f"conv{k + 8}_2"] = stride
        for name in out_features:
            if name not in channels:
                raise ConfigError(
                    f"MODEL.VGG.OUT_FEATURES: '{name}' is not a feature of this VGG "
                    f"(it has {', '.join(channels)}); add extra layers or remove it"
                )
        self._out_features = list(out_features)
        self._out_feature_channels = {k: channels[k] for k in out_features}
        self._out_feature_strides = {k: strides[k] for k in out_features}

    @classmethod
    def from_config(cls, cfg, input_shape):
        v = cfg.MODEL.VGG
        return {
            "stage_channels": list(v.STAGE_CHANNELS),
            "fc_channels": v.FC_CHANNELS,
            "fc6_dilation": v.FC6_DILATION,
            "extra_layers": [list(x) for x in v.EXTRA_LAYERS],
            "l2norm_scale": v.L2NORM_SCALE,
            "norm": v.NORM,
            "out_features": list(v.OUT_FEATURES),
            "in_channels": input_shape.channels,
        }

    def forward(self, x):
        """x: (N, 3, H, W) -> dict of (N, C_k, H_k, W_k), H_k = ceil(H / stride_k)."""
        out = {}
        for k, stage in enumerate(self.stages):
            if k > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = stage(x)
            if k == 3:
                out["conv4_3"] = self.l2norm(x)
        x = F.max_pool2d(x, 3, 1, padding=1)  # pool5
        x = self.fc7(self.fc6(x))
        out["fc7"] = x
        for k, layer in enumerate(self.extras):
            x = layer(x)
            out[f"conv{k + 8}_2"] = x
        return {name: out[name] for name in self._out_features}


@BACKBONE_REGISTRY.register()
def build_ssd_vgg_backbone(cfg, input_shape):
    """VGG16 + SSD extra layers from MODEL.VGG."""
    return SSDVGG(cfg, input_shape)
