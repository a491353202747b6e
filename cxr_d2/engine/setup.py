"""Config setup for the tools: get_cfg -> add_cxr_config -> merge -> checks -> freeze."""
import difflib
import logging
import os
import tempfile

import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_cxr_config, resolve_num_classes
from ..data.policy import apply_data_policy
from ..errors import ConfigError

__all__ = ["setup_cfg", "check_config"]

logger = logging.getLogger(__name__)


def setup_cfg(args, extra_config_fns=()):
    """
    Build the frozen config of a run from `default_argument_parser()` arguments.

    Args:
        args: parsed arguments (`config_file`, `opts`, `resume`, `eval_only`).
        extra_config_fns: more `add_x_config(cfg)` functions (a project's).
    """
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_config in extra_config_fns:
        add_config(cfg)
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise ConfigError(f"--config-file {args.config_file} does not exist")
        cfg.merge_from_file(args.config_file)
    try:
        cfg.merge_from_list(args.opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise ConfigError(f"command-line override {args.opts}: {e}") from None
    check_config(cfg, resume=args.resume)
    cfg.freeze()
    apply_data_policy(cfg)
    default_setup(cfg, args)
    # default_setup configures the detectron2 and fvcore loggers only
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cxr_d2")
    return cfg


def check_config(cfg, resume=False):
    """Check datasets, weights, output folder and device; fill NUM_CLASSES. `cfg` mutable."""
    _check_datasets(cfg)
    resolve_num_classes(cfg)
    _check_weights(cfg, resume)
    _check_output_dir(cfg.OUTPUT_DIR)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but no GPU is available: using the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"


def _check_datasets(cfg):
    registered = set(DatasetCatalog.list())
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=5, cutoff=0.6)
                hint = f" (registered like it: {', '.join(close)})" if close else ""
                raise ConfigError(
                    f"DATASETS.{key} names '{name}', which is not a registered dataset{hint}; "
                    "see datasets/README.md for the names"
                )


def _check_weights(cfg, resume):
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights:
        return
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if resume and os.path.isfile(last):
        return  # resuming: MODEL.WEIGHTS is not read
    if not os.path.isfile(weights):
        raise ConfigError(
            f"MODEL.WEIGHTS {weights} does not exist; give a checkpoint file "
            "(e.g. OUTPUT_DIR/model_final.pth) or MODEL.WEIGHTS '' to start from scratch"
        )


def _check_output_dir(output_dir):
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} is not writable ({e.strerror}); set OUTPUT_DIR to a "
            "folder you can write"
        ) from None
