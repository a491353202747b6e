"""A few iterations of every config family on a tiny phantom set, then --eval-only."""
import copy
import os
import subprocess
import sys

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_d2.config import add_cxr_config
from cxr_d2.data import mapper
from cxr_d2.engine import Trainer, check_config
from cxr_d2.errors import DatasetError

from tests.helpers import TINY, TINY_OPTS, cpu_config, train

FAMILIES = ["faster_rcnn", "retinanet", "mask_rcnn"]
def _train(family, output_dir):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(cpu_config(family))
    cfg.merge_from_list(TINY_OPTS + ["OUTPUT_DIR", str(output_dir)])
    check_config(cfg)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return cfg, trainer


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_iterations(family, tiny_phantom, tmp_path):
    cfg, trainer = _train(family, tmp_path)
    storage = trainer.storage
    losses = {k: v.latest() for k, v in storage.histories().items() if k.startswith("loss")}
    assert losses and all(v == v and abs(v) < 1e4 for v in losses.values()), losses
    if family == "mask_rcnn":
        assert "loss_mask" in losses
    assert os.path.isfile(tmp_path / "model_final.pth")
    manifest = (tmp_path / "split_manifest.json").read_text()
    assert f"{TINY}_train" in manifest and f"{TINY}_test" in manifest


def _run_tool(*args, env=None):
    cmd = [sys.executable, os.path.join("tools", "train_net.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_eval_only_from_checkpoint(tiny_phantom, tmp_path):
    """train_net.py --eval-only on a saved checkpoint prints the COCO table (bbox and segm)."""
    _train("mask_rcnn", tmp_path)
    r = _run_tool(
        "--config-file", cpu_config("mask_rcnn"), "--eval-only",
        *TINY_OPTS, "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # a 3-iteration model is not confident
        "OUTPUT_DIR", str(tmp_path / "eval"), env=tiny_phantom,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    assert os.path.isfile(tmp_path / "eval" / "inference" / f"{TINY}_test" / "coco_instances_results.json")


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.WEIGHTS", "/nonexistent/model.pth"], "error: MODEL.WEIGHTS /nonexistent/model.pth does not exist"),
        (["DATASETS.TRAIN", "('nih_cxr14_trian',)"], "error: DATASETS.TRAIN names 'nih_cxr14_trian'"),
        (["OUTPUT_DIR", "/proc/version/out"], "error: OUTPUT_DIR /proc/version/out is not writable"),
        (["MODEL.RETINANET.NUM_CLASSES", "80"], "error: MODEL.RETINANET.NUM_CLASSES is 80 but dataset"),
    ],
)
def test_bad_input_ends_with_one_line(opts, message, tmp_path):
    r = _run_tool("--config-file", cpu_config("retinanet"), "OUTPUT_DIR", str(tmp_path), *opts)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith(message), r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_training_skips_an_unreadable_image(tiny_phantom, tmp_path, monkeypatch):
    """Detectron2's MapDataset draws another image when the mapper skips one (it called
    random.sample on a set, which Python 3.11 refuses); training runs to its last iteration."""
    name = "cxr_test_one_unreadable"
    records = [r for r in DatasetCatalog.get(f"{TINY}_train") if r["annotations"]][:4]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    records[0]["file_name"] = str(tmp_path / "broken.png")
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).set(
        thing_classes=MetadataCatalog.get(f"{TINY}_train").thing_classes, evaluator_type="coco"
    )
    try:
        cfg = get_cfg()
        add_cxr_config(cfg)
        cfg.merge_from_file(cpu_config("retinanet"))
        cfg.merge_from_list(
            TINY_OPTS
            + ["DATASETS.TRAIN", f"('{name}',)", "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "0"]
            + ["OUTPUT_DIR", str(tmp_path / "out")]
        )
        warnings = []
        monkeypatch.setattr(mapper.logger, "warning", warnings.append)
        trainer, _ = train(cfg)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert trainer.iter == trainer.max_iter == 4  # every iteration ran
    assert warnings and all("broken.png" in w for w in warnings)


@pytest.mark.parametrize(
    "records, filter_empty, message",
    [
        ([], True, "DATASETS.TRAIN names {name}, which has no image"),
        ([{"file_name": "a.png", "height": 8, "width": 8, "image_id": 0, "annotations": []}],
         True, "has no image with an annotation, and DATALOADER.FILTER_EMPTY_ANNOTATIONS True"),
    ],
    ids=["no_image", "no_annotated_image"],
)
def test_empty_split_is_one_line(records, filter_empty, message):
    name = "cxr_test_empty_split_train"
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).thing_classes = ["lesion"]
    try:
        cfg = get_cfg()
        add_cxr_config(cfg)
        cfg.DATASETS.TRAIN = (name,)
        cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = filter_empty
        with pytest.raises(DatasetError) as e:
            Trainer.build_train_loader(cfg)
        assert message.format(name=name) in str(e.value) and "\n" not in str(e.value)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
