"""COCO evaluation of boxes (and masks) through pycocotools, never `detectron2._C`."""
from detectron2.evaluation import COCOEvaluator

__all__ = ["build_coco_evaluator", "eval_tasks"]


def eval_tasks(cfg):
    """The COCO task types a model is scored on: CXR.EVAL_TASKS, else bbox (+ segm)."""
    if cfg.CXR.EVAL_TASKS:
        return tuple(cfg.CXR.EVAL_TASKS)
    return ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)


def build_coco_evaluator(cfg, dataset_name, output_dir):
    """Detectron2's COCOEvaluator with pycocotools' official COCOeval (`use_fast_impl=False`)."""
    return COCOEvaluator(
        dataset_name, tasks=eval_tasks(cfg), distributed=True, output_dir=output_dir,
        use_fast_impl=False,
    )
