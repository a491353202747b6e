"""Detectron2 imports in a fresh interpreter, whichever module comes first."""
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _installer():
    spec = importlib.util.spec_from_file_location(
        "install_detectron2", os.path.join(ROOT, "tools", "install_detectron2.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fresh_interpreter_imports_each_first():
    assert _installer().probe(sys.executable) == []


def test_no_compiled_ops_needed():
    import detectron2

    from cxr_d2.evaluation import build_coco_evaluator  # noqa: F401

    has_c = importlib.util.find_spec("detectron2._C") is not None
    if has_c:
        pytest.skip("an official build with detectron2._C is installed")
    from detectron2.layers import deform_conv

    with pytest.raises(RuntimeError, match="pure Python by cxr-d2"):
        deform_conv._C.deform_conv_forward
    assert detectron2.__version__.startswith("0.6")
