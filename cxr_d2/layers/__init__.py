"""
Layers shared by the models: the conv + norm + activation block, weight initialisations, and
deformable convolution (Detectron2's classes, here on torchvision's ops: CPU and CUDA).
"""
from .blocks import conv_block
from .deform_conv import DeformConv, ModulatedDeformConv
from .weight_init import init_conv, prior_bias

__all__ = ["DeformConv", "ModulatedDeformConv", "conv_block", "init_conv", "prior_bias"]
