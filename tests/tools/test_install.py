"""Detectron2 imports in a fresh interpreter, whichever module comes first."""
import importlib.util
import os
import subprocess
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


def test_export_and_analysis_import_without_caffe2():
    """Detectron2 0.6 imported caffe2 in detectron2.export; torch has had no caffe2 since 1.10."""
    code = (
        "import importlib.util\n"
        "from detectron2.utils.analysis import FlopCountAnalysis, parameter_count_table\n"
        "from detectron2.export import TracingAdapter, scripting_with_instances\n"
        "print(importlib.util.find_spec('caffe2') is not None)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if r.stdout.strip() == "True":
        pytest.skip("caffe2 is installed: detectron2.export's caffe2 API is imported too")
