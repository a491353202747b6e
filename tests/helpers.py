"""Constants and helpers shared by the test modules (fixtures live in conftest.py)."""
import os

from detectron2.config import get_cfg

from cxr_d2.config import add_cxr_config
from cxr_d2.data.datasets.phantom import PHANTOM_VARIANTS
from cxr_d2.engine import Trainer, check_config

__all__ = [
    "REPO_ROOT",
    "SHARED",
    "TINY",
    "TINY_OPTS",
    "TINY_SIZE",
    "TWO_FILMS",
    "base_config",
    "cpu_config",
    "train",
]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Third-party data and reference outputs beside the repository; tests skip where absent.
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")

# The built-in tiny phantom set, cxr_phantom_tiny_{split}, drawn by the `tiny_phantom` fixture
# into a session folder: {"num_images": 40, "size": 128}.
TINY = "cxr_phantom_tiny"
TINY_SIZE = next(dict(v.options) for v in PHANTOM_VARIANTS if v.name == "tiny")
# The two films of the overfit tests, registered by the `two_films` fixture.
TWO_FILMS = "cxr_phantom_tiny_two"

# Overrides for a 3-iteration run on the tiny phantom set at 128 px.
TINY_OPTS = [
    "DATASETS.TRAIN", f"('{TINY}_train',)", "DATASETS.TEST", f"('{TINY}_test',)",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "0",
]


def base_config(path, **over):
    """
    A cxr-d2 config merged from `path`, on the CPU, with `over` set by dotted key
    (`base_config("configs/Base-SSD.yaml", **{"MODEL.SSD.NUM_CLASSES": 4})`).
    """
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    for key, value in over.items():
        node = cfg
        *path_keys, leaf = key.split(".")
        for k in path_keys:
            node = node[k]
        node[leaf] = value
    return cfg


def cpu_config(family):
    """configs/Phantom/<family>_R_18_FPN_cpu.yaml (relative to the repository root)."""
    return os.path.join("configs", "Phantom", f"{family}_R_18_FPN_cpu.yaml")


def tiny_config(family, *opts):
    """The checked, frozen CPU config of `family` (`cpu_config`) on the tiny phantom set
    (TINY_OPTS), then `opts` (KEY VALUE ...)."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(cpu_config(family))
    cfg.merge_from_list(TINY_OPTS + list(opts))
    check_config(cfg)
    cfg.freeze()
    return cfg


def train(cfg):
    """
    Checks and freezes `cfg`, trains it from scratch with cxr-d2's Trainer and returns the
    trainer and the last value of each loss.
    """
    check_config(cfg)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    histories = trainer.storage.histories()
    return trainer, {k: v.latest() for k, v in histories.items() if k.startswith("loss")}
