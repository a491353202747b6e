"""
The error page's counts (tools/error_report.py) against a hand-worked case, pycocotools'
COCOeval matching and the evaluator's FROC curves; the page file itself (self-contained).
"""

import contextlib
import io
import json
import re

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from cxr_d2.evaluation import CXRCOCOEvaluator
from cxr_d2.evaluation.cocoeval import make_coco
from cxr_d2.evaluation.errors_page import build_page_data, count_errors, dataset_ground_truth
from cxr_d2.evaluation.errors_page.cli import main
from tests.evaluation.errors_page_cases import (
    HAND_EXPECTED,
    HAND_EXPECTED_B,
    HAND_FROC,
    expected,
    hand_dataset,
    hand_results,
    phantom_results,
)
from tests.helpers import TINY

PHANTOM = f"{TINY}_train"


def _coco(dataset):
    gt, _ = dataset_ground_truth(dataset)
    return make_coco(gt)


@pytest.mark.parametrize("threshold", sorted(HAND_EXPECTED))
def test_hand_worked_counts(threshold):
    with hand_dataset() as name:
        counts = count_errors(_coco(name), hand_results(), threshold)
    assert counts == expected(HAND_EXPECTED[threshold])


def test_hand_worked_class_filter():
    with hand_dataset() as name:
        counts = count_errors(_coco(name), hand_results(), 0.0, category_ids=[1])
    assert counts == expected(HAND_EXPECTED_B)


def _cocoeval_counts(coco_gt, results, threshold, iou_thresh, iou_type):
    """TP/FP/FN per image from pycocotools' own greedy matching (COCOeval.evaluateImg)."""
    kept = [dict(r) for r in results if r["score"] >= threshold]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(
            coco_gt,
            coco_gt.loadRes(kept) if kept else make_coco(dict(coco_gt.dataset, annotations=[])),
            iou_type,
        )
        ev.params.iouThrs = np.array([iou_thresh])
        ev.params.maxDets = [10**6]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    out = {img: [0, 0, 0] for img in coco_gt.getImgIds()}
    for e in ev.evalImgs:
        if e is None:
            continue
        matched, ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        counts = out[e["image_id"]]
        counts[0] += int((matched & ~ignored).sum())
        counts[1] += int((~matched & ~ignored).sum())
        gt_ignore = np.asarray(e["gtIgnore"], dtype=bool)
        counts[2] += int(((e["gtMatches"][0] == 0) & ~gt_ignore).sum())
    return out


@pytest.mark.parametrize(
    "threshold,iou_type", [(0.0, "bbox"), (0.35, "bbox"), (0.7, "bbox"), (0.35, "segm")]
)
def test_counts_equal_cocoeval_matching(tiny_phantom, threshold, iou_type):
    coco = _coco(PHANTOM)
    results = phantom_results(PHANTOM, masks=iou_type == "segm")
    counts = count_errors(coco, results, threshold, iou_type)
    reference = _cocoeval_counts(coco, results, threshold, 0.5, iou_type)
    assert {img: [c.tp, c.fp, c.fn] for img, c in counts.items()} == reference
    assert sum(c.tp for c in counts.values()) > 5 and sum(c.fp for c in counts.values()) > 5


def _vertices(points):
    """The evaluator's step-curve vertices: first point of each sensitivity, and the last."""
    return [
        p
        for k, p in enumerate(points)
        if k == 0 or p[1] != points[k - 1][1] or k == len(points) - 1
    ]


def test_counts_give_the_evaluators_froc(tiny_phantom, tmp_path):
    coco = _coco(PHANTOM)
    results = phantom_results(PHANTOM)
    evaluator = CXRCOCOEvaluator(
        PHANTOM, distributed=False, output_dir=str(tmp_path), agnostic=False, backend="pycocotools"
    )
    evaluator.evaluate_results(results, where="test")
    froc = json.loads((tmp_path / "evaluation.json").read_text())["froc"]["bbox"]["classes"]
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    for cats, name in [(None, "overall")] + [([k], v) for k, v in names.items()]:
        keep = [r for r in results if cats is None or r["category_id"] in cats]
        points = [(0.0, 0.0)]
        for t in sorted({r["score"] for r in keep}, reverse=True):
            counts = count_errors(coco, results, t, category_ids=cats).values()
            tp, fp = sum(c.tp for c in counts), sum(c.fp for c in counts)
            points.append((fp / len(counts), tp / sum(c.lesions for c in counts)))
        np.testing.assert_allclose(
            _vertices(points), np.c_[froc[name]["fppi"], froc[name]["sens"]], err_msg=name
        )


def test_page_is_self_contained_and_holds_pythons_counts(tiny_phantom, tmp_path):
    preds = tmp_path / "coco_instances_results.json"
    preds.write_text(json.dumps(phantom_results(PHANTOM)))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["--dataset", PHANTOM, "--input", str(preds), "--thumb-size", "64"]) == 0
    page = (tmp_path / "errors.html").read_text()
    counts = count_errors(_coco(PHANTOM), phantom_results(PHANTOM), 0.5)
    tp = sum(c.tp for c in counts.values())
    assert f"TP {tp}," in out.getvalue() and "(0 without thumbnail)" in out.getvalue()
    # Nothing is fetched: every src/href is a data: URI, there is no <link>, no url(...).
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert all(r.startswith("data:") for r in refs), refs[:3]
    assert not re.search(r"<link|url\(|https?://(?!www\.w3\.org/2000/svg)", page)
    data = json.loads(
        re.search(
            r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert data["python_totals"]["tp"] == tp and len(data["images"]) == len(counts)
    assert all(im["thumb"].startswith("data:image/jpeg;base64,") for im in data["images"])


def test_bad_input_is_one_line(tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([dict(hand_results()[0], category_id=7)]))

    def run(*argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(list(argv))
        return rc, err.getvalue()

    with hand_dataset() as name:
        rc, err = run("--dataset", name, "--input", str(preds))
        assert rc == 1 and re.fullmatch(
            r"error: predictions file .*p.json: prediction 0 \(image_id 1\) has category_id 7, "
            r"which the dataset does not have .*\n",
            err,
        )
        rc, err = run("--dataset", name, "--input", str(tmp_path / "missing.json"))
        assert rc == 1 and "missing.json does not exist" in err
        rc, err = run("--dataset", name, "--input", str(preds), "--iou-thresh", "0")
        assert rc == 1 and err == "error: --iou-thresh 0 is not in (0, 1]\n"
    rc, err = run("--dataset", "nope", "--input", str(preds))
    assert rc == 1 and err == "error: --dataset 'nope' is not a registered dataset\n"


def test_missing_image_gets_a_note_not_a_failure():
    with hand_dataset() as name:
        data, counts, skipped = build_page_data(name, hand_results(), "test")
    assert skipped == 5 and all(im["thumb"] is None for im in data["images"])
    assert "hand1.png" in data["images"][0]["note"]
    assert data["python_totals"] == {"tp": 3, "fp": 4, "fn": 2}  # HAND_EXPECTED[0.5]


def test_dataset_and_hit_iou_from_the_config(tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps(hand_results()))
    out = io.StringIO()
    with hand_dataset() as name:
        argv = [
            "--input",
            str(preds),
            "--score-threshold",
            "0",
            "--config-file",
            "configs/Phantom/retinanet_R_18_FPN_cpu.yaml",
            "DATASETS.TEST",
            f"('{name}',)",
            "CXR.EVAL.FROC.IOU_THRESH",
            "0.3",
        ]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main(argv) == 0
    # IoU >= 0.3: the b detection of image 2 (IoU 1/3) finds its lesion, and on image 5 B
    # (IoU 1/3 with the second lesion) finds the one A left: TP 5, FP 4, nothing missed.
    assert "at score >= 0: TP 5, FP 4, missed 0;" in out.getvalue()


def test_benchmark_tool_runs(tiny_phantom, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from cxr_d2.evaluation.errors_page import benchmark

    out = io.StringIO()
    argv = [
        "--images",
        "40",
        "--clutter",
        "1",
        "--repeat",
        "1",
        "--thumb-size",
        "32",
        "--output",
        str(tmp_path / "b.html"),
    ]
    try:
        with contextlib.redirect_stdout(out):
            assert benchmark.main(argv) == 0
    finally:
        DatasetCatalog.remove(benchmark.NAME)
        MetadataCatalog.remove(benchmark.NAME)
    lesions = sum(len(r["annotations"]) for r in DatasetCatalog.get(PHANTOM))
    # 40 images: the 32 films, then the first 8 again; one hit per lesion and one clutter box.
    first8 = sum(len(r["annotations"]) for r in DatasetCatalog.get(PHANTOM)[:8])
    assert f"40 images, {lesions + first8 + 40} predictions" in out.getvalue()
    assert (tmp_path / "b.html").stat().st_size > 0


def test_hand_worked_froc_is_the_evaluators():
    from cxr_d2.evaluation.froc import compute_froc

    with hand_dataset() as name:
        overall = compute_froc(_coco(name), hand_results())["classes"]["overall"]
    np.testing.assert_allclose(np.c_[overall["fppi"], overall["sens"]], HAND_FROC, atol=1e-12)
