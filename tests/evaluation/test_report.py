"""
tools/report.py over two phantom runs: one trained (3 iterations) and scored through the real
Trainer and its evaluator hook, one scored by the evaluator on predictions made from the
ground truth; plus runs that cannot be read, which are listed and skipped.
"""

import csv
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from cxr_d2.engine import Trainer

from tests.helpers import TINY, tiny_config


def _cfg(family, output_dir, extra=()):
    return tiny_config(family, "OUTPUT_DIR", str(output_dir), *extra)


def _trained_run(root):
    """Mask R-CNN, 3 iterations; DefaultTrainer's EvalHook scores it when training ends."""
    out = root / "mask_rcnn"
    cfg = _cfg("mask_rcnn", out, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return out


def _gt_predictions(record, rng):
    """The lesions of an image as predictions: jittered boxes, random scores, one false positive."""
    boxes = [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in record["annotations"]
    ]
    boxes = np.asarray(boxes + [[2.0, 2.0, 30.0, 30.0]], dtype=np.float32).reshape(-1, 4)
    boxes = boxes + rng.normal(0, 1.0, boxes.shape).astype(np.float32)
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(torch.from_numpy(boxes))
    inst.scores = torch.from_numpy(rng.uniform(0.1, 1.0, len(boxes)).astype(np.float32))
    inst.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
    return {"instances": inst}


def _agnostic_run(root):
    """A RetinaNet 'trained on' the agnostic phantom, scored on its test and val splits."""
    out = root / "retinanet"
    train = (
        "DATASETS.TRAIN",
        f"('{TINY}_agnostic_train',)",
        "DATASETS.TEST",
        f"('{TINY}_agnostic_test',)",
    )
    cfg = _cfg("retinanet", out, train)
    rng = np.random.default_rng(0)
    for split in ("test", "val"):
        name = f"{TINY}_agnostic_{split}"
        evaluator = Trainer.build_evaluator(cfg, name)
        evaluator.reset()
        for record in DatasetCatalog.get(name):
            evaluator.process([record], [_gt_predictions(record, rng)])
        evaluator.evaluate()
    return out


@pytest.fixture(scope="module")
def runs(tiny_phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    empty = root / "not_evaluated"
    empty.mkdir()
    broken = root / "broken" / "inference" / f"{TINY}_test"
    broken.mkdir(parents=True)
    (broken / "evaluation.json").write_text("{not json")
    return {
        "mask": _trained_run(root),
        "retina": _agnostic_run(root),
        "empty": empty,
        "broken": root / "broken",
    }


def _report(*paths, out):
    cmd = [
        sys.executable,
        os.path.join("tools", "report.py"),
        *map(str, paths),
        "--output",
        str(out),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_trainer_writes_metrics(runs):
    path = runs["mask"] / "inference" / f"{TINY}_test" / "evaluation.json"
    metrics = json.loads(path.read_text())
    assert metrics["model"] == "Mask R-CNN R-18-FPN"
    assert set(metrics["tasks"]) >= {"bbox", "segm", "bbox_agnostic", "segm_agnostic", "bbox_froc"}
    for task in ("bbox", "segm", "bbox_agnostic", "segm_agnostic"):
        assert {"AP", "AP50", "AR", "AR@100", "AR@300"} <= set(metrics["tasks"][task])
    assert "MASK_ON: true" in metrics["config"]
    assert metrics["split_manifest"] == str(runs["mask"] / "split_manifest.json")
    run_manifest = json.loads((runs["mask"] / "split_manifest.json").read_text())
    assert len(run_manifest[f"{TINY}_test"]) == metrics["num_images"] > 0
    assert (path.parent / "froc_segm_agnostic.png").is_file()


def test_report_writes_three_tables(runs, tmp_path):
    r = _report(runs["mask"], runs["retina"], runs["empty"], runs["broken"], out=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2, r.stderr
    assert "not_evaluated" in skipped[0] and "no evaluation.json" in skipped[0]
    assert "broken" in skipped[1] and "cannot read" in skipped[1]
    for stem in ("table1_class_specific", "table2_class_agnostic", "table3_instance_segmentation"):
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 0, (stem, ext)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"

    mask = json.loads((runs["mask"] / "inference" / f"{TINY}_test" / "evaluation.json").read_text())
    with open(tmp_path / "table1_class_specific.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Model", f"{TINY}_test mAP", f"{TINY}_test AP50", f"{TINY}_test AR"]
    assert rows[1] == ["Mask R-CNN R-18-FPN"] + [
        f"{mask['tasks']['bbox'][k]:.1f}" for k in ("AP", "AP50", "AR")
    ]
    table2 = (tmp_path / "table2_class_agnostic.md").read_text()
    # The Mask R-CNN scored class-agnostically next to the agnostic-trained RetinaNet; it was
    # not evaluated on val: a missing cell.
    assert "Mask R-CNN R-18-FPN" in table2 and "RetinaNet R-18-FPN (agnostic training)" in table2
    mask_row = next(line for line in table2.splitlines() if line.startswith("| Mask R-CNN"))
    assert mask_row.count("n/a") == 3
    assert f"{mask['tasks']['bbox_agnostic']['AP']:.1f}" in mask_row
    table3 = (tmp_path / "table3_instance_segmentation.md").read_text()
    assert "Mask R-CNN R-18-FPN" in table3 and "RetinaNet" not in table3
    tex = (tmp_path / "table2_class_agnostic.tex").read_text()
    assert "\\toprule" in tex and "cxr\\_phantom\\_tiny\\_val" in tex
    # Every evaluation, boxes and masks, is resampled: its predictions and ground truth found.
    assert "no interval" not in r.stdout, r.stdout
    spread = _csv_rows(tmp_path / "table3_instance_segmentation_uncertainty.csv")
    assert spread[0]["Model"] == "Mask R-CNN R-18-FPN" and spread[0]["Seeds"] == "1"
    assert float(spread[0]["mAP lo"]) <= float(spread[0]["mAP"]) <= float(spread[0]["mAP hi"])


def test_report_without_readable_runs_fails_in_one_line(tmp_path, capsys):
    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    (tmp_path / "not_evaluated").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                str(tmp_path / "not_evaluated"),
                str(tmp_path / "nowhere"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
    assert str(exit_info.value.code).startswith("error: none of the 2 run folders")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"skipped: {tmp_path / 'not_evaluated'}: no evaluation.json")
    assert err[1] == f"skipped: {tmp_path / 'nowhere'}: no such file or folder"
    assert not (tmp_path / "out").exists()  # nothing written


def _metrics(**changes):
    record = {
        "dataset": "cxr_phantom_test",
        "model": "RetinaNet R-18-FPN",
        "tasks": {"bbox": {"AP": 50.0, "AP50": 70.0, "AR": 60.0}},
    }
    record.update(changes)
    return record


# (case, evaluation.json content, reason fragment on its "skipped:" line)
BAD_METRICS = [
    ("not JSON", b"AP,AP50\n", "cannot read it (Expecting value"),
    ("truncated", json.dumps(_metrics()).encode()[:-5], "cannot read it"),
    ("not UTF-8", b'{"dataset": "\xff"}', "cannot read it ('utf-8' codec can't decode"),
    ("a list", b"[]", "not a metrics file of cxr_d2 (no 'tasks')"),
    ("tasks a list", json.dumps(_metrics(tasks=[])).encode(), "not a metrics file of cxr_d2"),
    ("no dataset", json.dumps(_metrics(dataset="")).encode(), "no 'dataset' in it"),
    ("dataset a number", json.dumps(_metrics(dataset=3)).encode(), "'dataset' is 3, not"),
    ("model a list", json.dumps(_metrics(model=["x"])).encode(), "'model' is ['x'], not a"),
    (
        "agnostic flag as text",
        json.dumps(_metrics(agnostic_dataset="no")).encode(),
        "'agnostic_dataset' is 'no', not true or false",
    ),
    (
        "task a number",
        json.dumps(_metrics(tasks={"bbox": 3})).encode(),
        "'tasks.bbox' is not an object of metrics",
    ),
    (
        "metric as text",
        json.dumps(_metrics(tasks={"segm": {"AP": "high"}})).encode(),
        "'tasks.segm.AP' is 'high', not a number or null",
    ),
    (
        "metric infinite",
        b'{"dataset": "d", "tasks": {"bbox": {"AR": Infinity}}}',
        "'tasks.bbox.AR' is inf, not a number or null",
    ),
]


@pytest.mark.parametrize(
    "content,reason", [c[1:] for c in BAD_METRICS], ids=[c[0] for c in BAD_METRICS]
)
def test_unreadable_evaluation_json_is_skipped_in_one_line(content, reason, tmp_path, capsys):
    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    good, bad = tmp_path / "good" / "evaluation.json", tmp_path / "bad" / "evaluation.json"
    good.parent.mkdir()
    bad.parent.mkdir()
    good.write_text(json.dumps(_metrics()))
    bad.write_bytes(content)
    assert main([str(good.parent), str(bad.parent), "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"skipped: {bad}: {reason}"), err
    table = (tmp_path / "out" / "table1_class_specific.csv").read_text().splitlines()
    assert table[1] == "RetinaNet R-18-FPN,50.0,70.0,60.0"  # the good run, still reported


@pytest.mark.parametrize("target", ["table2_class_agnostic.tex", "tables.md", "report.png"])
def test_full_disk_while_writing_the_report_ends_in_one_line(target, tmp_path, monkeypatch):
    from tests.evaluation.test_validate import _fail_writes

    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    run = tmp_path / "run" / "evaluation.json"
    run.parent.mkdir()
    run.write_text(json.dumps(_metrics()))
    out = tmp_path / "out"
    _fail_writes(monkeypatch, target, 28)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run.parent), "--output", str(out)])
    assert str(exit_info.value.code) == (
        f"error: cannot write {out / target} (No space left on device); free space on that "
        "disk, or write the outputs elsewhere"
    )
    assert not (out / target).exists() and not list(out.glob("*.tmp"))


# ---- seeds, bootstrap intervals, paired differences -------------------------------------------

SCORED = f"{TINY}_train"  # 32 films: enough images to resample


def _scored_run(root, name, family, seed, jitter):
    """A run 'of seed `seed`': the evaluator scores lesions moved by ~`jitter` px on SCORED."""
    out = root / name
    extra = ("SEED", str(seed), "DATASETS.TEST", f"('{SCORED}',)", "CXR.EVAL.FROC.ENABLED", "False")
    cfg = _cfg(family, out, extra)
    rng = np.random.default_rng(seed)
    evaluator = Trainer.build_evaluator(cfg, SCORED)
    evaluator.reset()
    for record in DatasetCatalog.get(SCORED):
        pred = _gt_predictions(record, rng)
        boxes = pred["instances"].pred_boxes.tensor
        shift = rng.normal(0, jitter, (len(boxes), 2)).astype(np.float32)
        boxes += torch.from_numpy(np.tile(shift, 2))  # moved, not resized
        evaluator.process([record], [pred])
    evaluator.evaluate()
    return out


@pytest.fixture(scope="module")
def seeded_runs(tiny_phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    retina = [_scored_run(root, f"retina_s{s}", "retinanet", s, 2.0) for s in (1, 2, 3)]
    return {"retina": retina, "faster": _scored_run(root, "faster", "faster_rcnn", 7, 6.0)}


def _evaluation(run):
    return json.loads((run / "inference" / SCORED / "evaluation.json").read_text())


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_seeds_are_one_row_with_mean_std_and_a_bootstrap_interval(seeded_runs, tmp_path, capsys):
    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    runs = [*seeded_runs["retina"], seeded_runs["faster"]]
    assert main([*map(str, runs), "--output", str(tmp_path), "--bootstrap", "100"]) == 0
    assert "no interval" not in capsys.readouterr().out
    aps = [_evaluation(r)["tasks"]["bbox"]["AP"] for r in seeded_runs["retina"]]
    assert len(set(aps)) == 3  # the seeds differ
    table = _csv_rows(tmp_path / "table1_class_specific.csv")
    assert [r["Model"] for r in table] == ["RetinaNet R-18-FPN", "Faster R-CNN R-18-FPN"]
    assert table[0][f"{SCORED} mAP"] == f"{np.mean(aps):.1f}"

    rows = {r["Model"]: r for r in _csv_rows(tmp_path / "table1_class_specific_uncertainty.csv")}
    retina, faster = rows["RetinaNet R-18-FPN"], rows["Faster R-CNN R-18-FPN"]
    assert retina["Seeds"] == "3" and faster["Seeds"] == "1"
    assert float(retina["mAP"]) == pytest.approx(np.mean(aps), abs=1e-3)
    assert float(retina["mAP std"]) == pytest.approx(np.std(aps, ddof=1), abs=1e-3)
    assert faster["mAP std"] == ""
    for row in (retina, faster):
        for name in ("mAP", "AP50", "AR"):
            lo, hi = float(row[f"{name} lo"]), float(row[f"{name} hi"])
            assert lo < float(row[name]) < hi, (row["Model"], name, lo, hi)
    md = (tmp_path / "table1_class_specific_uncertainty.md").read_text()
    assert f"{np.mean(aps):.1f} ± {np.std(aps, ddof=1):.1f} [" in md

    diffs = _csv_rows(tmp_path / "paired_differences.csv")
    ap = next(d for d in diffs if d["Table"] == "Table I" and d["Metric"] == "mAP")
    assert (ap["Model A"], ap["Model B"]) == ("RetinaNet R-18-FPN", "Faster R-CNN R-18-FPN")
    diff = np.mean(aps) - _evaluation(seeded_runs["faster"])["tasks"]["bbox"]["AP"]
    assert float(ap["A - B"]) == pytest.approx(diff, abs=1e-3)
    assert float(ap["lo"]) < diff < float(ap["hi"])
    for stem in ("table1_class_specific", "table2_class_agnostic"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "table3_instance_segmentation.png").exists()  # no masks: empty


def test_bootstrap_interval_equals_pycocotools_on_the_resampled_sets(seeded_runs, tmp_path):
    """The report's interval of one run, B=5: each resample scored by pycocotools on a set
    where every drawn image is a copy with new ids."""
    from cxr_d2.evaluation.cocoeval import make_coco, run_cocoeval, summarize
    from cxr_d2.evaluation.uncertainty import _weights

    from tests.evaluation.test_bootstrap import _duplicated

    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    run = seeded_runs["faster"]
    assert main([str(run), "--output", str(tmp_path), "--bootstrap", "5", "--seed", "3"]) == 0
    row = _csv_rows(tmp_path / "table1_class_specific_uncertainty.csv")[0]

    folder = run / "inference" / SCORED
    with open(MetadataCatalog.get(SCORED).json_file) as f:  # the phantom's COCO json
        gt = json.load(f)
    results = json.loads((folder / "coco_instances_results.json").read_text())
    weights = _weights(sorted(im["id"] for im in gt["images"]), 5, 3)
    aps = []
    for w in weights:
        coco_eval = run_cocoeval(
            make_coco(_duplicated(gt, results, w)[0]),
            _duplicated(gt, results, w)[1],
            "bbox",
            (1, 10, 100, 300),
        )
        aps.append(summarize(coco_eval)["AP"] * 100)
    assert len(set(aps)) > 1
    lo, hi = np.percentile(aps, [2.5, 97.5])
    assert (float(row["mAP lo"]), float(row["mAP hi"])) == pytest.approx((lo, hi), abs=1e-3)


def test_runs_without_predictions_get_no_interval(tmp_path, capsys):
    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    run = tmp_path / "run" / "evaluation.json"
    run.parent.mkdir()
    run.write_text(json.dumps(_metrics()))
    assert main([str(run.parent), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"no interval: {run}: cannot read {run.parent / 'coco_instances_results.json'}" in out
    row = _csv_rows(tmp_path / "out" / "table1_class_specific_uncertainty.csv")[0]
    assert row["mAP"] == "50.000" and row["mAP lo"] == row["mAP hi"] == ""
    assert "No bootstrap interval" in (tmp_path / "out" / "tables.md").read_text()


def _config_yaml(out, seed, lr=0.02, train="cxr_phantom_train", test="cxr_phantom_test"):
    return (
        f"DATASETS:\n  TEST:\n  - {test}\n  TRAIN:\n  - {train}\nMODEL:\n"
        f"  WEIGHTS: {out}/model_final.pth\nOUTPUT_DIR: {out}\nSEED: {seed}\n"
        f"SOLVER:\n  BASE_LR: {lr}\n"
    )


def test_rows_group_seeds_and_split_grid_points(tmp_path):
    """Seeds of one experiment are one row (its own MODEL.WEIGHTS and DATASETS.TEST aside);
    another learning rate on the same dataset is another row, named by the key."""
    main = runpy.run_path(os.path.join("tools", "report.py"), run_name="report")["main"]
    runs = {  # folder: (seed, lr, dataset, AP)
        "s0": (0, 0.02, "cxr_phantom_test", 40.0),
        "s1": (1, 0.02, "cxr_phantom_test", 44.0),
        "lr": (0, 0.01, "cxr_phantom_test", 30.0),
        "other": (0, 0.02, "cxr_phantom_val", 20.0),
    }
    for name, (seed, lr, dataset, ap) in runs.items():
        out = tmp_path / name
        folder = out / "inference" / dataset
        folder.mkdir(parents=True)
        config = _config_yaml(out, seed, lr, test=dataset)
        record = _metrics(dataset=dataset, config=config)
        record["tasks"]["bbox"]["AP"] = ap
        (folder / "evaluation.json").write_text(json.dumps(record))
    paths = [str(tmp_path / n) for n in runs] + [str(tmp_path / "s0")]  # one named twice
    assert main([*paths, "--output", str(tmp_path / "out"), "--bootstrap", "0"]) == 0
    table = {r["Model"]: r for r in _csv_rows(tmp_path / "out" / "table1_class_specific.csv")}
    assert table["RetinaNet R-18-FPN [SOLVER.BASE_LR=0.02]"]["cxr_phantom_test mAP"] == "42.0"
    assert table["RetinaNet R-18-FPN [SOLVER.BASE_LR=0.01]"]["cxr_phantom_test mAP"] == "30.0"
    assert table["RetinaNet R-18-FPN"]["cxr_phantom_val mAP"] == "20.0"
    assert len(table) == 3
    spread = _csv_rows(tmp_path / "out" / "table1_class_specific_uncertainty.csv")
    seeded = next(r for r in spread if r["Model"].endswith("0.02]"))
    assert seeded["Seeds"] == "2"
    assert float(seeded["mAP std"]) == pytest.approx(np.std([40, 44], ddof=1), abs=1e-3)
