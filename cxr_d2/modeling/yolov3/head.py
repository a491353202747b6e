"""YOLOv3's neck (detection blocks merging upsampled coarse features) and output convs."""

from typing import List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from ...errors import ConfigError
from ...layers import conv_block, prior_bias
from ..backbone.darknet import DARKNET_CONV

__all__ = ["YOLOv3Head"]


def _detection_block(in_ch, mid, norm):
    """1x1 mid, 3x3 2mid, 1x1 mid, 3x3 2mid, 1x1 mid (YOLOv3's five-conv block)."""
    chans = [in_ch, mid, 2 * mid, mid, 2 * mid, mid]
    return nn.Sequential(
        *[
            conv_block(chans[i], chans[i + 1], 1 if i % 2 == 0 else 3, norm=norm, **DARKNET_CONV)
            for i in range(5)
        ]
    )


class YOLOv3Head(nn.Module):
    """
    From the coarsest feature to the finest: a detection block, then (a) a 3x3 conv and a 1x1
    conv to A * (5 + K) outputs per cell, (b) a 1x1 conv halving the channels, 2x nearest
    upsampling and concatenation with the next finer feature, which feeds the next block.
    Per anchor the outputs are (tx, ty, tw, th, objectness, K class logits).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes,
        num_anchors,
        neck_channels,
        norm="BN",
        prior_prob=0.01,
    ):
        """
        Args:
            input_shape: shapes of the features, finest first.
            num_classes (int): K.
            num_anchors (list[int]): anchors per feature, finest first.
            neck_channels (list[int]): mid channels of the detection blocks, coarsest first.
            norm (str): normalisation of the neck convs.
            prior_prob (float): initial objectness and class probability.
        """
        super().__init__()
        if len(neck_channels) != len(input_shape):
            raise ConfigError(
                f"MODEL.YOLOV3.NECK_CHANNELS has {len(neck_channels)} entries for "
                f"{len(input_shape)} "
                "features (MODEL.YOLOV3.IN_FEATURES): give one per feature"
            )
        self.num_classes = num_classes
        self.blocks, self.outputs, self.routes = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        shapes = list(reversed(input_shape))
        anchors = list(reversed(num_anchors))
        in_ch = shapes[0].channels
        bias = prior_bias(prior_prob)
        for k, (mid, a) in enumerate(zip(neck_channels, anchors)):
            self.blocks.append(_detection_block(in_ch, mid, norm))
            out = nn.Conv2d(2 * mid, a * (5 + num_classes), 1)
            nn.init.normal_(out.weight, std=0.01)
            nn.init.zeros_(out.bias)
            with torch.no_grad():
                out.bias.view(a, 5 + num_classes)[:, 4:] = bias
            head_conv = conv_block(mid, 2 * mid, 3, norm=norm, **DARKNET_CONV)
            self.outputs.append(nn.Sequential(head_conv, out))
            if k + 1 < len(shapes):
                self.routes.append(conv_block(mid, mid // 2, 1, norm=norm, **DARKNET_CONV))
                in_ch = mid // 2 + shapes[k + 1].channels

    @classmethod
    def from_config(cls, cfg, input_shape, num_anchors):
        y = cfg.MODEL.YOLOV3
        return {
            "input_shape": input_shape,
            "num_classes": y.NUM_CLASSES,
            "num_anchors": num_anchors,
            "neck_channels": list(y.NECK_CHANNELS),
            "norm": y.NORM,
        }

    def forward(self, features):
        """
        Args:
            features (list[Tensor]): (N, C_k, H_k, W_k), finest first, each level twice the
                size of the next.

        Returns:
            list[Tensor]: (N, A_k * (5 + K), H_k, W_k), finest first.
        """
        outputs = []
        x = None
        for k, feature in enumerate(reversed(features)):
            if x is not None:
                x = F.interpolate(self.routes[k - 1](x), size=feature.shape[-2:], mode="nearest")
                x = torch.cat([x, feature], dim=1)
            else:
                x = feature
            x = self.blocks[k](x)
            outputs.append(self.outputs[k](x))
        return outputs[::-1]
