"""
The paper's tables from any set of runs: Table I (class-specific detection), Table II
(class-agnostic detection) and Table III (instance segmentation), each with mAP, AP50 and AR
(300 detections) per dataset per model, as Markdown, CSV and LaTeX, plus a bar chart.

Input: the `evaluation.json` files the evaluator writes to `OUTPUT_DIR/inference/<dataset>/`.
Rows are models (named from each run's config), columns datasets; a cell no run provides is
"n/a". Runs that cannot be read (no evaluation.json, not JSON, not UTF-8, or not of the shape
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

from tabulate import tabulate

from .coco import METRICS_FILE
from .output import make_folder, write_output, write_text
from .regions import is_finite_number as _is_finite_number

__all__ = ["TABLES", "MISSING", "find_metrics", "collect", "build_table", "write_report"]

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


def collect(paths):
    """
    Read every run. Returns (records, skipped): records are metrics dicts with `_row` (the
    row label, made unique per run) and `_path`; skipped is a list of (path, reason).
    """
    records, skipped = [], []
    for path in paths:
        try:
            files = find_metrics(path)
        except ValueError as e:
            skipped.append((path, str(e)))
            continue
        for f in files:
            try:
                record = _load(f)
            except ValueError as e:
                skipped.append((f, str(e)))
                continue
            record["_path"] = f
            record["_run"] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(f))))
            record["_row"] = _row_label(record, f)
            records.append(record)
    # Two runs with the same model name: tell them apart by their folder.
    runs_per_label = {}
    for r in records:
        runs_per_label.setdefault(r["_row"], set()).add(r["_run"])
    for r in records:
        if len(runs_per_label[r["_row"]]) > 1:
            r["_row"] = f"{r['_row']} [{_run_name(r['_path'])}]"
    return records, skipped


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
    Returns (rows, datasets, cells): row labels, dataset columns, and
    cells[(row, dataset)] = {"mAP": float or None, "AP50": ..., "AR": ...}.
    """
    cells = OrderedDict()
    for r in records:
        metrics, column = _cell(r, table)
        if isinstance(metrics, dict) and (r["_row"], column) not in cells:
            cells[(r["_row"], column)] = {name: metrics.get(key) for name, key in METRICS}
    rows = list(dict.fromkeys(row for row, _ in cells))
    datasets = sorted(dict.fromkeys(ds for _, ds in cells))
    return rows, datasets, cells


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


def _bar_chart(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, (title, (rows, datasets, cells)) in zip(axes[0], tables):
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mAP")
        ax.set_ylim(0, 100)
        if not rows:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
            continue
        width = 0.8 / len(rows)
        x = np.arange(len(datasets))
        for i, row in enumerate(rows):
            values = [cells.get((row, ds), {}).get("mAP") for ds in datasets]
            heights = [v if v is not None else 0.0 for v in values]
            bars = ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=row)
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
    fig.tight_layout()
    try:
        write_output(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_report(records, skipped, out_dir):
    """
    Write the three tables (`<stem>.md/.csv/.tex`), `tables.md` with all three and the list
    of skipped runs, and `report.png` (mAP bars) into `out_dir`, each atomically; OutputError
    names a file that cannot be written.

    Args:
        records, skipped: from `collect`.

    Returns:
        dict: table stem (and "all", "chart") -> {extension: path}.
    """
    make_folder(out_dir)
    written, built, markdown = {}, [], []
    for stem, title in TABLES:
        rows, datasets, cells = build_table(records, stem)
        written[stem], md = _write_table(out_dir, stem, title, rows, datasets, cells)
        markdown.append(md)
        built.append((title, (rows, datasets, cells)))
    all_md = os.path.join(out_dir, "tables.md")
    text = "\n".join(markdown)
    if skipped:
        text += "\nSkipped (could not be read):\n\n"
        text += "".join(f"- `{p}`: {reason}\n" for p, reason in skipped)
    write_text(all_md, text)
    written["all"] = {"md": all_md}
    chart = os.path.join(out_dir, "report.png")
    _bar_chart(built, chart)
    written["chart"] = {"png": chart}
    return written
