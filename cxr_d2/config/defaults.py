from detectron2.config import CfgNode as CN

from .num_classes import NUM_CLASSES_KEYS, parent_node

__all__ = ["add_cxr_config"]


def add_cxr_config(cfg):
    """
    Add the cxr-d2 options to a Detectron2 config. Call it on `get_cfg()` before merging a
    config file, as with Detectron2's projects; it changes only `cfg`, never the global
    defaults.
    """
    # Every head's number of classes defaults to 0, meaning "take it from the training
    # dataset's metadata" (len(thing_classes)); a non-zero value must agree with the dataset.
    for key in NUM_CLASSES_KEYS:
        node, leaf = parent_node(cfg, key)
        if node is not None:
            setattr(node, leaf, 0)

    cfg.CXR = CN()
    # Write OUTPUT_DIR/split_manifest.json (which image of which dataset the run used).
    cfg.CXR.WRITE_MANIFEST = True
    # Task types the evaluator scores: empty = "bbox", plus "segm" when MODEL.MASK_ON.
    cfg.CXR.EVAL_TASKS = []
