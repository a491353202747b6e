"""SSD: default boxes (`prior.py`), head, matching and losses (`loss.py`), meta-architecture."""

from .head import SSDHead
from .loss import hard_negative_mining, ssd_losses, ssd_match
from .prior import SSDPriorGenerator, ssd_cell_priors
from .ssd import SSD, ssd_inference

__all__ = [
    "SSD",
    "SSDHead",
    "SSDPriorGenerator",
    "hard_negative_mining",
    "ssd_cell_priors",
    "ssd_inference",
    "ssd_losses",
    "ssd_match",
]
