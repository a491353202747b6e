"""tools/sweep.py: run a matrix of tools/train_net.py runs, list their state, select on val."""

import argparse
import os
import sys

from tabulate import tabulate

from ..errors import CXRError, ConfigError
from .executor import SLURM_KEYS, make_submitit_executor, run_local, run_submitit, slurm_parameters
from .job import RunJob
from .matrix import expand, load_matrix, point_name
from .select import choose, groups, tested_points, write_selection
from .state import last_iteration, read_metric, read_run, run_state

__all__ = ["main"]

EXECUTORS = ("local", "submitit-local", "slurm")
TO_RUN = ("pending", "interrupted", "failed")


def _parser(doc):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train every run not finished (killed ones resume)")
    status = sub.add_parser("status", help="list every run and its state")
    select = sub.add_parser("select", help="pick each group's point on val, score it on test once")
    for p in (run, status, select):
        p.add_argument("matrix", help="the matrix file (YAML; see configs/sweeps/)")
    for p in (run, select):
        p.add_argument("--executor", choices=EXECUTORS, default="local")
        p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
        p.add_argument("--gpus", default="", help="local: GPU ids, one run per GPU (e.g. 0,1,2,3)")
        p.add_argument("--in-process", action="store_true", help="local: train in this process")
        p.add_argument("--no-wait", action="store_true", help="slurm: submit and return")
        for key, (_, kind, sbatch) in SLURM_KEYS.items():
            if kind is not list:
                p.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"slurm: {sbatch}")
    run.add_argument(
        "--resubmit", action="store_true",
        help="also run runs recorded as submitted/running (their job is known to be gone)",
    )  # fmt: skip
    return parser


def main(argv=None, doc=__doc__):
    args = _parser(doc).parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
        runs = expand(matrix, default_dataset=_config_dataset)
        _check_datasets(matrix, runs)
        return {"run": _run, "status": _status, "select": _select}[args.command](args, matrix, runs)
    except CXRError as e:
        sys.exit(f"error: {e}")


def _config_dataset(config):
    """The dataset of a config's DATASETS.TRAIN[0], without `_train`."""
    from detectron2.config import get_cfg

    from ..config import add_cxr_config
    from ..engine.config_file import merge_config_file
    from ..engine.projects import project_config_fns

    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_project_config in project_config_fns():
        add_project_config(cfg)
    merge_config_file(cfg, config)
    train = cfg.DATASETS.TRAIN
    if len(train) != 1 or not train[0].endswith("_train"):
        raise ConfigError(
            f"{config}: DATASETS.TRAIN is {tuple(train)}; give the matrix 'datasets' (names "
            "whose _train, _val and _test splits are registered)"
        )
    return train[0][: -len("_train")]


def _check_datasets(matrix, runs):
    from detectron2.data import DatasetCatalog

    import cxr_d2  # noqa: F401 (registers the datasets)

    registered = set(DatasetCatalog.list())
    for r in runs:
        for name in (r.train, r.val, r.test):
            if name not in registered:
                raise ConfigError(
                    f"matrix file {matrix.path}: dataset {r.dataset} needs {name}, which is not a "
                    "registered dataset; see datasets/README.md for the names"
                )


def _settings(args, matrix):
    settings = dict(matrix.slurm)
    for key in SLURM_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    return settings


def _execute(args, matrix, jobs):
    if not jobs:
        return []
    if args.executor == "local":
        gpus = [g for g in args.gpus.split(",") if g]
        return run_local(jobs, gpus=gpus, in_process=args.in_process)
    folder = os.path.join(matrix.root, ".submitit")
    executor = make_submitit_executor(args.executor, folder, _settings(args, matrix))
    return run_submitit(executor, jobs, wait=not args.no_wait)


def _sweep_name(matrix):
    return os.path.splitext(os.path.basename(matrix.path))[0]


def _run(args, matrix, runs):
    todo, skipped = [], {}
    for r in runs:
        state = run_state(r)
        if state in TO_RUN or (args.resubmit and state in ("submitted", "running")):
            todo.append(r)
        else:
            skipped[state] = skipped.get(state, 0) + 1
    print(f"{len(runs)} runs in {matrix.root}: {len(todo)} to run" + "".join(
        f", {n} {state} (skipped)" for state, n in skipped.items()))  # fmt: skip
    jobs = [RunJob(r, _sweep_name(matrix)) for r in todo]
    if args.dry_run:
        if args.executor == "slurm":
            print("slurm parameters:", slurm_parameters(_settings(args, matrix)))
        for job in jobs:
            print(f"{run_state(job.spec):11s} {job.command()}")
        return 0
    return _report_failures(_execute(args, matrix, jobs))


def _report_failures(failures):
    for spec, why in failures:
        print(f"failed: {spec.output_dir}: {why}", file=sys.stderr)
    if failures:
        sys.exit(
            f"error: {len(failures)} run(s) failed; fix them and run again (finished runs are kept)"
        )
    return 0


def _status(args, matrix, runs):
    metric = matrix.select["metric"]
    rows = [_status_row(r, matrix.root, metric) for r in runs]
    headers = ["run", "state", "iteration", "attempts", f"val {metric}", f"test {metric}",
               "selected", "error"]  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))
    counts = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def _status_row(r, root, metric):
    data, state, done = read_run(r), run_state(r), last_iteration(r)
    return [
        os.path.relpath(r.output_dir, root), state, "final" if done < 0 else done,
        data.get("attempts", 0), _fmt(read_metric(r, r.val, metric)),
        _fmt(read_metric(r, r.test, metric)), "yes" if data.get("selected") else "",
        (data.get("error") or "")[:80] if state == "failed" else "",
    ]  # fmt: skip


def _fmt(value):
    return "" if value is None else f"{value:.2f}"


def _select(args, matrix, runs):
    metric, mode = matrix.select["metric"], matrix.select["mode"]
    plans = []
    for (stem, dataset), members in groups(runs).items():
        chosen, rows = choose(members, metric, mode)
        tested = tested_points(members) - {chosen}
        if tested:
            raise ConfigError(
                f"{stem} on {dataset}: the test split was already scored for {sorted(tested)}, "
                f"not for the val-chosen {chosen}; the protocol scores test once, for the chosen "
                "point only (start a new sweep root to tune again)"
            )
        plans.append((members, chosen, rows))
    sweep = _sweep_name(matrix)
    jobs = [
        RunJob(r, sweep, eval_only=True)
        for members, chosen, _ in plans for r in members
        if point_name(r.point) == chosen and read_metric(r, r.test, metric) is None
    ]  # fmt: skip
    if args.dry_run:
        for job in jobs:
            print(f"test once: {job.command()}")
        return 0
    failures = _execute(args, matrix, jobs)
    for members, chosen, rows in plans:
        data = write_selection(members, metric, mode, chosen, rows, sweep)
        _print_selection(members[0], data)
    return _report_failures(failures)


def _print_selection(first, data):
    metric = data["metric"]
    print(f"\n{first.stem} on {first.dataset}: {metric}, {data['mode']} of the val mean over seeds")
    rows = [
        [row["folder"], len(row["val"]), f"{row['val_mean']:.2f} ± {row['val_sd']:.2f}",
         "<- chosen" if row["folder"] == data["chosen"] else ""]
        for row in data["points"]
    ]  # fmt: skip
    print(tabulate(rows, headers=["point", "seeds", "val (mean ± sd)", ""], tablefmt="github"))
    if data["test_mean"] is not None:
        print(f"test, chosen point only: {data['test_mean']:.2f} ± {data['test_sd']:.2f} "
              f"(seeds {', '.join(str(k) for k in data['test'])})")  # fmt: skip
