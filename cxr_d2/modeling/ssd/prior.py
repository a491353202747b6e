"""SSD's default boxes ("priors") as a Detectron2 anchor generator."""

import math

import torch
from detectron2.config import configurable
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from ...errors import ConfigError

__all__ = ["SSDPriorGenerator", "ssd_cell_priors"]


def ssd_cell_priors(min_size, max_size, aspect_ratios):
    """
    The default boxes of one cell of one source layer, centred at (0, 0), in SSD's order:
    min x min, s' x s' with s' = sqrt(min * max), then for each r: (min*sqrt(r), min/sqrt(r))
    and its transpose (w, h).

    Returns:
        Tensor (2 + 2 * len(aspect_ratios), 4): XYXY boxes in input pixels.
    """
    wh = [(min_size, min_size)]
    if max_size:
        big = math.sqrt(min_size * max_size)
        wh.append((big, big))
    for r in aspect_ratios:
        wh += [
            (min_size * math.sqrt(r), min_size / math.sqrt(r)),
            (min_size / math.sqrt(r), min_size * math.sqrt(r)),
        ]
    wh = torch.tensor(wh, dtype=torch.float64)
    return torch.cat([-wh / 2, wh / 2], dim=1)


class SSDPriorGenerator(DefaultAnchorGenerator):
    """
    Default boxes of SSD: for source layer k with step s_k, cell (i, j) is centred at
    ((j + offset) s_k, (i + offset) s_k) and holds the boxes of `ssd_cell_priors`. Boxes are
    in absolute input pixels (XYXY), not clipped. Output order: per level, (H, W, A) flattened,
    matching `permute_to_N_HWA_K` of the head's outputs.
    """

    @configurable
    def __init__(self, *, min_sizes, max_sizes, aspect_ratios, strides, offset=0.5):
        """
        Args:
            min_sizes, max_sizes (list[float]): per level, the min and max box size (pixels).
            aspect_ratios (list[list[float]]): per level, ratios r >= 1 (r and 1/r are added).
            strides (list[int]): per level, the step between box centres (pixels).
            offset (float): centre offset within a cell, in [0, 1).
        """
        n = len(strides)
        for name, value in (
            ("MIN_SIZES", min_sizes),
            ("MAX_SIZES", max_sizes),
            ("ASPECT_RATIOS", aspect_ratios),
        ):
            if len(value) != n:
                raise ConfigError(
                    f"MODEL.SSD.PRIOR.{name} has {len(value)} entries but there are {n} source "
                    "layers (MODEL.SSD.IN_FEATURES / PRIOR.STEPS): give one per layer"
                )
        sizes = [[float(a), float(b)] for a, b in zip(min_sizes, max_sizes)]
        super().__init__(
            sizes=sizes,
            aspect_ratios=[list(r) for r in aspect_ratios],
            strides=list(strides),
            offset=offset,
        )

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        p = cfg.MODEL.SSD.PRIOR
        return {
            "min_sizes": list(p.MIN_SIZES),
            "max_sizes": list(p.MAX_SIZES),
            "aspect_ratios": [list(r) for r in p.ASPECT_RATIOS],
            "strides": list(p.STEPS),
            "offset": p.OFFSET,
        }

    def generate_cell_anchors(self, sizes, aspect_ratios):
        min_size, max_size = sizes
        return ssd_cell_priors(min_size, max_size, aspect_ratios)
