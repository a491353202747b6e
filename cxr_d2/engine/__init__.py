from .checkpoint import AtomicCheckpointer
from .setup import check_config, setup_cfg
from .trainer import Trainer

__all__ = ["AtomicCheckpointer", "Trainer", "check_config", "setup_cfg"]
