from .checkpoint import AtomicCheckpointer
from .launch import launch_tool, train_or_evaluate
from .projects import project_config_fns
from .setup import check_config, setup_cfg
from .trainer import Trainer

__all__ = [
    "AtomicCheckpointer",
    "Trainer",
    "check_config",
    "launch_tool",
    "project_config_fns",
    "setup_cfg",
    "train_or_evaluate",
]
