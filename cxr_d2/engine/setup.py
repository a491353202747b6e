"""Config setup for the tools: get_cfg -> add_cxr_config -> merge -> checks -> freeze."""
import difflib
import logging
import os
import shutil
import socket
import tempfile

import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from ..config import add_cxr_config, resolve_num_classes
from ..config.schedule import resolve_epochs
from ..data.policy import apply_data_policy
from ..errors import ConfigError
from .checkpoint import weights_file_problem
from .config_file import merge_config_file, merge_overrides
from .config_rules import check_values, drop_late_steps

__all__ = ["setup_cfg", "check_config"]

logger = logging.getLogger(__name__)

# Seconds a MODEL.WEIGHTS download may wait on the network before it is given up.
DOWNLOAD_TIMEOUT_S = 30


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
        merge_config_file(cfg, args.config_file)
    merge_overrides(cfg, args.opts)
    check_config(cfg, resume=args.resume, world_size=comm.get_world_size())
    cfg.freeze()
    apply_data_policy(cfg)
    default_setup(cfg, args)
    # default_setup configures the detectron2 and fvcore loggers only
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="cxr_d2")
    return cfg


def check_config(cfg, resume=False, world_size=1):
    """
    Check values, datasets, weights, output folder and device; fill NUM_CLASSES, drop
    SOLVER.STEPS that never fire; turn a schedule in epochs (CXR.SOLVER) into iterations.
    `cfg` mutable; `world_size`: the processes of the run.
    """
    check_values(cfg, world_size)
    _check_datasets(cfg)
    resolve_epochs(cfg)
    drop_late_steps(cfg)
    resolve_num_classes(cfg)
    _check_weights(cfg, resume)
    _check_output_dir(cfg.OUTPUT_DIR, cfg.CXR.MIN_FREE_DISK_MB)
    _check_device(cfg)


def _check_device(cfg):
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but no GPU is available: using the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    elif device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE} but this machine has "
            f"{torch.cuda.device_count()} GPU(s): give cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )


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
    if not weights:
        return
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if resume and os.path.isfile(last):
        return  # resuming: MODEL.WEIGHTS is not read
    local = fetch_weights(weights) if "://" in weights else weights
    if os.path.isdir(local):
        raise ConfigError(f"MODEL.WEIGHTS {weights} is a folder; give the checkpoint file in it")
    if not os.path.isfile(local):
        raise ConfigError(
            f"MODEL.WEIGHTS {weights} does not exist; give a checkpoint file "
            "(e.g. OUTPUT_DIR/model_final.pth) or MODEL.WEIGHTS '' to start from scratch"
        )
    problem = weights_file_problem(local)
    if problem:
        raise ConfigError(
            f"MODEL.WEIGHTS {weights} {problem}; give a Detectron2 .pth checkpoint or a .pkl "
            "of arrays"
        )


def fetch_weights(url):
    """
    The local copy of weights named by URL (`https://`, `detectron2://`): PathManager's cache,
    downloaded there first if missing, giving up after DOWNLOAD_TIMEOUT_S without network.
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return PathManager.get_local_path(url)
    except OSError as e:  # URLError, HTTPError, socket.timeout, refused connections
        reason = getattr(e, "reason", None) or e.strerror or e
        raise ConfigError(
            f"MODEL.WEIGHTS {url} cannot be downloaded ({reason}): this machine has no network "
            "or the address is wrong; download the file elsewhere and give its local path as "
            "MODEL.WEIGHTS"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def _check_output_dir(output_dir, min_free_mb=0):
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} is not writable ({e.strerror}); set OUTPUT_DIR to a "
            "folder you can write"
        ) from None
    free_mb = shutil.disk_usage(output_dir).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} has {free_mb:.0f} MB free, less than "
            f"CXR.MIN_FREE_DISK_MB {min_free_mb}; free space there or set OUTPUT_DIR elsewhere"
        )
