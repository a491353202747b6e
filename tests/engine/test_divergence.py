"""An exploding or NaN training loss ends the run in one line naming the iteration, the loss
and what to do (CXR.DIVERGENCE), without saving the diverged weights as model_final."""
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from detectron2.config import get_cfg
from detectron2.utils.events import EventStorage

from cxr_d2.config import add_cxr_config
from cxr_d2.engine.divergence import DivergenceHook, TrainingDiverged

from tests.helpers import REPO_ROOT, TINY_OPTS, cpu_config, train


def _cfg(output_dir, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(cpu_config("retinanet"))
    cfg.merge_from_list(
        TINY_OPTS
        + ["SOLVER.MAX_ITER", "3", "SEED", "1", "CXR.DIVERGENCE.WINDOW", "1", "TEST.EVAL_PERIOD", "0"]
        + ["DATASETS.TEST", "()", "OUTPUT_DIR", str(output_dir), *opts]
    )
    return cfg


def _feed(hook, losses):
    """Run `hook.after_step` over `losses` as a trainer's total_loss; the iteration it stopped
    at, or None."""
    with EventStorage(0) as storage:
        hook.trainer = SimpleNamespace(storage=storage, iter=0)
        for i, loss in enumerate(losses):
            storage.iter = hook.trainer.iter = i
            storage.put_scalar("total_loss", loss)
            try:
                hook.after_step()
            except TrainingDiverged:
                return i
    return None


# (total_loss per iteration, WINDOW, FACTOR) -> iteration at which the run stops (None: never)
CASES = {
    "steady": ([1.0] * 10, 2, 100.0, None),
    "noisy_but_sane": ([1.0, 0.8, 2.0, 3.0, 5.0, 4.0], 2, 100.0, None),
    "one_spike_is_not_divergence": ([1.0, 1.0, 1.0, 1e6, 1.0, 1.0], 3, 100.0, None),
    "explodes": ([1.0, 1.0, 1.0, 500.0, 500.0], 2, 100.0, 3),
    "explodes_later": ([2.0] * 5 + [2e8] * 5, 3, 100.0, 6),
    "grows_past_a_small_factor": ([1.0, 1.0, 3.0, 4.0], 2, 3.0, 3),
    "zero_baseline": ([0.0, 0.0, 1.0, 1.0], 2, 100.0, 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stop_rule(case):
    losses, window, factor, stop_at = CASES[case]
    cfg = _cfg("unused")
    assert _feed(DivergenceHook(cfg, window, factor, "stop"), losses) == stop_at


def test_warn_mode_logs_once_and_goes_on(monkeypatch):
    warnings = []
    monkeypatch.setattr(logging.getLogger("cxr_d2.engine.divergence"), "warning", warnings.append)
    hook = DivergenceHook(_cfg("unused"), 2, 100.0, "warn")
    assert _feed(hook, [1.0, 1.0, 500.0, 500.0, 900.0, 900.0]) is None
    assert len(warnings) == 1
    assert warnings[0].startswith("training diverged at iteration 3: total_loss 500")
    assert "ACTION is 'warn'" in warnings[0]


def test_the_training_loop_prints_no_traceback_for_it():
    loop = logging.getLogger("detectron2.engine.train_loop")

    def record(error):
        return loop.makeRecord(loop.name, logging.ERROR, "f", 1, "Exception during training:", (), (type(error), error, None))

    assert not loop.filter(record(TrainingDiverged("x")))
    assert loop.filter(record(ValueError("x")))  # other errors keep their traceback


def test_huge_learning_rate_stops_the_run(tiny_phantom, tmp_path, one_thread):
    cfg = _cfg(tmp_path, "SOLVER.BASE_LR", "1e3")
    with pytest.raises(TrainingDiverged) as e:
        train(cfg)
    message = str(e.value)
    assert message.startswith("training diverged at iteration ")
    assert "SOLVER.BASE_LR (it is 1000)" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "model_final.pth")


def test_nan_loss_stops_the_run_in_one_line(tiny_phantom, tmp_path, one_thread, monkeypatch):
    from cxr_d2.engine import Trainer

    build_model = Trainer.build_model

    def nan_model(cfg):
        model = build_model(cfg)
        forward = model.forward
        model.forward = lambda batch: {k: v * float("nan") for k, v in forward(batch).items()}
        return model

    monkeypatch.setattr(Trainer, "build_model", classmethod(lambda cls, cfg: nan_model(cfg)))
    cfg = _cfg(tmp_path, "CXR.DIVERGENCE.ACTION", "warn", "SOLVER.CLIP_GRADIENTS.ENABLED", "False")
    with pytest.raises(TrainingDiverged, match=r"^training diverged at iteration 0: total_loss nan \(NaN or inf\).*lower SOLVER.BASE_LR .* or enable SOLVER.CLIP_GRADIENTS.ENABLED$"):
        train(cfg)
    assert not os.path.exists(tmp_path / "model_final.pth")


def test_a_normal_run_is_not_stopped(tiny_phantom, tmp_path, one_thread):
    trainer, losses = train(_cfg(tmp_path))
    assert trainer.iter == trainer.max_iter == 3
    assert os.path.isfile(tmp_path / "model_final.pth")


@pytest.mark.slow
def test_tool_prints_one_line_when_training_diverges(tiny_phantom, tmp_path):
    cmd = [
        sys.executable, os.path.join(REPO_ROOT, "tools", "train_net.py"),
        "--config-file", cpu_config("retinanet"), *TINY_OPTS,
        "SOLVER.MAX_ITER", "4", "SEED", "1", "CXR.DIVERGENCE.WINDOW", "2", "TEST.EVAL_PERIOD", "0",
        "SOLVER.BASE_LR", "1e3", "OUTPUT_DIR", str(tmp_path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=tiny_phantom, cwd=REPO_ROOT)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: training diverged at iteration ")
    assert "Traceback" not in r.stderr + r.stdout
    assert not os.path.exists(tmp_path / "model_final.pth")
