"""
Every COCO backend against pycocotools, the reference: the same precision, recall and score
arrays and the same summary, exactly, on every case the evaluator meets (boxes, masks,
class-agnostic, more than 100 detections per image, no prediction, images without lesions,
crowd regions), and the same evaluator results end to end.
"""

import math

import numpy as np
import pytest

from cxr_d2.evaluation import CXRCOCOEvaluator, run_cocoeval, summarize
from cxr_d2.evaluation.benchmark import registered
from cxr_d2.evaluation.cocoeval import (
    BACKENDS,
    agnostic_gt,
    agnostic_results,
    backend_for,
    make_coco,
    resolve_backend,
)
from cxr_d2.evaluation.detections import Detections
from tests.evaluation.test_coco import _random_set

MAX_DETS = (1, 10, 100, 300)
FAST = [b for b in BACKENDS if b != "pycocotools"]


def _installed(backend):
    pytest.importorskip(backend, reason=f"{backend} (setup.py) is not installed")


def _case(name):
    """(ground truth, results, iou_type) of a named case."""
    iou_type = "segm" if name.startswith("segm") else "bbox"
    gt, dets = _random_set(7, num_images=16, masks=iou_type == "segm")
    if "crowd" in name:  # every fourth annotation a crowd region
        gt["annotations"] = [
            dict(a, iscrowd=int(k % 4 == 0)) for k, a in enumerate(gt["annotations"])
        ]
    if "agnostic" in name:
        gt, dets = agnostic_gt(gt), agnostic_results(dets)
    if "empty" in name:
        dets = []
    return gt, dets, iou_type


CASES = ["bbox", "bbox_agnostic", "bbox_crowd", "bbox_empty", "segm", "segm_agnostic_crowd"]


# hotcoco repeats pycocotools' float operations; faster-coco-eval's C++ precision differs in
# the last bit (1.0 for pycocotools' 0.9999999999999998, its tp / (tp + fp + eps)).
ATOL = {"hotcoco": 0.0, "faster_coco_eval": 1e-12}


def _equal_evals(got, ref, backend):
    for key in ("precision", "recall", "scores"):
        np.testing.assert_allclose(
            np.asarray(got.eval[key]), ref.eval[key], rtol=0, atol=ATOL[backend], err_msg=key
        )
    s_got, s_ref = summarize(got), summarize(ref)
    assert list(s_got) == list(s_ref)
    np.testing.assert_allclose(
        list(s_got.values()), list(s_ref.values()), rtol=0, atol=ATOL[backend]
    )


@pytest.mark.parametrize("case", CASES)
def test_every_backend_equals_pycocotools(case):
    gt, dets, iou_type = _case(case)
    ref = run_cocoeval(make_coco(gt), dets, iou_type, MAX_DETS, "pycocotools")
    summary = summarize(ref)
    assert ref.eval["precision"].shape[-1] == len(MAX_DETS)
    if "empty" in case:
        assert summary["AP"] == 0 and summary["AR"] == 0
    elif iou_type == "bbox":
        assert 0 < summary["AR@100"] < summary["AR"]  # more than 100 detections count
    else:
        assert summary["AR"] > 0
    assert any(not any(a["image_id"] == im["id"] for a in gt["annotations"]) for im in gt["images"])
    for backend in FAST:
        _installed(backend)
        got = run_cocoeval(make_coco(gt, backend), dets, iou_type, MAX_DETS, backend)
        _equal_evals(got, ref, backend)
    # The evaluator hands hotcoco columns, not dicts: the same numbers.
    _installed("hotcoco")
    columns = Detections.from_results(dets, masks=iou_type == "segm")
    got = run_cocoeval(make_coco(gt, "hotcoco"), columns, iou_type, MAX_DETS, "hotcoco")
    _equal_evals(got, ref, "hotcoco")


def test_auto_is_hotcoco_and_odd_ids_fall_back():
    _installed("hotcoco")
    assert resolve_backend("auto") == "hotcoco"
    gt, _, _ = _case("bbox")
    assert backend_for(gt, "hotcoco") == "hotcoco"
    named = dict(gt, images=[dict(im, id=f"img{im['id']}") for im in gt["images"]])
    assert backend_for(named, "hotcoco") != "hotcoco"  # hotcoco refuses non-integer ids
    assert backend_for(named, "pycocotools") == "pycocotools"
    with pytest.raises(ValueError, match="not one of pycocotools, faster_coco_eval, hotcoco"):
        resolve_backend("nope")


def _same(a, b, atol):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], atol) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return abs(a - b) <= atol * 100  # percentages


def test_evaluator_results_equal_with_every_backend(tmp_path):
    """bbox and segm, class-specific and agnostic: every metric equal to pycocotools'."""
    gt, dets = _random_set(3, num_images=10, masks=True)
    gt["annotations"] = [dict(a, iscrowd=int(k % 5 == 0)) for k, a in enumerate(gt["annotations"])]
    for d in dets:  # check_results wants width and height >= 0
        d["bbox"][2:] = [max(v, 0.0) for v in d["bbox"][2:]]
    with registered(gt, ["a", "b", "c"], "cxr_test_backends_e2e") as name:
        results = {}
        for backend in BACKENDS:
            _installed(backend)
            out = str(tmp_path / backend)
            ev = CXRCOCOEvaluator(
                name,
                ("bbox", "segm"),
                distributed=False,
                output_dir=out,
                backend=backend,
                froc=False,  # the same FROC whatever the backend: test_froc.py
            )
            results[backend] = ev.evaluate_results([dict(d) for d in dets], "test results")
    ref = results["pycocotools"]
    assert set(ref) == {"bbox", "bbox_agnostic", "segm", "segm_agnostic"}
    assert ref["segm"]["AP"] != ref["bbox"]["AP"]  # masks are not their boxes here
    for backend in FAST:
        assert _same(results[backend], ref, ATOL[backend]), backend


def test_benchmark_tool_checks_and_prints_the_table(capsys):
    """tools/benchmark_eval.py on a tiny set: every system checked against pycocotools."""
    _installed("hotcoco")
    from cxr_d2.evaluation.benchmark import main

    argv = ["--images", "4", "--dets", "5", "--repeat", "1", "--warmup", "0"]
    assert main(argv + ["--backends", "pycocotools", "hotcoco"]) == 0
    out = capsys.readouterr().out
    assert "every system's metrics equal pycocotools'" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 8 + 1  # header, 2 backends x plain/scoring x 2 tasks, evaluate()
    assert rows[-1].startswith("| evaluate(), hotcoco |")
