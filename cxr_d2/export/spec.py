"""
What each meta-architecture exports: the part of inference traced into the graph, and the
post-processing that stays outside it. One `ExportSpec` per meta-architecture class, registered
with `register_export`; `find_export_spec(model)` walks the model's class MRO, so a subclass
inherits its parent's spec unless it registers its own.

Contract of a spec (what `export_model` traces and `ExportedModel` runs):

* ``inference(model, image) -> Instances``: `image` is one float32 (C, H, W) tensor in
  cfg.INPUT.FORMAT, already resized as the test mapper does (ResizeShortestEdge); the
  function normalises, pads, runs the network and its in-graph post-processing (decoding,
  score threshold, top-k, NMS) and returns the Instances of that image in the resized frame
  (`image_size` = (H, W)), before any rescaling to the original film. Every field must be a
  Tensor or a tensor wrapper such as Boxes, so that TracingAdapter can flatten it.
* ``postprocess``: dotted name (`module.function`, found with pydoc.locate at load time, so
  the exported model needs no model class) of ``f(instances, height, width) -> Instances``
  that turns those Instances into what `model([{"image", "height", "width"}])` returns for
  the original (height, width): rescaling, clipping, empty-box removal, mask pasting.
* ``scripting_adapter`` (optional, for --export-method scripting): an nn.Module class built as
  ``cls(model)`` whose ``forward(image: Tensor) -> Dict[str, Tensor]`` returns the same
  Instances' fields (Boxes as their (R, 4) tensor) and that torch.jit.script compiles with
  Detectron2's `scripting_with_instances(adapter, scripting_fields)`.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ..errors import CXRError

__all__ = ["FORMATS", "ExportSpec", "register_export", "find_export_spec", "UnsupportedExport"]

FORMATS = ("torchscript", "onnx")


class UnsupportedExport(CXRError):
    """A model or format this package cannot export (names the architecture and the format)."""


@dataclass(frozen=True)
class ExportSpec:
    """
    Attributes:
        inference: (model, image (C, H, W) float32) -> Instances in the resized frame.
        postprocess: dotted name of f(instances, height, width) -> Instances, run outside.
        outside: one sentence saying what `postprocess` does (written to the sidecar JSON).
        formats: the formats known to export and run with identical detections.
        dynamic_size: whether the graph takes any (H, W); else only the sample's size.
        scripting_adapter: nn.Module class for torch.jit.script, or None (tracing only).
        scripting_fields: the Instances fields the scripted model uses, {name: type}
            (Detectron2's scripting_with_instances); None: the R-CNN and RetinaNet fields.
    """

    inference: Callable
    postprocess: str
    outside: str
    formats: Tuple[str, ...] = FORMATS
    dynamic_size: bool = True
    scripting_adapter: Optional[type] = None
    scripting_fields: Optional[Dict[str, type]] = None


_SPECS = {}


def register_export(meta_arch_cls, spec=None, **fields):
    """
    Register how `meta_arch_cls` (the class, e.g. detectron2's RetinaNet) exports: either an
    ExportSpec or its fields as keywords. Returns the spec. Registering again replaces it.
    """
    spec = spec or ExportSpec(**fields)
    _SPECS[meta_arch_cls] = spec
    return spec


def find_export_spec(model, fmt=None):
    """
    The ExportSpec of `model` (its class or the nearest registered base class). Raises
    UnsupportedExport naming the architecture when none is registered or `fmt` is not one of
    its formats.
    """
    name = type(model).__name__
    spec = next((_SPECS[c] for c in type(model).__mro__ if c in _SPECS), None)
    if spec is None:
        known = ", ".join(sorted(c.__name__ for c in _SPECS))
        raise UnsupportedExport(f"exporting {name} is not supported (exportable: {known})")
    if fmt is not None and fmt not in spec.formats:
        raise UnsupportedExport(
            f"{name} cannot be exported to {fmt}; its formats: {', '.join(spec.formats)}"
        )
    return spec
