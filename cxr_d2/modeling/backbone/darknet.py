"""Darknet-53, YOLOv3's backbone: 3x3/2 downsampling convs and 1x1-3x3 residual blocks."""

from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ...errors import ConfigError
from ...layers import conv_block

__all__ = ["DARKNET_CONV", "DarknetBlock", "Darknet", "build_darknet_backbone"]

# Darknet's conv (also YOLOv3's neck): kxk conv, norm, LeakyReLU(0.1), Kaiming normal init.
DARKNET_CONV = dict(activation="leaky_relu", init="kaiming")


class DarknetBlock(nn.Module):
    """x + conv3x3(conv1x1(x)), the 1x1 halving the channels."""

    def __init__(self, channels, norm):
        super().__init__()
        self.conv1 = conv_block(channels, channels // 2, 1, norm=norm, **DARKNET_CONV)
        self.conv2 = conv_block(channels // 2, channels, 3, norm=norm, **DARKNET_CONV)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class Darknet(Backbone):
    """
    Darknet-53: a 3x3 stem, then five stages of a 3x3 stride-2 conv doubling the channels and
    `num_blocks[k]` residual blocks. Stage k's output is `dark{k+1}`, stride 2**(k+1).
    """

    @configurable
    def __init__(self, *, num_blocks, stem_out_channels, norm, out_features, in_channels=3):
        """
        Args:
            num_blocks (list[int]): residual blocks per stage (Darknet-53: [1, 2, 8, 8, 4]).
            stem_out_channels (int): channels of the stem (Darknet-53: 32).
            norm (str): normalisation of every conv.
            out_features (list[str]): any of dark1 ... dark5.
        """
        super().__init__()
        self.stem = conv_block(in_channels, stem_out_channels, 3, norm=norm, **DARKNET_CONV)
        ch = stem_out_channels
        self._out_feature_channels, self._out_feature_strides = {}, {}
        self.stage_names = []
        for k, n in enumerate(num_blocks):
            layers = [conv_block(ch, ch * 2, 3, stride=2, norm=norm, **DARKNET_CONV)]
            ch *= 2
            layers += [DarknetBlock(ch, norm) for _ in range(n)]
            name = f"dark{k + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            self._out_feature_channels[name] = ch
            self._out_feature_strides[name] = 2 ** (k + 1)
        for name in out_features:
            if name not in self.stage_names:
                raise ConfigError(
                    f"MODEL.DARKNET.OUT_FEATURES: '{name}' is not one of {self.stage_names}"
                )
        self._out_features = list(out_features)

    @classmethod
    def from_config(cls, cfg, input_shape):
        d = cfg.MODEL.DARKNET
        return {
            "num_blocks": list(d.NUM_BLOCKS),
            "stem_out_channels": d.STEM_OUT_CHANNELS,
            "norm": d.NORM,
            "out_features": list(d.OUT_FEATURES),
            "in_channels": input_shape.channels,
        }

    def forward(self, x):
        """x: (N, 3, H, W), H and W divisible by 32 -> dict of (N, C_k, H / s_k, W / s_k)."""
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                out[name] = x
        return out

    @property
    def size_divisibility(self):
        return 2 ** len(self.stage_names)


@BACKBONE_REGISTRY.register()
def build_darknet_backbone(cfg, input_shape):
    """Darknet-53 (or a smaller Darknet) from MODEL.DARKNET."""
    return Darknet(cfg, input_shape)
