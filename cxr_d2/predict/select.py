"""Which detections `tools/predict.py` keeps: `--score-thresh`, `--classes`, `--max-dets`."""
import torch

from ..errors import ConfigError

__all__ = ["parse_classes", "select_instances"]


def parse_classes(text, class_names):
    """
    `--classes a,b` -> contiguous class ids. Each item is a class name (case-insensitive) or a
    contiguous id; None for no `--classes`.

    Raises:
        ConfigError: naming an item that is neither, with the model's classes.
    """
    if not text:
        return None
    names = [n.lower() for n in (class_names or [])]
    count = len(names)
    ids = []
    for item in (t.strip() for t in text.split(",")):
        if item.lower() in names:
            ids.append(names.index(item.lower()))
        elif item.isdigit() and (not count or int(item) < count):
            ids.append(int(item))
        elif item:
            known = ", ".join(class_names) if class_names else "none named"
            raise ConfigError(f"--classes {text}: '{item}' is not a class of the model ({known})")
    return sorted(set(ids))


def select_instances(instances, score_thresh=0.0, classes=None, max_dets=None):
    """
    Args:
        instances (Instances): pred_boxes, scores (R,), pred_classes (R,), ...
        score_thresh (float): keep scores >= this.
        classes (list[int] or None): keep these contiguous classes (None: all).
        max_dets (int or None): keep at most this many, highest scores first.

    Returns:
        Instances: the kept ones, in descending score order.
    """
    keep = instances.scores >= score_thresh
    if classes is not None:
        keep &= torch.isin(instances.pred_classes, torch.as_tensor(classes, device=keep.device))
    kept = instances[keep]
    order = torch.argsort(kept.scores, descending=True, stable=True)
    if max_dets is not None:
        order = order[:max_dets]
    return kept[order]
