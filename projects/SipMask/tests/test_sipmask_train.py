"""A tiny SipMask overfits two phantom images (mask AP50 >= 0.9); --eval-only round trip."""
import copy
import os

import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from sipmask import add_sipmask_config

from cxr_d2.config import add_cxr_config
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.engine import AtomicCheckpointer, Trainer, check_config

from conftest import run_eval_only

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
CONFIG = os.path.join(ROOT, "projects", "SipMask", "configs", "sipmask_R_18_FPN_cpu.yaml")
TWO = "cxr_phantom_tiny_two_sipmask"
# Measured on the shared 2-core CPU (one thread, contended), seed 0, Adam 2e-3, the official
# mask-loss crop (MODEL.SIPMASK.MASK_LOSS_BOXES "pred"): bbox / mask AP50 on the two images
# 33/33 after 20 steps, 54/53 after 40, 88/83 after 60, 100/100 after 80 and at every 20 steps
# up to 200. Cropping by the ground-truth boxes ("gt", the CPU config's) was slower: 81/81
# after 120, 90/90 after 140, 100/100 after 180. Adam 4e-3 ("gt") stalled at 36.
ITERS = 120
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "128", "INPUT.RANDOM_FLIP", "none", "MODEL.FPN.OUT_CHANNELS", "64",
    "MODEL.SIPMASK.NUM_BASIS", "8", "MODEL.SIPMASK.BASIS_CONV_DIM", "64",
    "MODEL.FCOS.NUM_CLS_CONVS", "1", "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "DATALOADER.NUM_WORKERS", "0", "CXR.EVAL.FROC.ENABLED", "False",
    "DATASETS.TRAIN", f"('{TWO}',)", "DATASETS.TEST", f"('{TWO}',)",
    "MODEL.SIPMASK.MASK_LOSS_BOXES", "pred",
    # The switches of cxr-d2's SipMask before issue 18, for which the figures above were
    # measured. With the official defaults this overfit reaches bbox / mask AP50 100 / 83.5
    # after 120 steps and 100 / 66.7 after 200 (pasting "box": 83.5); with these, 94.5 / 94.5
    # after 120 (2026-11-29, same machine). Why the official layout learns these 128 px masks
    # more slowly is not settled.
    "MODEL.SIPMASK.REG_RELU", "True", "MODEL.SIPMASK.FEATURE_ALIGN_GROUPS", "1",
    "MODEL.SIPMASK.FEATURE_ALIGN_NORM", "", "MODEL.SIPMASK.BASIS_ORDER", "3x3-1x1",
    "MODEL.SIPMASK.POSTPROCESS", "detectron2", "MODEL.SIPMASK.MASK_PASTE", "box",
]  # fmt: skip


def register_two(source="cxr_phantom_tiny_train"):
    """Register TWO: the first two images with lesions of `source` (in a subprocess under the
    tiny_phantom environment, the built-in cxr_phantom_tiny_train holds the same images)."""
    if TWO not in DatasetCatalog.list():
        dicts = [d for d in DatasetCatalog.get(source) if d["annotations"]][:2]
        DatasetCatalog.register(TWO, lambda: copy.deepcopy(dicts))
        meta = MetadataCatalog.get(source).as_dict()
        meta = {k: v for k, v in meta.items() if k not in ("name", "json_file")}
        MetadataCatalog.get(TWO).set(**meta)


def _cfg(output_dir, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["OUTPUT_DIR", str(output_dir), *opts])
    check_config(cfg)
    return cfg


def _overfit(cfg, iters):
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    mapper = CXRDatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(TWO)]
    model.train()
    with EventStorage():
        for _ in range(iters):
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    return model.eval()


def test_overfits_two_images_and_round_trips(tiny_phantom, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        register_two()
        cfg = _cfg(tmp_path)
        cfg.freeze()
        model = _overfit(cfg, ITERS)
        loader = build_detection_test_loader(cfg, TWO, mapper=CXRDatasetMapper(cfg, False))
        evaluator = Trainer.build_evaluator(cfg, TWO, str(tmp_path / "eval_train"))
        results = inference_on_dataset(model, loader, evaluator)
    finally:
        torch.set_num_threads(threads)
    print("overfit:", {t: round(results[t]["AP50"], 2) for t in ("bbox", "segm")})
    assert results["segm"]["AP50"] >= 90, results["segm"]
    AtomicCheckpointer(model, str(tmp_path)).save("model_final")

    # tools/train_net.py --eval-only on the checkpoint reproduces the numbers
    args = ["--config-file", CONFIG, *SMALL, "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
            "OUTPUT_DIR", str(tmp_path / "eval")]  # fmt: skip
    log = run_eval_only("test_sipmask_train", "register_two", args, tiny_phantom, timeout=300)
    assert "Evaluation results for segm" in log
    for task in ("bbox", "segm"):
        ap50 = f"{results[task]['AP50']:.3f}"
        table = log.split(f"Evaluation results for {task}")[1][:400]
        assert ap50 in table, (task, ap50, log[-3000:])
