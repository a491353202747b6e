"""The number of classes of every head, taken from the datasets' metadata."""
from detectron2.data import MetadataCatalog

from ..errors import ConfigError

__all__ = ["NUM_CLASSES_KEYS", "resolve_num_classes", "parent_node"]

# Config keys that hold a head's number of classes. Modules adding a head with its own key
# append it here (before add_cxr_config is called) so the same rule applies to it.
NUM_CLASSES_KEYS = [
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.RETINANET.NUM_CLASSES",
    "MODEL.SSD.NUM_CLASSES",
    "MODEL.YOLOV3.NUM_CLASSES",
    "MODEL.FCOS.NUM_CLASSES",
    "MODEL.BASIS_MODULE.NUM_CLASSES",
    "MODEL.SOLOV2.NUM_CLASSES",
]


def _dataset_classes(names):
    """Return (number of classes, dataset it came from); all datasets must agree."""
    counts = {}
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is None:
            raise ConfigError(f"dataset '{name}' has no thing_classes in its metadata")
        counts[name] = len(classes)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n}: {c}" for n, c in counts.items())
        raise ConfigError(
            f"DATASETS.TRAIN and DATASETS.TEST disagree on the number of classes ({listed}); "
            "evaluate a model only on datasets with its classes (or their _agnostic_ variant "
            "with an agnostic model)"
        )
    name = next(iter(counts))
    return counts[name], name


def resolve_num_classes(cfg):
    """
    Set each head's NUM_CLASSES that is 0 to the datasets' number of classes; raise
    ConfigError when a non-zero value disagrees. Uses DATASETS.TRAIN, or DATASETS.TEST when
    there is no training set. `cfg` must be mutable.
    """
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    if not names:
        return
    num, source = _dataset_classes(names)
    for key in NUM_CLASSES_KEYS:
        node, leaf = parent_node(cfg, key)
        if node is None:
            continue
        value = node[leaf]
        if value == 0:
            node[leaf] = num
        elif value != num:
            raise ConfigError(
                f"{key} is {value} but dataset '{source}' has {num} classes "
                f"({', '.join(MetadataCatalog.get(source).thing_classes)}); "
                f"remove {key} from the config to take it from the dataset"
            )


def parent_node(cfg, key):
    """Return (node, leaf name) of a dotted config key, or (None, None) if it is absent."""
    *path, leaf = key.split(".")
    node = cfg
    for name in path:
        if name not in node:
            return None, None
        node = node[name]
    if leaf not in node:
        return None, None
    return node, leaf
