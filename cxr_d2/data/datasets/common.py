"""
What every source's loader shares: registration of `<source>_{split}` and
`<source>_agnostic_{split}`, the split selection, the split manifest, box and class checks.

A source module provides `parse(root, classes, log) -> list[dict]`: every labelled image of
the source as a Detectron2 record with `file_name`, `height`, `width`, `patient_id`,
`annotations` (XYXY_ABS boxes, `category_id` into `classes`) and, where the source publishes
one, `official_split`. Problems go to `log` (:class:`~cxr_d2.data.checks.ProblemLog`), one
line each, and the item concerned is skipped and counted.
"""

import functools
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..checks import ProblemLog, check_box
from ..paths import require_dir
from ..splits import SPLITS, select_split, split_options, write_split_manifest

__all__ = [
    "AGNOSTIC_CLASS",
    "register_source",
    "load_source_split",
    "box_annotation",
    "category_index",
    "split_manifest_path",
]

AGNOSTIC_CLASS = "lesion"


def split_manifest_path(root, split_mode, split_seed):
    """Where a source's split manifest is written: `<root>/cxr_d2_splits/<mode>_seed<seed>.json`."""
    return os.path.join(root, "cxr_d2_splits", f"{split_mode}_seed{split_seed}.json")


def category_index(log, where, name, classes, aliases=None):
    """Index of class `name` in `classes` (after `aliases`), or None after reporting it."""
    name = (aliases or {}).get(name, name)
    try:
        return classes.index(name)
    except ValueError:
        log.report(
            where, f"unknown class name {name!r} (known: {', '.join(classes)})", "annotation"
        )
        return None


def box_annotation(log, where, box, category_id, width, height, **extra):
    """
    A Detectron2 annotation for an XYXY_ABS box, or None after reporting why it is unusable.
    A box that only partly leaves the image is clipped and reported.
    """
    if category_id is None:
        return None
    checked, problem = check_box(box, width, height)
    if problem:
        log.report(where, problem, None if checked else "annotation")
    if checked is None:
        return None
    return {
        "bbox": checked,
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category_id,
        "iscrowd": 0,
        **extra,
    }


def load_source_split(source, parse, root, split, agnostic, classes, split_mode, split_seed, name):
    """
    Parse a source and return one split (the function `DatasetCatalog` calls).

    Every image gets an integer `image_id`: its index in the parsed source, the same in
    every split. The split manifest of all three splits is written on every load.
    """
    require_dir(root, source)
    log = ProblemLog(name)
    records = parse(root, list(classes), log)
    for i, r in enumerate(records):
        r["image_id"] = i
    splits = {s: select_split(records, s, split_mode, split_seed, source) for s in SPLITS}
    write_split_manifest(
        split_manifest_path(root, split_mode, split_seed), source, split_mode, split_seed, splits
    )
    out = splits[split]
    if agnostic:
        for r in out:
            r["annotations"] = [dict(a, category_id=0) for a in r["annotations"]]
    log.summarize(len(out), sum(len(r["annotations"]) for r in out))
    return out


def register_source(source, parse, root, classes, evaluator_type="coco", prefix="", **metadata):
    """
    Register `<prefix><source>_{train,val,test}` and `<prefix><source>_agnostic_{...}`
    lazily; metadata (classes, evaluator, image root, split options and manifest path)
    eagerly. Register under another `prefix` to use other split options in one process.

    The split options come from $CXR_SPLIT and $CXR_SPLIT_SEED at registration time.
    """
    options = split_options()
    manifest = split_manifest_path(root, options["split_mode"], options["split_seed"])
    for split in SPLITS:
        for agnostic in (False, True):
            name = f"{prefix}{source}_agnostic_{split}" if agnostic else f"{prefix}{source}_{split}"
            loader = functools.partial(
                load_source_split,
                source,
                parse,
                root,
                split,
                agnostic,
                tuple(classes),
                options["split_mode"],
                options["split_seed"],
                name,
            )
            DatasetCatalog.register(name, loader)
            MetadataCatalog.get(name).set(
                thing_classes=[AGNOSTIC_CLASS] if agnostic else list(classes),
                evaluator_type=evaluator_type,
                image_root=root,
                split=split,
                source=source,
                split_manifest=manifest,
                **options,
                **metadata,
            )
