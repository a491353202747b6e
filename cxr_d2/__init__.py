"""
cxr-d2: a Detectron2 plugin for abnormalities in chest X-rays. Importing it registers the
datasets (lazily) and the models.
"""
from . import data, modeling  # noqa: F401 (register datasets and models)
from .config import add_cxr_config
from .engine import Trainer, setup_cfg
from .errors import ConfigError, CXRError, DatasetError

__version__ = "0.1.0"

__all__ = ["add_cxr_config", "Trainer", "setup_cfg", "CXRError", "ConfigError", "DatasetError"]
