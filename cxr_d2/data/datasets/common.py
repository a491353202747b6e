"""
What every source's loader shares: the source table row (:class:`Source`), the registration
of its dataset names, the split selection, one parse per process, box and class checks.

A source module provides `parse(root, classes, log, **options) -> list[dict]`: every
labelled image of the source as a Detectron2 record with `file_name`, `height`, `width`,
`patient_id`, `annotations` (XYXY_ABS boxes, `category_id` into `classes`) and, where the
source publishes one, `official_split`. Problems go to `log`
(:class:`~cxr_d2.data.checks.ProblemLog`), one line each, and the item concerned is skipped
and counted.

Dataset names: `<source>[_<variant>][_<scheme>][_agnostic]_<split>`, where a variant chooses
the parse options (e.g. VinDr's box fusion, the phantom's size), a scheme the split
(:data:`~cxr_d2.data.splits.SPLIT_SCHEMES`), and `_agnostic` merges every class into
:data:`AGNOSTIC_CLASS`. Every name is registered on `import cxr_d2` from the table alone:
nothing is read until a dataset is used.
"""

import copy
import functools
import os
from dataclasses import dataclass, field

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...errors import DatasetError
from ..checks import ProblemLog, check_box
from ..dicom import image_size
from ..masks import check_segmentation
from ..paths import require_dir
from ..splits import SPLIT_SCHEMES, SPLITS, select_split

__all__ = [
    "AGNOSTIC_CLASS",
    "Source",
    "Variant",
    "register_source",
    "dataset_names",
    "forget_loaded",
    "box_annotation",
    "with_image_sizes",
    "category_index",
]

# The one class of every `_agnostic_` dataset (and of the evaluator's agnostic tasks).
AGNOSTIC_CLASS = "lesion"


@dataclass(frozen=True)
class Variant:
    """
    A named way to read a source: `<source>_<name>_<split>` ("" = `<source>_<split>`).

    Attributes:
        name (str): the part of the dataset name after the source's.
        options (dict): keyword arguments of the source's `parse`.
        classes (tuple[str] or None): the classes, when they differ from the source's.
        folder (str or None): the folder under the datasets root, when it differs.
    """

    name: str = ""
    options: dict = field(default_factory=dict)
    classes: tuple = None
    folder: str = None


@dataclass(frozen=True)
class Source:
    """
    One row of the source table (`cxr_d2.data.datasets.builtin.SOURCES`).

    Attributes:
        name (str): the first part of its dataset names and its folder under the root.
        parse (callable): `parse(root, classes, log, **options) -> list[dict]`.
        classes (tuple[str]): the class names, fixed before any file is read.
        official_split (bool): the source publishes a split (`_official` names exist).
        generated (bool): its files are written on first use (the phantom): the folder need
            not exist beforehand.
        variants (tuple[Variant]): the ways it is read; the first is the default.
        evaluator_type (str): the evaluator of its datasets.
        phantom_layout (PhantomLayout or None): how `tools/make_phantom.py` writes phantoms
            in the source's on-disk layout (:mod:`cxr_d2.data.phantom.layouts`).
    """

    name: str
    parse: object
    classes: tuple
    official_split: bool = False
    generated: bool = False
    variants: tuple = (Variant(),)
    evaluator_type: str = "coco"
    phantom_layout: object = None


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
    A box that only partly leaves the image is clipped and reported. A `segmentation` in
    `extra` is checked likewise (:func:`~cxr_d2.data.masks.check_segmentation`): stored
    checked (polygons clipped, RLE compressed), or the annotation is skipped and counted.
    """
    if category_id is None:
        return None
    checked, problem = check_box(box, width, height)
    if problem:
        log.report(where, problem, None if checked else "annotation")
    if checked is None:
        return None
    if "segmentation" in extra:
        segm, problem = check_segmentation(extra["segmentation"], height, width)
        if problem:
            log.report(where, problem, None if segm else "annotation")
        if segm is None:
            return None
        extra["segmentation"] = segm
    return {
        "bbox": checked,
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category_id,
        "iscrowd": 0,
        **extra,
    }


def with_image_sizes(records, log):
    """
    The records whose image file exists, each with `height` and `width` (read from the
    image's header where they are None); every other one is reported and skipped. Each
    record's `where` (its place in the annotation files) is removed.
    """
    out = []
    for rec in records:
        where = rec.pop("where")
        if not os.path.isfile(rec["file_name"]):
            log.report(where, f"image {rec['file_name']} does not exist", "image")
            continue
        if rec["height"] is None or rec["width"] is None:
            try:
                rec["height"], rec["width"] = image_size(rec["file_name"])
            except DatasetError as e:
                log.report(where, str(e), "image")
                continue
        out.append(rec)
    return out


_PARSED = []  # every _ParsedSource, for forget_loaded()


class _ParsedSource:
    """
    One source read one way, parsed at most once per process: the three splits, the
    `_agnostic_` datasets and every later `DatasetCatalog.get` share the parse (each gets
    its own deep copy of the records).
    """

    def __init__(self, source, variant, root):
        self.source, self.variant, self.root = source, variant, root
        self.classes = tuple(variant.classes or source.classes)
        self._parsed = None  # (records, ProblemLog)
        _PARSED.append(self)

    def records(self, name):
        """All records (with `image_id`, their index) and the ProblemLog of dataset `name`."""
        if self._parsed is None:
            if not self.source.generated:
                require_dir(self.root, self.source.name)
            log = ProblemLog(name)
            parse = self.source.parse
            records = parse(self.root, list(self.classes), log, **self.variant.options)
            for i, r in enumerate(records):
                r["image_id"] = i
            self._parsed = (records, log)
            return copy.deepcopy(records), log
        records, first = self._parsed
        log = ProblemLog(name)
        log.replay(first)
        return copy.deepcopy(records), log

    def forget(self):
        self._parsed = None


def forget_loaded():
    """Drop every parsed source: the next `DatasetCatalog.get` reads the files again."""
    for parsed in _PARSED:
        parsed.forget()


def _load_split(parsed, split, mode, seed, agnostic, name):
    """The records of one dataset (the function `DatasetCatalog` calls)."""
    records, log = parsed.records(name)
    out = select_split(records, split, mode, seed, parsed.source.name)
    if not records:
        raise DatasetError(_why_empty(name, parsed, log))
    if not out:
        log.report(
            name,
            f"no image: the {split} split of the {len(records)} images of {parsed.root} is "
            "empty; add images or use another split",
        )
    if agnostic:
        for r in out:
            r["annotations"] = [dict(a, category_id=0) for a in r["annotations"]]
    log.summarize(len(out), sum(len(r["annotations"]) for r in out))
    return out


def _why_empty(name, parsed, log):
    """The one line saying why the source of dataset `name` has no image."""
    if log.skipped:
        skipped = ", ".join(f"{n} {what}(s)" for what, n in sorted(log.skipped.items()))
        return (
            f"dataset {name} has no image: everything in {parsed.root} was skipped ({skipped}; "
            f"{len(log.problems)} problem(s) reported, see tools/check_dataset.py {name})"
        )
    return f"dataset {name} has no image: the annotation files in {parsed.root} list none"


def _schemes(source):
    return {k: v for k, v in SPLIT_SCHEMES.items() if source.official_split or v[0] != "official"}


def dataset_names(source, prefix=""):
    """Every dataset name `register_source(source, ...)` registers, in registration order."""
    return [
        name
        for variant in source.variants
        for scheme in _schemes(source)
        for name, *_ in _names(source, variant, scheme, prefix)
    ]


def _names(source, variant, scheme, prefix):
    base = "_".join(p for p in (prefix + source.name, variant.name, scheme) if p)
    for split in SPLITS:
        yield f"{base}_{split}", split, False, f"{base}_{split}"
        yield f"{base}_agnostic_{split}", split, True, f"{base}_{split}"


def register_source(source, root, prefix="", replace=False):
    """
    Register every dataset of a source table row lazily, with its metadata eagerly:
    `<prefix><source>[_<variant>][_<scheme>][_agnostic]_{train,val,test}`.

    Args:
        source (Source): the table row.
        root (str): the datasets root (`$CXR_DATASETS`); the source's folder is under it.
        prefix (str): prepended to every name (e.g. to register a second copy in tests).
        replace (bool): first remove the names if they are registered.

    Returns:
        list[str]: the names registered.

    Metadata of each name: `thing_classes`, `evaluator_type`, `image_root`, `source`,
    `variant`, `split`, `split_mode`, `split_seed`, `agnostic` (bool) and, for an agnostic
    dataset, `specific_dataset` (the same images with their classes).
    """
    registered, existing = [], set(DatasetCatalog.list()) if replace else set()
    for variant in source.variants:
        folder = os.path.join(root, variant.folder or source.name)
        parsed = _ParsedSource(source, variant, folder)
        for scheme, (mode, seed) in _schemes(source).items():
            for name, split, agnostic, specific in _names(source, variant, scheme, prefix):
                if name in existing:
                    DatasetCatalog.remove(name)
                    MetadataCatalog.remove(name)
                loader = functools.partial(_load_split, parsed, split, mode, seed, agnostic, name)
                DatasetCatalog.register(name, loader)
                meta = MetadataCatalog.get(name)
                meta.set(
                    thing_classes=[AGNOSTIC_CLASS] if agnostic else list(parsed.classes),
                    evaluator_type=source.evaluator_type,
                    image_root=folder,
                    source=source.name,
                    variant=variant.name,
                    split=split,
                    split_mode=mode,
                    split_seed=seed,
                    agnostic=agnostic,
                )
                if agnostic:
                    meta.specific_dataset = specific
                registered.append(name)
    return registered
