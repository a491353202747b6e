"""A training hook that notices an exploding loss and stops the run (or warns) in one line."""
import logging
import statistics
from collections import deque

from detectron2.engine import HookBase

from ..errors import CXRError

__all__ = ["DivergenceHook", "TrainingDiverged", "divergence_message"]

logger = logging.getLogger(__name__)


class TrainingDiverged(CXRError):
    """The training loss exploded or became NaN/inf; the message says where and what to do."""


def divergence_message(cfg, iteration, loss, what):
    """One line naming the iteration, the loss, and the likely cause with its remedy."""
    solver = cfg.SOLVER
    if solver.CLIP_GRADIENTS.ENABLED:
        todo = f"lower SOLVER.BASE_LR (it is {solver.BASE_LR:g})"
    else:
        todo = (
            f"lower SOLVER.BASE_LR (it is {solver.BASE_LR:g}) or enable "
            "SOLVER.CLIP_GRADIENTS.ENABLED"
        )
    return (
        f"training diverged at iteration {iteration}: total_loss {loss:.4g} {what}; "
        f"the learning rate is likely too high: {todo}"
    )


class DivergenceHook(HookBase):
    """
    Watches `total_loss` in the trainer's EventStorage after each step: when the median of the
    last `window` iterations exceeds `factor` x the median of the first `window` (of this
    run), it raises TrainingDiverged (`action="stop"`; the hook is placed before the
    checkpointer, so the diverged weights are not saved as this step's checkpoint) or logs one
    warning (`action="warn"`). NaN/inf losses are Detectron2's FloatingPointError, turned into
    TrainingDiverged by the Trainer.
    """

    def __init__(self, cfg, window, factor, action):
        self._cfg = cfg
        self._window = window
        self._factor = factor
        self._action = action
        self._first = []
        self._last = deque(maxlen=window)
        self._warned = False

    @classmethod
    def from_config(cls, cfg):
        d = cfg.CXR.DIVERGENCE
        return cls(cfg, d.WINDOW, d.FACTOR, d.ACTION)

    def after_step(self):
        history = self.trainer.storage.histories().get("total_loss")
        if history is None or self._warned:  # only the main process writes total_loss
            return
        loss = history.latest()
        if len(self._first) < self._window:
            self._first.append(loss)
            return
        self._last.append(loss)
        if len(self._last) < self._window:
            return
        baseline, current = statistics.median(self._first), statistics.median(self._last)
        if current > self._factor * baseline:
            growth = current / baseline if baseline > 0 else float("inf")
            self._diverged(
                loss,
                f"(median {current:.4g} over the last {self._window} iterations, "
                f"{growth:.3g}x the median of the first {self._window})",
            )

    def _diverged(self, loss, what):
        message = divergence_message(self._cfg, self.trainer.iter, loss, what)
        if self._action == "stop":
            raise TrainingDiverged(message + "; the run was stopped (earlier checkpoints are kept)")
        logger.warning(message + " (CXR.DIVERGENCE.ACTION is 'warn': training goes on)")
        self._warned = True
