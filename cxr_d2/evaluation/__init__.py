from .coco import build_coco_evaluator, eval_tasks

__all__ = ["build_coco_evaluator", "eval_tasks"]
