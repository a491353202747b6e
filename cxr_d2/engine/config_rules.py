"""
Rules on config values that Detectron2 would otherwise meet as a traceback (a zero modulo, an
assertion deep in a scheduler or loader) or silently (a NaN learning rate): one table of
key -> predicate -> what to do.
"""
import logging
import math
from numbers import Number

from ..errors import ConfigError

__all__ = ["RULES", "check_values", "drop_late_steps"]

logger = logging.getLogger(__name__)


def _number(v):
    return isinstance(v, Number) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(n):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n


def _positive(v):
    return _number(v) and v > 0


def _non_negative(v):
    return _number(v) and v >= 0


def _ints_at_least(n):
    return lambda v: len(v) > 0 and all(_int_at_least(n)(x) for x in v)


def _increasing(v):
    return all(isinstance(x, int) and x >= 1 for x in v) and all(a < b for a, b in zip(v, v[1:]))


def _one_of(*choices):
    return lambda v: v in choices


# key -> (predicate on the value, what to do). MIN_SIZE 0 means "no resize" in Detectron2.
RULES = {
    "SOLVER.IMS_PER_BATCH": (_int_at_least(1), "give the images per batch, at least 1"),
    "SOLVER.MAX_ITER": (_int_at_least(1), "give the number of iterations, at least 1"),
    "SOLVER.CHECKPOINT_PERIOD": (_int_at_least(1), "give the iterations between checkpoints, at least 1"),
    "SOLVER.BASE_LR": (_positive, "give a learning rate > 0, e.g. 0.01"),
    "SOLVER.STEPS": (_increasing, "give strictly increasing iterations >= 1, or () for none"),
    "SOLVER.GAMMA": (_positive, "give the learning-rate factor at each step, > 0 (e.g. 0.1)"),
    "SOLVER.MOMENTUM": (lambda v: _number(v) and 0 <= v < 1, "give a momentum in [0, 1)"),
    "SOLVER.WEIGHT_DECAY": (_non_negative, "give a weight decay >= 0"),
    "SOLVER.WARMUP_ITERS": (_int_at_least(0), "give the warm-up iterations, >= 0"),
    "SOLVER.WARMUP_FACTOR": (lambda v: _number(v) and 0 <= v <= 1, "give a warm-up factor in [0, 1]"),
    "SOLVER.WARMUP_METHOD": (_one_of("linear", "constant"), "use 'linear' or 'constant'"),
    "SOLVER.LR_SCHEDULER_NAME": (
        _one_of("WarmupMultiStepLR", "WarmupCosineLR"),
        "use WarmupMultiStepLR or WarmupCosineLR",
    ),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": (_positive, "give a clipping threshold > 0"),
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": (_one_of("value", "norm"), "use 'value' or 'norm'"),
    "INPUT.MIN_SIZE_TRAIN": (_ints_at_least(0), "give one or more sizes in pixels, e.g. (800,)"),
    "INPUT.MAX_SIZE_TRAIN": (_int_at_least(1), "give the longest side in pixels, at least 1"),
    "INPUT.MIN_SIZE_TEST": (_int_at_least(0), "give a size in pixels (0 = no resize)"),
    "INPUT.MAX_SIZE_TEST": (_int_at_least(1), "give the longest side in pixels, at least 1"),
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": (_one_of("choice", "range"), "use 'choice' or 'range'"),
    "TEST.EVAL_PERIOD": (_int_at_least(0), "give the iterations between evaluations (0 = at the end only)"),
    "TEST.DETECTIONS_PER_IMAGE": (_int_at_least(1), "give the detections kept per image, at least 1"),
    "DATALOADER.NUM_WORKERS": (_int_at_least(0), "give the loader processes, >= 0 (0 = in the main process)"),
    "DATALOADER.SAMPLER_TRAIN": (
        _one_of("TrainingSampler", "RepeatFactorTrainingSampler", "RandomSubsetTrainingSampler"),
        "use TrainingSampler, RepeatFactorTrainingSampler or RandomSubsetTrainingSampler",
    ),
    "CXR.DATA.MAX_IMAGE_PIXELS": (_int_at_least(1), "give a pixel count, e.g. 100000000"),
    "CXR.EVAL.MAX_DETS_PER_IMAGE": (_int_at_least(1), "give the detections counted per image, e.g. 300"),
    "CXR.EVAL.FROC.IOU_THRESH": (lambda v: _number(v) and 0 < v <= 1, "give an IoU in (0, 1]"),
    "CXR.MIN_FREE_DISK_MB": (_non_negative, "give megabytes >= 0 (0 = no check)"),
    "CXR.DIVERGENCE.WINDOW": (_int_at_least(1), "give the iterations each median covers, at least 1"),
    "CXR.DIVERGENCE.FACTOR": (lambda v: _number(v) and v > 1, "give a growth factor > 1, e.g. 100"),
    "CXR.DIVERGENCE.ACTION": (_one_of("stop", "warn"), "use 'stop' or 'warn'"),
}


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_values(cfg, world_size=1):
    """Raise a ConfigError naming the first key of RULES whose value breaks its rule."""
    for key, (ok, todo) in RULES.items():
        value = _get(cfg, key)
        if value is _MISSING or (key.startswith("SOLVER.CLIP_GRADIENTS.C") and not cfg.SOLVER.CLIP_GRADIENTS.ENABLED):
            continue
        if not ok(value):
            raise ConfigError(f"{key} is {value!r}: {todo}")
    if cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range" and len(cfg.INPUT.MIN_SIZE_TRAIN) != 2:
        raise ConfigError(
            f"INPUT.MIN_SIZE_TRAIN is {tuple(cfg.INPUT.MIN_SIZE_TRAIN)} but sampling 'range' "
            "needs two sizes (min, max)"
        )
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
            f"{world_size} processes (GPUs); give a multiple of {world_size}"
        )


def drop_late_steps(cfg):
    """Drop SOLVER.STEPS at or after MAX_ITER (they never fire) with a warning. `cfg` mutable."""
    steps = tuple(cfg.SOLVER.STEPS)
    kept = tuple(s for s in steps if s < cfg.SOLVER.MAX_ITER)
    if kept != steps:
        logger.warning(
            f"SOLVER.STEPS {steps} has steps at or after SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}, "
            f"which never fire: using {kept}"
        )
        cfg.SOLVER.STEPS = kept
