"""A tiny SipMask overfits two phantom images (mask AP50 >= 0.9); --eval-only round trip."""
import copy
import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage
from sipmask import add_sipmask_config

from cxr_d2.config import add_cxr_config
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.engine import AtomicCheckpointer, Trainer, check_config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
CONFIG = os.path.join(ROOT, "projects", "SipMask", "configs", "sipmask_R_18_FPN_cpu.yaml")
TINY = "cxr_phantom_tiny"
TWO = "cxr_phantom_tiny_two_sipmask"
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "128", "INPUT.RANDOM_FLIP", "none", "MODEL.FPN.OUT_CHANNELS", "64",
    "MODEL.SIPMASK.NUM_BASIS", "8", "MODEL.SIPMASK.BASIS_CONV_DIM", "64",
    "MODEL.FCOS.NUM_CLS_CONVS", "1", "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "DATALOADER.NUM_WORKERS", "0", "CXR.EVAL.FROC.ENABLED", "False",
]  # fmt: skip


def _register_two():
    if TWO not in DatasetCatalog.list():
        dicts = [d for d in DatasetCatalog.get(f"{TINY}_train") if d["annotations"]][:2]
        DatasetCatalog.register(TWO, lambda: copy.deepcopy(dicts))
        meta = MetadataCatalog.get(f"{TINY}_train").as_dict()
        meta = {k: v for k, v in meta.items() if k not in ("name", "json_file")}
        MetadataCatalog.get(TWO).set(**meta)


def _cfg(output_dir, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["DATASETS.TRAIN", f"('{TWO}',)", "DATASETS.TEST", f"('{TWO}',)",
                                 "OUTPUT_DIR", str(output_dir), *opts])
    check_config(cfg)
    return cfg


@pytest.mark.slow  # unverified: did not finish within 8.5 min on the shared 2-core CPU
def test_overfits_two_images_and_round_trips(tiny_phantom, tmp_path):
    _register_two()
    cfg = _cfg(tmp_path, "SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY", "0.0")
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    mapper = CXRDatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(TWO)]
    model.train()
    with EventStorage():
        for it in range(300):
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    model.eval()
    loader = build_detection_test_loader(cfg, TWO, mapper=CXRDatasetMapper(cfg, is_train=False))
    evaluator = Trainer.build_evaluator(cfg, TWO, str(tmp_path / "eval_train"))
    results = inference_on_dataset(model, loader, evaluator)
    assert results["segm"]["AP50"] >= 90, results["segm"]
    AtomicCheckpointer(model, str(tmp_path)).save("model_final")

    # --eval-only on the checkpoint through tools/train_net.py reproduces the numbers
    env = dict(tiny_phantom, PYTHONPATH=os.path.join(ROOT, "projects", "SipMask"))
    code = (
        "import functools, sys, runpy, cxr_d2, sipmask, test_sipmask_train as t;"
        "t._register_two();"
        # until tools/train_net.py calls add_sipmask_config itself
        "cxr_d2.setup_cfg = functools.partial(cxr_d2.setup_cfg,"
        " extra_config_fns=(sipmask.add_sipmask_config,));"
        "sys.argv = ['train_net.py'] + sys.argv[1:];"
        f"runpy.run_path({os.path.join(ROOT, 'tools', 'train_net.py')!r}, run_name='__main__')"
    )
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(__file__) + os.pathsep + ROOT
    r = subprocess.run(
        [sys.executable, "-c", code, "--config-file", CONFIG, "--eval-only", *SMALL,
         "DATASETS.TRAIN", f"('{TWO}',)", "DATASETS.TEST", f"('{TWO}',)",
         "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "Evaluation results for segm" in log
    ap50 = f"{results['segm']['AP50']:.3f}"
    assert ap50 in log, (ap50, log[-3000:])
