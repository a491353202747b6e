"""train_net --eval-only with --tta and --ensemble on the tiny phantom: Trainer.test's COCO
metrics equal pycocotools' on the predictions json it wrote; errors end in one line."""
import json
import os

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import check_config, launch_tool, project_config_fns, train_or_evaluate
from cxr_d2.predict.cli import main as predict_main
from cxr_d2.predict.tta import add_tta_arguments, apply_tta_arguments

from tests.helpers import TINY, TINY_OPTS, cpu_config

TEST_SET = f"{TINY}_test"

pytestmark = pytest.mark.usefixtures("one_thread")  # a shared 2-core machine


def _args(argv):
    return add_tta_arguments(default_argument_parser()).parse_args(argv)


def _main(args):
    """tools/train_net.py's main."""
    return train_or_evaluate(apply_tta_arguments(args), extra_config_fns=project_config_fns())


def _evaluate(argv):
    """tools/train_net.py in this process, returning the results."""
    return _main(_args(argv))


def _train_net(argv):
    """tools/train_net.py in this process, as launched (a CXRError is SystemExit 'error: ...')."""
    return launch_tool(_main, _args(argv))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A random-init RetinaNet checkpoint (seeded)."""
    folder = tmp_path_factory.mktemp("tta_eval")
    paths = {}
    for family in ("retinanet",):
        cfg = get_cfg()
        add_cxr_config(cfg)
        cfg.merge_from_file(cpu_config(family))
        cfg.merge_from_list(TINY_OPTS)
        check_config(cfg)
        torch.manual_seed(0)
        DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save(family)
        paths[family] = str(folder / f"{family}.pth")
    return paths


def _pycocotools_bbox(results_json, agnostic):
    """AP, AP50, AP75 and AR at 300 detections (CXR.EVAL.MAX_DETS_PER_IMAGE), in percent,
    scored by pycocotools on the dataset's COCO json and the written results; `agnostic`:
    every category merged into one, in both."""
    with open(MetadataCatalog.get(TEST_SET).json_file) as f:
        gt_dict = json.load(f)
    with open(results_json) as f:
        dets = json.load(f)
    if agnostic:
        gt_dict["categories"] = [{"id": 1, "name": "lesion"}]
        for a in gt_dict["annotations"] + dets:
            a["category_id"] = 1
    gt = COCO()
    gt.dataset = gt_dict
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.maxDets = [1, 10, 100, 300]
    ev.evaluate()
    ev.accumulate()
    # precision (IoU, recall, class, area, maxDets), recall (IoU, class, area, maxDets); area
    # "all" and 300 detections (summarize() reports AP at 100 in this pycocotools)
    precision, recall = ev.eval["precision"][..., 0, -1], ev.eval["recall"][..., 0, -1]

    def mean(x):
        return float(np.mean(x[x > -1])) if (x > -1).any() else -0.01

    return np.array([mean(precision), mean(precision[0]), mean(precision[5]), mean(recall)]) * 100


def _check_against_pycocotools(res, suffix, folder):
    """Both tasks equal pycocotools'; the random models find some lesions class-agnostically
    (a non-zero AR: not only 0 == 0)."""
    results_json = os.path.join(folder, TEST_SET, "coco_instances_results.json")
    for task, agnostic in (("bbox", False), ("bbox_agnostic", True)):
        ours = np.array([res[task + suffix][m] for m in ("AP", "AP50", "AP75", "AR@300")])
        reference = _pycocotools_bbox(results_json, agnostic)
        np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert reference[3] > 0


def test_eval_only_tta(tiny_phantom, checkpoints, tmp_path):
    res = _evaluate([
        "--config-file", cpu_config("retinanet"), "--eval-only", "--tta", *TINY_OPTS,
        "MODEL.WEIGHTS", checkpoints["retinanet"], "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
        "TEST.AUG.MIN_SIZES", "(128,)", "TEST.AUG.MAX_SIZE", "128",
        "CXR.EVAL.FROC.ENABLED", "False", "TEST.DETECTIONS_PER_IMAGE", "300",
        "MODEL.RETINANET.TOPK_CANDIDATES_TEST", "1000", "OUTPUT_DIR", str(tmp_path),
    ])
    assert "bbox" in res and "bbox_TTA" in res  # plain, then TTA (Detectron2's train_net)
    _check_against_pycocotools(res, "_TTA", tmp_path / "inference_TTA")


def test_eval_only_ensemble(tiny_phantom, checkpoints, tmp_path):
    """The RetinaNet at 128 px and, read again by its own mapper, at 96 px."""
    member = (
        f'_BASE_: "{os.path.abspath(cpu_config("retinanet"))}"\n'
        "MODEL:\n  RETINANET:\n    SCORE_THRESH_TEST: 0.0\n    TOPK_CANDIDATES_TEST: 1000\n"
        "TEST:\n  DETECTIONS_PER_IMAGE: 300\n"
    )
    at_128, at_96 = tmp_path / "at_128.yaml", tmp_path / "at_96.yaml"
    at_128.write_text(member + "INPUT:\n  MIN_SIZE_TEST: 128\n  MAX_SIZE_TEST: 128\n")
    at_96.write_text(member + "INPUT:\n  MIN_SIZE_TEST: 96\n  MAX_SIZE_TEST: 96\n")
    res = _evaluate([
        "--config-file", cpu_config("retinanet"), "--eval-only", "--ensemble",
        f"{at_128}@{checkpoints['retinanet']}:2", f"{at_96}@{checkpoints['retinanet']}",
        *TINY_OPTS, "CXR.EVAL.FROC.ENABLED", "False", "TEST.DETECTIONS_PER_IMAGE", "300",
        "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    assert list(res) == ["bbox_ensemble", "bbox_agnostic_ensemble"]
    _check_against_pycocotools(res, "_ensemble", tmp_path / "out" / "inference_ensemble")


def test_train_net_errors_are_one_line(checkpoints, tmp_path):
    retina = cpu_config("retinanet")
    with pytest.raises(SystemExit) as e:
        _train_net(["--config-file", retina, "--tta", *TINY_OPTS, "OUTPUT_DIR", str(tmp_path)])
    assert str(e.value.code) == "error: --tta and --ensemble score trained models: add --eval-only"
    with pytest.raises(SystemExit) as e:
        _train_net(["--config-file", retina, "--eval-only", "--ensemble",
                    f"{retina}@{checkpoints['retinanet']}", f"{retina}@missing.pth:1",
                    *TINY_OPTS, "OUTPUT_DIR", str(tmp_path)])
    assert str(e.value.code) == (
        f"error: --ensemble member '{retina}@missing.pth:1': checkpoint missing.pth does not exist"
    )


def test_predict_errors_are_one_line(checkpoints, tmp_path, capsys):
    retina = cpu_config("retinanet")
    film = tmp_path / "film.png"
    film.write_bytes(b"")
    code = predict_main([
        "--config-file", retina, "--input", str(film), "--output", str(tmp_path / "out"),
        "--ensemble", f"{retina}@{checkpoints['retinanet']}", f"{retina}:two",
    ])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == (f"error: --ensemble member '{retina}:two': the weight after ':' ('two') "
                       "is not a number; write CFG[@CKPT][:WEIGHT], e.g. "
                       "configs/a.yaml@output/a/model_final.pth:2")


def test_overrides_after_the_members_go_back_to_opts():
    retina = cpu_config("retinanet")
    args = apply_tta_arguments(_args([
        "--config-file", retina, "--eval-only", "--tta", "--ensemble", f"{retina}@a.pth:2",
        f"{retina}@b.pth", "OUTPUT_DIR", "out", "MODEL.DEVICE", "cpu",
    ]))
    assert args.ensemble == [f"{retina}@a.pth:2", f"{retina}@b.pth"]
    assert args.opts == ["OUTPUT_DIR", "out", "MODEL.DEVICE", "cpu", "TEST.AUG.ENABLED", "True"]
