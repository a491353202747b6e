"""Helpers shared by the parity tests."""
import contextlib
import os
from types import SimpleNamespace

import pytest
import torch
from detectron2.modeling import build_model

from cxr_d2.convert import convert_checkpoint

__all__ = ["max_diff", "reference_model"]


def max_diff(ours, theirs):
    """The largest absolute difference between paired tensors."""
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


@contextlib.contextmanager
def reference_model(fixture, make_cfg, fmt):
    """
    Skips where `fixture`/outputs.pt is absent. Else, on 2 threads as the references ran (the
    thread count is restored on exit), gives a namespace: `cfg` (make_cfg()), `model` (built
    from it, in eval mode, with `fixture`/weights.pth converted as `fmt` and loaded strictly),
    `state` (the checkpoint as loaded), `conversion` and `outputs` (outputs.pt).
    """
    if not os.path.isfile(os.path.join(fixture, "outputs.pt")):
        pytest.skip(f"{fixture} is absent")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = make_cfg()
        model = build_model(cfg).eval()
        state = torch.load(os.path.join(fixture, "weights.pth"), weights_only=True)
        conversion = convert_checkpoint(fmt, state)
        assert conversion.unmapped == []
        model.load_state_dict(conversion.model, strict=True)
        outputs = torch.load(os.path.join(fixture, "outputs.pt"), weights_only=True)
        yield SimpleNamespace(cfg=cfg, model=model, state=state, conversion=conversion,
                              outputs=outputs)
    finally:
        torch.set_num_threads(threads)
