"""COCO evaluation with AR@300, class-agnostic scores, FROC, and the paper's tables."""

from .coco import METRICS_FILE, CXRCOCOEvaluator, build_coco_evaluator, eval_tasks
from .cocoeval import run_cocoeval, summarize
from .froc import FP_RATES, compute_froc
from .naming import model_name
from .validate import PredictionError

__all__ = [
    "CXRCOCOEvaluator",
    "build_coco_evaluator",
    "eval_tasks",
    "METRICS_FILE",
    "run_cocoeval",
    "summarize",
    "FP_RATES",
    "compute_froc",
    "model_name",
    "PredictionError",
]
