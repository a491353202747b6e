"""MODEL.RESNETS.DEFORM_INTERVAL, read by cxr_d2/modeling/backbone/deform_resnet.py."""

__all__ = ["add_deform_resnet_config"]


def add_deform_resnet_config(cfg):
    """Add MODEL.RESNETS.DEFORM_INTERVAL (AdelaiDet's key) when absent."""
    if "DEFORM_INTERVAL" not in cfg.MODEL.RESNETS:
        # In a stage with DEFORM_ON_PER_STAGE, block i (0-based) has a deformable 3x3 conv when
        # i % DEFORM_INTERVAL == 0; 1 = every block (Detectron2), 3 = SipMask++ / YOLACT++.
        cfg.MODEL.RESNETS.DEFORM_INTERVAL = 1
