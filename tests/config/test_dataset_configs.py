"""
The paper's experiments per dataset (configs/<dataset>/): every one exists, merges, passes
check_config with the catalog's dataset names, starts from ImageNet weights its config fits,
and its schedule in epochs resolves to the iterations configs/README.md states.
"""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from cxr_d2.config import add_cxr_config
from cxr_d2.config import schedule
from cxr_d2.engine import check_config
from cxr_d2.engine.config_file import merge_config_file
from cxr_d2.engine.projects import project_config_fns

from tests.helpers import REPO_ROOT

DATASETS = {  # folder -> source
    "NIH-ChestXray14": "nih_cxr14",
    "ChestX-Det10": "chestx_det10",
    "TBX11K": "tbx11k",
    "UML-Peru": "uml_peru",
}
DETECTORS = [
    f"{a}_{b}_FPN"
    for a in ("faster_rcnn", "retinanet")
    for b in ("R_50", "R_101", "R_152", "X_101_32x8d", "X_152_32x8d")
]
DETECTORS += ["ssd512_VGG16", "yolov3_608_DarkNet53", "fcos_R_50_FPN"]
SEGMENTERS = ["mask_rcnn_R_50_FPN", "mask_rcnn_R_101_FPN", "blendmask_R_50_FPN",
              "blendmask_R_101_FPN", "solov2_R_50_FPN", "sipmask_R_50_FPN"]  # fmt: skip
# 13 detectors x (class-specific, agnostic) x 4 datasets + 6 segmenters on UML/Peru = 110.
EXPECTED = sorted(
    [f"configs/{d}/{m}{v}.yaml" for d in DATASETS for m in DETECTORS for v in ("", "_agnostic")]
    + [f"configs/UML-Peru/{m}.yaml" for m in SEGMENTERS]
)
# What each ImageNet start needs: (mean, std, format, STRIDE_IN_1X1), as docs/pretrained.md.
MSRA = ([103.53, 116.28, 123.675], [1.0, 1.0, 1.0], "BGR", True)
FAIR = ([103.53, 116.28, 123.675], [57.375, 57.12, 58.395], "BGR", False)
TORCHVISION = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], "RGB", False)
DARKNET = ([0.0] * 3, [255.0] * 3, "RGB", None)
# configs/README.md's schedule table: training images (train split, films with findings) ->
# (SOLVER.MAX_ITER, SOLVER.STEPS) at batch 16, for 36 epochs (steps 24, 33) and 100 (70, 90).
SCHEDULES = {
    (698, 36): (1571, (1047, 1440)),
    (2233, 36): (5024, (3350, 4606)),
    (698, 100): (4363, (3054, 3926)),
    (2233, 100): (13956, (9769, 12561)),
}


def _listed():
    found = []
    for folder in DATASETS:
        for name in os.listdir(os.path.join(REPO_ROOT, "configs", folder)):
            found.append(f"configs/{folder}/{name}")
    return sorted(found)


def _merged(path):
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_project_config in project_config_fns():
        add_project_config(cfg)
    merge_config_file(cfg, os.path.join(REPO_ROOT, path))
    return cfg


def _start(path, cfg):
    name = os.path.basename(path)
    if name.startswith("ssd512"):
        return TORCHVISION[:3] + (None,)
    if name.startswith("yolov3"):
        return DARKNET
    if "R_152" in name:
        return TORCHVISION
    return FAIR if "_X_" in name else MSRA


def test_every_experiment_has_its_config_and_nothing_else():
    assert len(EXPECTED) == 110
    assert _listed() == EXPECTED


def _text_for_nih(path):
    """The file's text with its dataset's folder, source and title replaced by NIH's."""
    folder = path.split("/")[1]
    with open(os.path.join(REPO_ROOT, path)) as f:
        text = f.read()
    title = {"ChestX-Det10": "ChestX-Det10", "TBX11K": "TBX11K", "UML-Peru": "UML/Peru"}
    return (
        text.replace(f"/{folder}/", "/NIH-ChestXray14/")
        .replace(f'"{DATASETS[folder]}_', '"nih_cxr14_')
        .replace(f"on {title.get(folder)}.", "on NIH ChestX-ray14 (BBox_List_2017).")
    )


@pytest.mark.parametrize("path", [p for p in EXPECTED if "NIH" not in p])
def test_other_datasets_run_the_nih_experiments(path):
    """Besides its datasets and output folder, each leaf is NIH's (which the default suite
    checks in full below): the same start, schedule and model."""
    nih = path.replace(path.split("/")[1], "NIH-ChestXray14")
    if not os.path.exists(os.path.join(REPO_ROOT, nih)):
        assert os.path.basename(path)[:-5] in SEGMENTERS
        return
    with open(os.path.join(REPO_ROOT, nih)) as f:
        assert _text_for_nih(path) == f.read()


# In full: NIH's 26 and UML/Peru's segmenters; the other datasets' detectors (identical
# leaves but for the names, test above) in the slow suite.
@pytest.mark.parametrize(
    "path",
    [p if "NIH" in p or os.path.basename(p)[:-5] in SEGMENTERS
     else pytest.param(p, marks=pytest.mark.slow) for p in EXPECTED],
)  # fmt: skip
def test_dataset_config_merges_checks_and_fits_its_start(path, tmp_path, monkeypatch):
    with open(os.path.join(REPO_ROOT, path)) as f:
        assert len(f.read().splitlines()) <= 12, "leaf configs stay a few lines"
    cfg = _merged(path)
    source = DATASETS[path.split("/")[1]]
    agnostic = "_agnostic_" if path.endswith("_agnostic.yaml") else "_"
    assert tuple(cfg.DATASETS.TRAIN) == (f"{source}{agnostic}train",)
    assert tuple(cfg.DATASETS.TEST) == (f"{source}{agnostic}test",)
    assert cfg.OUTPUT_DIR == f"./output/{path.split('/')[1]}/{os.path.basename(path)[:-5]}"
    assert cfg.TEST.DETECTIONS_PER_IMAGE >= 300 and cfg.CXR.EVAL.MAX_DETS_PER_IMAGE == 300
    mean, std, fmt, stride_in_1x1 = _start(path, cfg)
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx(mean) and cfg.MODEL.PIXEL_STD == pytest.approx(std)
    assert cfg.INPUT.FORMAT == fmt and cfg.MODEL.WEIGHTS  # an ImageNet start, never scratch
    if stride_in_1x1 is not None:
        assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is stride_in_1x1
        assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.BACKBONE.FREEZE_AT == 2
    # Structural check only: no dataset files here (count 698 films) and no downloads.
    cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR = "", str(tmp_path)
    monkeypatch.setattr(schedule, "training_images", lambda cfg: 698)
    check_config(cfg)
    epochs = cfg.CXR.SOLVER.EPOCHS
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == SCHEDULES[(698, epochs)]
    assert cfg.SOLVER.WARMUP_ITERS > 0 and 0 < cfg.SOLVER.CHECKPOINT_PERIOD < cfg.SOLVER.MAX_ITER
    assert len(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes) == (
        1 if agnostic == "_agnostic_" else len(MetadataCatalog.get(f"{source}_train").thing_classes)
    )


@pytest.mark.parametrize("images,epochs", sorted(SCHEDULES))
def test_epochs_to_iterations_by_hand(images, epochs):
    """The README's table, worked by hand: round(epochs x images / 16), halves up."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.CXR.SOLVER.EPOCHS = epochs
    cfg.CXR.SOLVER.STEP_EPOCHS = (24, 33) if epochs == 36 else (70, 90)
    schedule.resolve_epochs(cfg, images=images)
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == SCHEDULES[(images, epochs)]


def test_an_epoch_is_the_films_the_train_loader_draws(tiny_phantom):
    """Counted from the catalog: with FILTER_EMPTY_ANNOTATIONS only films with findings."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.DATASETS.TRAIN = ("cxr_phantom_tiny_train",)
    records = DatasetCatalog.get("cxr_phantom_tiny_train")
    with_findings = sum(1 for r in records if r["annotations"])
    assert 0 < with_findings < len(records)
    cfg.SOLVER.IMS_PER_BATCH, cfg.CXR.SOLVER.EPOCHS = 4, 3
    cfg.CXR.SOLVER.CHECKPOINT_EPOCHS = 1
    assert schedule.resolve_epochs(cfg) == with_findings
    assert cfg.SOLVER.MAX_ITER == int(3 * with_findings / 4 + 0.5)
    assert cfg.SOLVER.CHECKPOINT_PERIOD == int(with_findings / 4 + 0.5)
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    assert schedule.resolve_epochs(cfg) == len(records)


def test_bad_step_epochs_are_one_line():
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.CXR.SOLVER.EPOCHS, cfg.CXR.SOLVER.STEP_EPOCHS = 10, (5, 12)
    with pytest.raises(Exception, match="STEP_EPOCHS"):
        schedule.resolve_epochs(cfg, images=100)


# One per architecture, plus the backbones configs/Pretrained has not.
BUILT = [
    "configs/NIH-ChestXray14/faster_rcnn_R_152_FPN.yaml",
    pytest.param("configs/TBX11K/retinanet_X_152_32x8d_FPN_agnostic.yaml", marks=pytest.mark.slow),
    "configs/ChestX-Det10/fcos_R_50_FPN.yaml",
    "configs/UML-Peru/sipmask_R_50_FPN.yaml",
]


@pytest.mark.parametrize("path", BUILT)
def test_dataset_config_builds_its_model(path, tmp_path, monkeypatch):
    cfg = _merged(path)
    cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR = "", str(tmp_path)
    monkeypatch.setattr(schedule, "training_images", lambda cfg: 698)
    check_config(cfg)
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        model = build_model(cfg)
    depth = cfg.MODEL.RESNETS.DEPTH
    assert sum(p.numel() for p in model.parameters()) > (50_000_000 if depth == 152 else 1_000_000)
