"""
A sweep's matrix file (YAML) and its expansion into runs: configs x datasets x seeds x points,
a point being one setting of the searched config keys (a grid, random draws, or both).

    root: output/sweeps/phantom_lr         # the sweep's folder (relative to the working dir)
    configs: [configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml, ...]
    datasets: [cxr_phantom]                # <name>_{train,val,test} are registered datasets;
                                           # default: the config's DATASETS.TRAIN minus _train
    seeds: [0, 1]                          # SEED of each run (default [0])
    opts: [SOLVER.MAX_ITER, 20]            # overrides of every run
    grid: {SOLVER.BASE_LR: [0.01, 0.02]}   # every combination
    random:                                # `trials` draws (seeded), crossed with the grid
      trials: 8
      seed: 0
      space: {SOLVER.BASE_LR: {log_uniform: [0.001, 0.1]}, SOLVER.MOMENTUM: {choice: [0.9, 0.95]}}
    select: {metric: bbox.AP, mode: max}   # the val-split score that picks a point
    slurm: {partition: gpu, nodes: 1, gpus_per_node: 8, timeout_min: 1440}   # executor.py

Runs train on `<dataset>_train` and are scored on `<dataset>_val`; `select` scores the chosen
point on `<dataset>_test` once (select.py).
"""

import itertools
import math
import os
import random
import re
from dataclasses import dataclass, field

import yaml

from ..errors import ConfigError

__all__ = ["Matrix", "RunSpec", "load_matrix", "expand", "point_name"]

_TOP_KEYS = {"root", "configs", "datasets", "seeds", "opts", "grid", "random", "select", "slurm"}
_DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int_uniform")


@dataclass
class Matrix:
    """A parsed matrix file; `path` is where it was read (for messages)."""

    path: str
    root: str
    configs: list
    datasets: list
    seeds: list
    opts: list
    grid: dict
    random: dict
    select: dict
    slurm: dict


@dataclass
class RunSpec:
    """
    One run of a sweep: a tools/train_net.py run in `output_dir`.

    `point` maps the searched keys to this run's values; `opts` are the train_net overrides
    (matrix opts, then the point, seed, datasets and output folder).
    """

    config: str
    dataset: str
    seed: int
    point: dict
    output_dir: str
    opts: list = field(default_factory=list)

    @property
    def train(self):
        return f"{self.dataset}_train"

    @property
    def val(self):
        return f"{self.dataset}_val"

    @property
    def test(self):
        return f"{self.dataset}_test"

    @property
    def stem(self):
        return os.path.splitext(os.path.basename(self.config))[0]

    @property
    def group(self):
        """The runs a selection compares: one config on one dataset."""
        return (self.stem, self.dataset)

    def train_opts(self):
        """The train_net overrides of this run: train on train, evaluate on val."""
        return self.opts + [
            "SEED", str(self.seed),
            "DATASETS.TRAIN", f"('{self.train}',)",
            "DATASETS.TEST", f"('{self.val}',)",
            "OUTPUT_DIR", self.output_dir,
        ]  # fmt: skip

    def test_opts(self):
        """The overrides that score this run's final model on the test split."""
        return self.opts + [
            "SEED", str(self.seed),
            "DATASETS.TRAIN", f"('{self.train}',)",
            "DATASETS.TEST", f"('{self.test}',)",
            "OUTPUT_DIR", self.output_dir,
            "MODEL.WEIGHTS", os.path.join(self.output_dir, "model_final.pth"),
        ]  # fmt: skip


def load_matrix(path):
    """Read and check a matrix file; a bad file or key is a ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"matrix file {path} cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"matrix file {path} is not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"matrix file {path}: give a mapping with root, configs, ...")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"matrix file {path}: unknown key(s) {unknown}; use {sorted(_TOP_KEYS)}")
    m = Matrix(
        path=path,
        root=data.get("root") or os.path.join("output", "sweeps", _stem(path)),
        configs=_list(path, data, "configs", str, required=True),
        datasets=_list(path, data, "datasets", str),
        seeds=_list(path, data, "seeds", int) or [0],
        opts=[str(v) for v in _list(path, data, "opts", (str, int, float))],
        grid=_mapping(path, data, "grid"),
        random=_mapping(path, data, "random"),
        select={"metric": "bbox.AP", "mode": "max", **_mapping(path, data, "select")},
        slurm=_mapping(path, data, "slurm"),
    )
    _check(m)
    return m


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _list(path, data, key, kind, required=False):
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(f"matrix file {path}: '{key}' is missing; give a list")
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) for v in value):
        raise ConfigError(f"matrix file {path}: '{key}' is {value!r}; give a non-empty list")
    return value


def _mapping(path, data, key):
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"matrix file {path}: '{key}' is {value!r}; give a mapping")
    return value


def _check(m):
    if len(m.opts) % 2:
        raise ConfigError(f"matrix file {m.path}: 'opts' has an odd length; give KEY VALUE pairs")
    for key, values in m.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"matrix file {m.path}: grid '{key}' is {values!r}; give a list")
    if m.random:
        trials = m.random.get("trials")
        if not isinstance(trials, int) or trials < 1 or not isinstance(m.random.get("space"), dict):
            raise ConfigError(
                f"matrix file {m.path}: 'random' needs trials (>= 1) and a space of "
                f"KEY: {{one of {', '.join(_DISTRIBUTIONS)}: [...]}}"
            )
        for key, dist in m.random["space"].items():
            if not (
                isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in _DISTRIBUTIONS
            ):
                raise ConfigError(
                    f"matrix file {m.path}: random space '{key}' is {dist!r}; give one of "
                    f"{', '.join(_DISTRIBUTIONS)} with its list, e.g. {{log_uniform: [0.001, 0.1]}}"
                )
    if (
        m.select.get("mode") not in ("max", "min")
        or len(str(m.select.get("metric")).split(".")) != 2
    ):
        raise ConfigError(
            f"matrix file {m.path}: select is {m.select!r}; give metric TASK.METRIC (e.g. "
            "bbox.AP, segm.AP50) and mode max or min"
        )


def _draw(rng, dist):
    ((kind, args),) = dist.items()
    if kind == "choice":
        return rng.choice(args)
    lo, hi = args
    if kind == "uniform":
        return float(f"{rng.uniform(lo, hi):.4g}")
    if kind == "int_uniform":
        return rng.randint(lo, hi)
    return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")


def points(m):
    """The searched settings, in order: the grid's product, each crossed with the draws."""
    keys = list(m.grid)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(m.grid[k] for k in keys))]
    if not m.random:
        return grid
    rng = random.Random(m.random.get("seed", 0))
    draws = [
        {k: _draw(rng, d) for k, d in m.random["space"].items()} for _ in range(m.random["trials"])
    ]
    return [{**g, **d} for g in grid for d in draws]


def _value(v):
    """A config value as merge_from_list reads it."""
    return str(tuple(v)) if isinstance(v, (list, tuple)) else str(v)


def point_name(point):
    """The folder of a point: `KEY=VALUE,...` in the matrix's order ("default" when empty)."""
    if not point:
        return "default"
    name = ",".join(f"{k}={_value(v).replace(' ', '')}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+()\-]", "_", name)


def expand(m, default_dataset=None):
    """
    The runs of matrix `m`: `<root>/<config stem>/<dataset>/seed<k>/<point>` each.

    Args:
        default_dataset: callable(config path) -> dataset name, for a matrix without datasets.
    """
    runs = []
    for config in m.configs:
        datasets = m.datasets or [default_dataset(config)]
        for dataset, seed, point in itertools.product(datasets, m.seeds, points(m)):
            stem = os.path.splitext(os.path.basename(config))[0]
            out = os.path.join(m.root, stem, dataset, f"seed{seed}", point_name(point))
            opts = list(m.opts)
            for k, v in point.items():
                opts += [k, _value(v)]
            runs.append(RunSpec(config, dataset, seed, dict(point), out, opts))
    seen = {}
    for r in runs:
        if r.output_dir in seen:
            raise ConfigError(
                f"matrix file {m.path}: {seen[r.output_dir]} and {r.config} give the same run "
                f"folder {r.output_dir}; rename one config or split the matrix"
            )
        seen[r.output_dir] = r.config
    return runs
