"""
The paper's tables from any set of runs: Table I (class-specific detection), Table II
(class-agnostic detection) and Table III (instance segmentation), each with mAP, AP50 and AR
(300 detections) per dataset per model, as Markdown, CSV and LaTeX, plus a bar chart.

Input: the `evaluation.json` files the evaluator writes to `OUTPUT_DIR/inference/<dataset>/`.
Rows are models (named from each run's config), columns datasets; a cell no run provides is
"n/a". Runs whose configs differ only by SEED (and OUTPUT_DIR) are one row: the tables give
their mean, `<table>_uncertainty.*` the mean ± std over seeds with a bootstrap interval over
test images, `paired_differences.*` the paired bootstrap interval of every two rows'
difference, `<table>.png` the bars with those intervals (cxr_d2.evaluation.uncertainty). Runs that cannot be read (no evaluation.json, not JSON, not UTF-8, or not of the shape
the evaluator writes: a key missing or of another type) are skipped and listed with the
reason, never fatal for the others. Every output is written atomically; a failed write is an
OutputError naming the file.
"""

import csv
import glob
import io
import json
import os
from collections import OrderedDict

import numpy as np
import yaml
from tabulate import tabulate

from .coco import METRICS_FILE
from .output import make_folder, write_output, write_text
from .regions import is_finite_number as _is_finite_number
from .uncertainty import bootstrap_tables, paired_differences

__all__ = [
    "TABLES",
    "MISSING",
    "find_metrics",
    "collect",
    "build_table",
    "write_report",
]

MISSING = "n/a"
# (file stem, title, what it holds)
TABLES = (
    ("table1_class_specific", "Table I: class-specific detection (boxes)"),
    ("table2_class_agnostic", "Table II: class-agnostic detection (boxes)"),
    ("table3_instance_segmentation", "Table III: instance segmentation (masks)"),
)
# (column name, metric key in evaluation.json)
METRICS = (("mAP", "AP"), ("AP50", "AP50"), ("AR", "AR"))


def find_metrics(path):
    """
    The evaluation.json files of a run folder (its `inference/*/`), of an evaluation folder, or
    the file itself. Raises ValueError with the reason when there is none.
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ValueError("no such file or folder")
    if os.path.isfile(os.path.join(path, METRICS_FILE)):
        return [os.path.join(path, METRICS_FILE)]
    found = sorted(glob.glob(os.path.join(path, "inference", "*", METRICS_FILE)))
    if not found:
        raise ValueError(
            f"no {METRICS_FILE} in {os.path.join(path, 'inference', '<dataset>')}/ "
            "(evaluate the run first: tools/train_net.py --eval-only)"
        )
    return found


# Keys of evaluation.json the tables read: (key, accepted types, what they hold).
_RECORD_KEYS = (
    ("dataset", str, "the dataset's name"),
    ("dataset_label", str, "a dataset name"),
    ("model", str, "a model name"),
    ("agnostic_dataset", bool, "true or false"),
    ("agnostic_training", bool, "true or false"),
)
_TABLE_TASKS = ("bbox", "bbox_agnostic", "segm")


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"cannot read it ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("tasks"), dict):
        raise ValueError("not a metrics file of cxr_d2 (no 'tasks')")
    if not record.get("dataset"):
        raise ValueError("no 'dataset' in it")
    _check_record(record)
    return record


def _check_record(record):
    """ValueError naming the key of an evaluation.json the tables cannot read."""
    for key, kind, what in _RECORD_KEYS:
        if key in record and not isinstance(record[key], kind):
            raise ValueError(f"'{key}' is {record[key]!r}, not {what}; evaluate the run again")
    for task in _TABLE_TASKS:
        metrics = record["tasks"].get(task)
        if metrics is None:
            continue
        if not isinstance(metrics, dict):
            raise ValueError(f"'tasks.{task}' is not an object of metrics; evaluate the run again")
        for _, key in METRICS:
            value = metrics.get(key)
            if value is not None and not _is_finite_number(value):
                raise ValueError(
                    f"'tasks.{task}.{key}' is {value!r}, not a number or null; evaluate the run "
                    "again"
                )


def _run_name(path):
    """The run folder of `.../RUN/inference/<dataset>/evaluation.json`."""
    folder = os.path.dirname(os.path.abspath(path))
    parent = os.path.dirname(folder)
    if os.path.basename(parent) == "inference":
        return os.path.basename(os.path.dirname(parent))
    return os.path.basename(folder)


def _row_label(record, path):
    model = record.get("model") or _run_name(path)
    if record.get("agnostic_training"):
        model += " (agnostic training)"
    return model


# Config keys that differ between the seeds (and evaluations) of one experiment: SEED, the
# run's folder, the dataset scored, and MODEL.WEIGHTS where it is the run's own checkpoint.
_SEED_KEYS = ("SEED", "OUTPUT_DIR", "DATASETS.TEST")


def _config_without_seed(record):
    """The run's config (a flat dict) without _SEED_KEYS; None where evaluation.json has none."""
    try:
        config = yaml.safe_load(record.get("config") or "")
    except yaml.YAMLError:
        return None
    if not isinstance(config, dict):
        return None
    flat = _flat(config)
    own = str(flat.get("OUTPUT_DIR") or "")
    weights = str(flat.get("MODEL.WEIGHTS") or "")
    if own and weights.startswith(os.path.join(own, "")):
        flat.pop("MODEL.WEIGHTS")
    return {k: v for k, v in flat.items() if k not in _SEED_KEYS}


def _flat(config, prefix=""):
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _seed(record):
    try:
        config = yaml.safe_load(record.get("config") or "")
    except yaml.YAMLError:
        return None
    return config.get("SEED") if isinstance(config, dict) else None


def collect(paths):
    """
    Read every run. Returns (records, skipped): records are metrics dicts with `_row` (the
    row label: runs that differ only by seed share it; other runs of one model name on one
    dataset are told apart by the config keys that differ, or their folder), `_seed` and
    `_path`; skipped is a list of (path, reason). A file named twice is read once.
    """
    records, skipped, seen = [], [], set()
    for path in paths:
        try:
            files = find_metrics(path)
        except ValueError as e:
            skipped.append((path, str(e)))
            continue
        for f in files:
            if os.path.abspath(f) in seen:
                continue
            seen.add(os.path.abspath(f))
            try:
                record = _load(f)
            except ValueError as e:
                skipped.append((f, str(e)))
                continue
            record["_path"] = f
            record["_run"] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(f))))
            record["_row"] = _row_label(record, f)
            record["_config"] = _config_without_seed(record)
            record["_seed"] = _seed(record)
            records.append(record)
    _label_groups(records)
    return records, skipped


def _label_groups(records):
    """
    Where one model name on one dataset covers runs that differ by more than the seed (a grid
    point, another schedule), suffix `_row` with the config keys that differ between them, or
    the run folder where evaluation.json has no config. Seeds of one experiment keep one row.
    """
    cells = OrderedDict()  # (label, dataset) -> {experiment key: [records]}
    for r in records:
        key = r["_run"] if r["_config"] is None else json.dumps(r["_config"], sort_keys=True)
        cells.setdefault((r["_row"], r["dataset"]), OrderedDict()).setdefault(key, []).append(r)
    suffixes = []
    for parts in cells.values():
        if len(parts) < 2:
            continue
        configs = [group[0]["_config"] for group in parts.values()]
        differing = []
        if all(c is not None for c in configs):
            keys = sorted(set().union(*configs))
            differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
        for group, config in zip(parts.values(), configs):
            if differing:
                suffix = ", ".join(f"{k}={config.get(k)}" for k in differing[:3])
            else:
                suffix = _run_name(group[0]["_path"])
            suffixes += [(r, suffix) for r in group]
    for r, suffix in suffixes:
        r["_row"] = f"{r['_row']} [{suffix}]"


def _cell(record, table):
    """The metrics dict a record contributes to a table (or None), and its column."""
    tasks, agnostic_ds = record["tasks"], bool(record.get("agnostic_dataset"))
    if table == "table1_class_specific":
        return (None if agnostic_ds else tasks.get("bbox")), record["dataset"]
    if table == "table2_class_agnostic":
        metrics = tasks.get("bbox") if agnostic_ds else tasks.get("bbox_agnostic")
        return metrics, record.get("dataset_label") or record["dataset"]
    return (None if agnostic_ds else tasks.get("segm")), record["dataset"]


def build_table(records, table):
    """
    Returns (rows, datasets, cells, members): row labels, dataset columns,
    cells[(row, dataset)] = {"mAP": float or None, "AP50": ..., "AR": ...} (the mean over the
    row's seeds), and members[(row, dataset)] = the records of that cell, one per seed.
    """
    members = OrderedDict()
    for r in records:
        metrics, column = _cell(r, table)
        if isinstance(metrics, dict):
            members.setdefault((r["_row"], column), []).append(r)
    cells = OrderedDict()
    for key, group in members.items():
        values = {name: _values(group, table, metric) for name, metric in METRICS}
        cells[key] = {name: (float(np.mean(v)) if v else None) for name, v in values.items()}
    rows = list(dict.fromkeys(row for row, _ in cells))
    datasets = sorted(dict.fromkeys(ds for _, ds in cells))
    return rows, datasets, cells, members


def _values(group, table, metric):
    """The metric of each seed of a cell (None where a seed has none: the cell is n/a)."""
    values = [_cell(r, table)[0].get(metric) for r in group]
    return [] if any(v is None for v in values) else values


def _spread(group, table):
    """{name: standard deviation over seeds (n - 1), None for one seed}."""
    out = {}
    for name, metric in METRICS:
        values = _values(group, table, metric)
        out[name] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return out


def _fmt(value):
    return MISSING if value is None else f"{value:.1f}"


def _grid(rows, datasets, cells):
    header = ["Model"] + [f"{ds} {name}" for ds in datasets for name, _ in METRICS]
    body = []
    for row in rows:
        line = [row]
        for ds in datasets:
            cell = cells.get((row, ds), {})
            line += [_fmt(cell.get(name)) for name, _ in METRICS]
        body.append(line)
    return header, body


def _table_texts(title, header, body):
    """The table as {"md", "csv", "tex"}: text."""
    note = "" if body else "\n_No run has results for this table._\n"
    md = f"### {title}\n\n"
    md += tabulate(body, headers=header, tablefmt="github", disable_numparse=True) + "\n" + note
    csv_text = io.StringIO(newline="")
    writer = csv.writer(csv_text)
    writer.writerow(header)
    writer.writerows(body)
    tex = f"% {title}\n"
    if body:
        tex += tabulate(body, headers=header, tablefmt="latex_booktabs", disable_numparse=True)
        tex += "\n"
    else:
        tex += "% No run has results for this table.\n"
    return {"md": md, "csv": csv_text.getvalue(), "tex": tex}


def _write_table(out_dir, stem, title, rows, datasets, cells):
    """Write `<stem>.md/.csv/.tex`; returns ({extension: path}, the Markdown text)."""
    texts = _table_texts(title, *_grid(rows, datasets, cells))
    paths = {ext: os.path.join(out_dir, f"{stem}.{ext}") for ext in texts}
    for ext, text in texts.items():
        write_text(paths[ext], text)
    return paths, texts["md"]


def _interval_text(interval):
    lo, hi = interval if interval else (float("nan"), float("nan"))
    return MISSING if not np.isfinite(lo) else f"[{lo:.1f}, {hi:.1f}]"


def _uncertainty_rows(rows, datasets, cells, members, table, boot):
    """(display body, csv body) of `<table>_uncertainty`: one line per (model, dataset)."""
    display, machine = [], []
    for row in rows:
        for ds in datasets:
            if (row, ds) not in cells:
                continue
            group, cell = members[(row, ds)], cells[(row, ds)]
            spread = _spread(group, table)
            intervals = boot.get((row, ds), {}).get("interval", {})
            seeds = [r["_seed"] for r in group]
            seeds_text = ", ".join(MISSING if v is None else str(v) for v in seeds)
            line, csv_line = [row, ds, f"{len(group)} ({seeds_text})"], [row, ds, len(group)]
            for name, _ in METRICS:
                mean, std = cell.get(name), spread[name]
                text = _fmt(mean) + (f" ± {std:.1f}" if std is not None else "")
                line.append(f"{text} {_interval_text(intervals.get(name))}")
                lo, hi = intervals.get(name, (float("nan"), float("nan")))
                csv_line += [_num(mean), _num(std), _num(lo), _num(hi)]
            display.append(line)
            machine.append(csv_line)
    return display, machine


def _num(value):
    return "" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _write_uncertainty(out_dir, stem, title, built, boot, level):
    """Write `<stem>_uncertainty.{md,csv,tex}`; returns ({ext: path}, the Markdown text)."""
    rows, datasets, cells, members = built
    display, machine = _uncertainty_rows(rows, datasets, cells, members, stem, boot)
    percent = f"{level * 100:g}%"
    header = ["Model", "Dataset", "Seeds"] + [
        f"{name} (mean ± std [{percent} bootstrap])" for name, _ in METRICS
    ]
    texts = _table_texts(f"{title}: uncertainty", header, display)
    csv_header = ["Model", "Dataset", "Seeds"]
    for name, _ in METRICS:
        csv_header += [name, f"{name} std", f"{name} lo", f"{name} hi"]
    texts["csv"] = _csv_text(csv_header, machine)
    paths = {ext: os.path.join(out_dir, f"{stem}_uncertainty.{ext}") for ext in texts}
    for ext, text in texts.items():
        write_text(paths[ext], text)
    return paths, texts["md"]


def _csv_text(header, body):
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue()


def _write_differences(out_dir, built_tables, boot, level):
    """Write `paired_differences.{md,csv}`: A - B of every two rows on one dataset."""
    titles = dict(TABLES)
    lines = []
    for table, ds, a, b, name, lo, hi in paired_differences(boot, METRICS, level):
        cells = built_tables[table][2]
        va, vb = cells[(a, ds)].get(name), cells[(b, ds)].get(name)
        diff = None if va is None or vb is None else va - vb
        lines.append([titles[table].split(":")[0], ds, a, b, name, diff, lo, hi])
    percent = f"{level * 100:g}%"
    header = [
        "Table",
        "Dataset",
        "Model A",
        "Model B",
        "Metric",
        "A - B",
        f"{percent} paired bootstrap",
    ]
    display = [line[:5] + [_fmt(line[5]), _interval_text(line[6:8])] for line in lines]
    md = f"### Paired differences ({percent} paired bootstrap over test images)\n\n"
    md += tabulate(display, headers=header, tablefmt="github", disable_numparse=True) + "\n"
    if not display:
        md += "\n_No two models were scored on the same images with their predictions._\n"
    csv_header = header[:5] + ["A - B", "lo", "hi"]
    machine = [line[:5] + [_num(line[5]), _num(line[6]), _num(line[7])] for line in lines]
    paths = {"md": os.path.join(out_dir, "paired_differences.md")}
    paths["csv"] = os.path.join(out_dir, "paired_differences.csv")
    write_text(paths["md"], md)
    write_text(paths["csv"], _csv_text(csv_header, machine))
    return paths, md


def _bars(ax, rows, datasets, cells, boot, name):
    """Grouped bars of metric `name`, with the bootstrap interval as error bars."""
    width = 0.8 / len(rows)
    x = np.arange(len(datasets))
    for i, row in enumerate(rows):
        values = [cells.get((row, ds), {}).get(name) for ds in datasets]
        heights = [v if v is not None else 0.0 for v in values]
        lows, highs = [], []
        for ds, v in zip(datasets, heights):
            lo, hi = boot.get((row, ds), {}).get("interval", {}).get(name, (v, v))
            ok = np.isfinite(lo) and np.isfinite(hi)
            lows.append(max(v - lo, 0.0) if ok else 0.0)
            highs.append(max(hi - v, 0.0) if ok else 0.0)
        bars = ax.bar(
            x + i * width - 0.4 + width / 2,
            heights,
            width,
            label=row,
            yerr=[lows, highs],
            capsize=2,
            error_kw={"elinewidth": 0.8},
        )
        for bar, v in zip(bars, values):
            if v is None:
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    0,
                    MISSING,
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                )
    ax.set_xticks(x)
    ax.set_xticklabels(datasets, fontsize=7, rotation=15)
    ax.legend(fontsize=6)


def _chart(panels, path, note=""):
    """One subplot per (title, (rows, datasets, cells, boot), metric name), and `note` under
    them; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, (rows, datasets, cells, boot), name) in zip(axes[0], panels):
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(name)
        ax.set_ylim(0, 100)
        if not rows:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
            continue
        _bars(ax, rows, datasets, cells, boot, name)
    fig.tight_layout(rect=(0, 0.04, 1, 1) if note else None)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7)
    try:
        write_output(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_report(records, skipped, out_dir, resamples=1000, seed=0, level=0.95):
    """
    Write into `out_dir`, each atomically (OutputError names a file that cannot be written):
    the three tables (`<stem>.md/.csv/.tex`, the mean over seeds), their uncertainty
    (`<stem>_uncertainty.md/.csv/.tex`: mean ± std over seeds and the bootstrap interval),
    `paired_differences.md/.csv`, `tables.md` with all of them and the runs skipped or without
    an interval, `<stem>.png` (mAP, AP50, AR bars with intervals; none for an empty table) and
    `report.png` (mAP of the three tables).

    Args:
        records, skipped: from `collect`.
        resamples (int): bootstrap resamples of the test images (0: no intervals).
        seed (int): of the resampling; level (float): of the intervals.

    Returns:
        (written, problems): table stem (and "all", "chart", ...) -> {extension: path}, and
        [(evaluation.json, reason)] of the evaluations without a bootstrap interval.
    """
    make_folder(out_dir)
    built = OrderedDict((stem, build_table(records, stem)) for stem, _ in TABLES)
    boot, problems = {stem: {} for stem in built}, []
    if resamples > 0:
        members = {stem: b[3] for stem, b in built.items()}
        boot, problems = bootstrap_tables(members, METRICS, resamples, seed, level)
    written, markdown, uncertainty = {}, [], []
    note = (
        f"error bars: {level * 100:g}% bootstrap interval over test images ({resamples} resamples)"
    )
    note = note if resamples > 0 else ""
    for stem, title in TABLES:
        rows, datasets, cells, _ = built[stem]
        written[stem], md = _write_table(out_dir, stem, title, rows, datasets, cells)
        markdown.append(md)
        paths, md = _write_uncertainty(out_dir, stem, title, built[stem], boot[stem], level)
        written[f"{stem}_uncertainty"] = paths
        uncertainty.append(md)
        if rows:  # an empty table has no chart (report.png says "no results")
            chart = os.path.join(out_dir, f"{stem}.png")
            data = (rows, datasets, cells, boot[stem])
            panels = [(f"{title.split(':')[0]}: {name}", data, name) for name, _ in METRICS]
            _chart(panels, chart, note)
            written[f"{stem}_chart"] = {"png": chart}
    written["paired_differences"], diff_md = _write_differences(out_dir, built, boot, level)
    all_md = os.path.join(out_dir, "tables.md")
    text = "\n".join(markdown + uncertainty + [diff_md])
    if skipped:
        text += "\nSkipped (could not be read):\n\n"
        text += "".join(f"- `{p}`: {reason}\n" for p, reason in skipped)
    if problems:
        text += "\nNo bootstrap interval:\n\n"
        text += "".join(f"- `{p}`: {reason}\n" for p, reason in problems)
    write_text(all_md, text)
    written["all"] = {"md": all_md}
    chart = os.path.join(out_dir, "report.png")
    panels = [(title, (*built[stem][:3], boot[stem]), "mAP") for stem, title in TABLES]
    _chart(panels, chart, note)
    written["chart"] = {"png": chart}
    return written, problems
