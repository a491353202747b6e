"""A matrix file's expansion into runs, counted by hand; bad files are one line."""

import math
import os

import pytest

from cxr_d2.errors import ConfigError
from cxr_d2.sweep.matrix import expand, load_matrix, point_name, points

MATRIX = """
root: {root}
configs: [configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml, configs/Phantom/retinanet_R_18_FPN_cpu.yaml]
datasets: [cxr_phantom, cxr_phantom_agnostic]
seeds: [0, 1, 2]
opts: [SOLVER.MAX_ITER, 10]
grid:
  SOLVER.BASE_LR: [0.01, 0.02]
  SOLVER.STEPS: [[], [5], [5, 8]]
"""


def _write(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text.replace("{root}", str(tmp_path / "sweep")))
    return str(path)


def test_grid_expansion_counted_by_hand(tmp_path):
    m = load_matrix(_write(tmp_path, MATRIX))
    runs = expand(m)
    # 2 configs x 2 datasets x 3 seeds x (2 x 3 grid points) = 72
    assert len(runs) == 72 and len({r.output_dir for r in runs}) == 72
    r = runs[0]
    assert r.output_dir == os.path.join(
        tmp_path, "sweep", "faster_rcnn_R_18_FPN_cpu", "cxr_phantom", "seed0",
        "SOLVER.BASE_LR=0.01,SOLVER.STEPS=()",
    )  # fmt: skip
    assert runs[5].point == {"SOLVER.BASE_LR": 0.02, "SOLVER.STEPS": [5, 8]}
    assert point_name(runs[5].point) == "SOLVER.BASE_LR=0.02,SOLVER.STEPS=(5,8)"
    opts = runs[5].train_opts()
    assert opts[:6] == ["SOLVER.MAX_ITER", "10", "SOLVER.BASE_LR", "0.02", "SOLVER.STEPS", "(5, 8)"]
    pairs = dict(zip(opts[6::2], opts[7::2]))
    assert pairs == {
        "SEED": "0", "DATASETS.TRAIN": "('cxr_phantom_train',)",
        "DATASETS.TEST": "('cxr_phantom_val',)", "OUTPUT_DIR": runs[5].output_dir,
    }  # fmt: skip
    test = dict(zip(runs[5].test_opts()[6::2], runs[5].test_opts()[7::2]))
    assert test["DATASETS.TEST"] == "('cxr_phantom_test',)"
    assert test["MODEL.WEIGHTS"] == os.path.join(runs[5].output_dir, "model_final.pth")
    assert [r.seed for r in runs[:18:6]] == [0, 1, 2]
    assert runs[36].dataset == "cxr_phantom" and runs[36].stem == "retinanet_R_18_FPN_cpu"


def test_random_search_is_seeded_within_its_space_and_crossed_with_the_grid(tmp_path):
    text = MATRIX.split("grid:")[0] + """
grid: {SOLVER.WARMUP_ITERS: [0, 5]}
random:
  trials: 20
  seed: 3
  space:
    SOLVER.BASE_LR: {log_uniform: [0.001, 0.1]}
    SOLVER.MOMENTUM: {uniform: [0.8, 0.95]}
    SOLVER.IMS_PER_BATCH: {choice: [2, 4]}
    SOLVER.MAX_ITER: {int_uniform: [10, 12]}
"""
    m = load_matrix(_write(tmp_path, text))
    pts = points(m)
    assert len(pts) == 2 * 20 and pts == points(load_matrix(m.path))  # seeded: same draws
    assert [p["SOLVER.WARMUP_ITERS"] for p in pts[:21:20]] == [0, 5]
    lrs = [p["SOLVER.BASE_LR"] for p in pts[:20]]
    assert all(0.001 <= v <= 0.1 for v in lrs) and len(set(lrs)) == 20
    # log-uniform: about as many draws below the geometric middle (0.01) as above
    assert 4 <= sum(v < 0.01 for v in lrs) <= 16
    assert all(0.8 <= p["SOLVER.MOMENTUM"] <= 0.95 for p in pts)
    assert {p["SOLVER.IMS_PER_BATCH"] for p in pts} <= {2, 4}
    assert {p["SOLVER.MAX_ITER"] for p in pts} <= {10, 11, 12}
    assert all(float(f"{v:.4g}") == v for v in lrs)  # the folder name is the value trained
    assert len(expand(m)) == 2 * 2 * 3 * 40
    assert not any(math.isnan(v) for v in lrs)


def test_no_datasets_means_the_configs_own(tmp_path):
    text = "configs: [configs/Phantom/retinanet_R_18_FPN_cpu.yaml]\n"
    m = load_matrix(_write(tmp_path, text, "plain.yaml"))
    runs = expand(m, default_dataset=lambda config: "cxr_phantom")
    assert len(runs) == 1 and runs[0].seed == 0 and runs[0].point == {}
    assert runs[0].output_dir == os.path.join(
        "output", "sweeps", "plain", "retinanet_R_18_FPN_cpu", "cxr_phantom", "seed0", "default"
    )


@pytest.mark.parametrize(
    "text,match",
    [
        ("configs: x\n", "'configs' is 'x'"),
        ("configs: [a.yaml]\nseeds: [a]\n", "'seeds'"),
        ("configs: [a.yaml]\nopts: [SOLVER.MAX_ITER]\n", "odd length"),
        ("configs: [a.yaml]\ngrid: {SOLVER.BASE_LR: 0.1}\n", "grid 'SOLVER.BASE_LR'"),
        ("configs: [a.yaml]\nrandom: {trials: 2, space: {SOLVER.BASE_LR: {normal: [0, 1]}}}\n",
         "random space 'SOLVER.BASE_LR'"),
        ("configs: [a.yaml]\nselect: {metric: AP}\n", "TASK.METRIC"),
        ("configs: [a.yaml]\nconfig: [b.yaml]\n", "unknown key"),
        ("configs: [a.yaml\n", "not YAML"),
    ],
)  # fmt: skip
def test_bad_matrix_files_are_one_line(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as e:
        load_matrix(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_two_configs_with_one_stem_are_refused(tmp_path):
    text = (
        "configs: [configs/Phantom/faster_rcnn_R_50_FPN.yaml, configs/TBX11K/faster_rcnn_R_50_FPN.yaml]\n"
        "datasets: [tbx11k]\n"
    )
    with pytest.raises(ConfigError, match="same run folder"):
        expand(load_matrix(_write(tmp_path, text)))


def test_the_example_matrices_expand_to_registered_datasets(tmp_path):
    """configs/sweeps/*.yaml: each loads and expands (datasets from the configs where the
    matrix names none), every split registered; table1_nih: 13 configs x 3 seeds x 2 = 78."""
    from cxr_d2.sweep.cli import _check_datasets, _config_dataset

    from tests.helpers import REPO_ROOT

    folder = os.path.join(REPO_ROOT, "configs", "sweeps")
    counts = {}
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        for name in sorted(os.listdir(folder)):
            m = load_matrix(os.path.join("configs", "sweeps", name))
            runs = expand(m, default_dataset=_config_dataset)
            _check_datasets(m, runs)
            counts[name] = len(runs)
    finally:
        os.chdir(cwd)
    assert counts == {"lr_random_uml.yaml": 24, "phantom_demo.yaml": 8, "table1_nih.yaml": 78}
