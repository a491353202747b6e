"""
AdelaiDet checkpoints (`{"model": state_dict}`, AdelaiDet's key names) -> cxr-d2: FCOS and
BlendMask (:mod:`.adelaidet_fcos`), SOLOv2 (:mod:`.adelaidet_solov2`), told apart by their keys.
"""

from ..errors import CXRError

__all__ = ["convert"]


def convert(checkpoint, **options):
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CXRError("an AdelaiDet checkpoint is a dict {'model': state_dict}")
    if any(k.startswith(("ins_head.", "mask_head.")) for k in state):
        from .adelaidet_solov2 import convert_solov2

        return convert_solov2(state, **options)
    if any(k.startswith("proposal_generator.fcos_head.") for k in state):
        from .adelaidet_fcos import convert_fcos

        return convert_fcos(state, **options)  # FCOS, and BlendMask (its FCOS + bases)
    raise CXRError(
        "not an AdelaiDet FCOS, BlendMask or SOLOv2 checkpoint (no proposal_generator.fcos_head. "
        "or ins_head. keys)"
    )
