"""SSD's prediction head: one 3x3 conv for class scores and one for box deltas per source."""

from typing import List

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

__all__ = ["SSDHead"]


class SSDHead(nn.Module):
    """
    For source layer k with A_k default boxes per cell: a 3x3 conv to A_k * (K + 1) class
    logits (K classes + background, the last) and a 3x3 conv to A_k * 4 box deltas.
    """

    @configurable
    def __init__(self, *, input_shape: List[ShapeSpec], num_classes, num_priors: List[int]):
        """
        Args:
            input_shape: per source, its channels.
            num_classes (int): K foreground classes.
            num_priors (list[int]): A_k per source.
        """
        super().__init__()
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList()
        self.box_convs = nn.ModuleList()
        for shape, a in zip(input_shape, num_priors):
            self.cls_convs.append(nn.Conv2d(shape.channels, a * (num_classes + 1), 3, padding=1))
            self.box_convs.append(nn.Conv2d(shape.channels, a * 4, 3, padding=1))
        for conv in list(self.cls_convs) + list(self.box_convs):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    @classmethod
    def from_config(cls, cfg, input_shape, num_priors):
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.SSD.NUM_CLASSES,
            "num_priors": num_priors,
        }

    def forward(self, features):
        """
        Args:
            features (list[Tensor]): (N, C_k, H_k, W_k) per source.

        Returns:
            logits (list[Tensor]): (N, A_k * (K + 1), H_k, W_k).
            deltas (list[Tensor]): (N, A_k * 4, H_k, W_k).
        """
        logits = [conv(x) for conv, x in zip(self.cls_convs, features)]
        deltas = [conv(x) for conv, x in zip(self.box_convs, features)]
        return logits, deltas
