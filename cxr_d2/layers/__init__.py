"""Layers Detectron2 implements with compiled ops, here on torchvision's (CPU and CUDA)."""
from .deform_conv import DeformConv, ModulatedDeformConv

__all__ = ["DeformConv", "ModulatedDeformConv"]
