"""The config of the inspection tools (predict, visualize_data): as train_net's, without a run."""
from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from ..config import add_cxr_config
from ..data.policy import apply_data_policy
from ..engine.config_file import merge_config_file, merge_overrides
from ..engine.projects import project_config_fns
from ..engine.setup import check_config

__all__ = ["tool_config"]


def tool_config(config_file, opts, output_dir):
    """
    get_cfg -> add_cxr_config and the installed projects' config -> merge `config_file` and
    `opts` -> OUTPUT_DIR = `output_dir` -> cxr-d2's checks (datasets, NUM_CLASSES, weights,
    writable output, device: cuda falls back to the CPU when there is no GPU) -> freeze.
    Errors are ConfigError (one line naming the file or key).
    """
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_config in project_config_fns():
        add_config(cfg)
    merge_config_file(cfg, config_file)
    merge_overrides(cfg, list(opts or []))
    cfg.OUTPUT_DIR = output_dir
    check_config(cfg)
    cfg.freeze()
    apply_data_policy(cfg)
    for name in ("fvcore", "detectron2", "cxr_d2"):
        setup_logger(name=name, abbrev_name={"detectron2": "d2"}.get(name, name))
    return cfg
