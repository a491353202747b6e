from .defaults import add_cxr_config
from .num_classes import NUM_CLASSES_KEYS, resolve_num_classes

__all__ = ["add_cxr_config", "NUM_CLASSES_KEYS", "resolve_num_classes"]
