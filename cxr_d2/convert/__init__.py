"""
Converters of published checkpoints into cxr-d2's key names (`tools/convert_weights.py`).

One module per source (`SOURCES`), each with `convert(checkpoint, **options) -> Conversion`,
where `checkpoint` is what `torch.load` (or the source's own reader) returns. The result is
written as a Detectron2 checkpoint `{"model": state_dict, "__author__": ...}` that
:class:`cxr_d2.engine.AtomicCheckpointer` loads, and every key is accounted for: mapped,
dropped (with why) or not mapped.
"""

import importlib
from dataclasses import dataclass, field

__all__ = ["SOURCES", "Conversion", "convert_checkpoint"]

# --from name -> module under cxr_d2.convert
SOURCES = {
    "detectron2": "detectron2",
    "torchvision": "torchvision",
    "adelaidet": "adelaidet",
    "sipmask": "sipmask",
    "darknet": "darknet",
    "torchxrayvision": "torchxrayvision",
}


@dataclass
class Conversion:
    """
    Attributes:
        model (dict[str, Tensor]): the converted state dict, cxr-d2 names.
        mapped (list[tuple[str, str]]): (source key, cxr-d2 key).
        dropped (list[tuple[str, str]]): (source key, why it has no counterpart).
        unmapped (list[str]): source keys the converter does not know (an error unless the
            caller accepts them).
        notes (list[str]): anything else the user must know (e.g. a folded input conv).
    """

    model: dict = field(default_factory=dict)
    mapped: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    unmapped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, src, dst, value):
        self.model[dst] = value
        self.mapped.append((src, dst))

    def drop(self, src, why):
        self.dropped.append((src, why))


def convert_checkpoint(source, checkpoint, **options):
    """The :class:`Conversion` of `checkpoint` by the converter of `source` (a key of SOURCES)."""
    module = importlib.import_module(f"{__name__}.{SOURCES[source]}")
    return module.convert(checkpoint, **options)
