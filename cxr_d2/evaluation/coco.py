"""
The COCO evaluator of the paper's protocol: AP, AP50, AR with 300 detections, class-specific
and class-agnostic, boxes and masks, FROC, and `evaluation.json` on disk.

It extends Detectron2's COCOEvaluator (which gathers predictions across processes, converts
the dataset to COCO json and writes `coco_instances_results.json`) and replaces its scoring:
never through `detectron2._C`, with hotcoco, faster-coco-eval or pycocotools (same numbers).

The results are made columns once (`Detections`) and shared by every task: each backend
loads them once per task, class-agnostic by a change of the category column; FROC labels
them all at once; `instances_predictions.pth` stores them compactly (predictions_file.py).
"""

import copy
import datetime
import itertools
import logging
import math
import os
import pickle
from collections import OrderedDict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table
from tabulate import tabulate

from ..data.datasets.common import AGNOSTIC_CLASS
from ..data.splits import MANIFEST_FILE
from ..errors import ConfigError, CXRError, DatasetError
from .cocoeval import (
    AGNOSTIC_CATEGORY_ID,
    DEFAULT_MAX_DETS,
    agnostic_gt,
    backend_for,
    make_coco,
    resolve_backend,
    run_cocoeval,
    summarize,
)
from .detections import Detections
from .froc import FP_RATES, FrocGroundTruth, froc_of, plot_froc
from .ground_truth import check_ground_truth, image_sizes, load_ground_truth
from .naming import dataset_label, is_agnostic_dataset, model_name
from .output import make_folder, output_error, write_json, write_json_compact, write_output
from .predictions_file import save_predictions
from .validate import check_results

__all__ = ["CXRCOCOEvaluator", "build_coco_evaluator", "eval_tasks", "METRICS_FILE"]

logger = logging.getLogger(__name__)

# The file every evaluation writes into its output folder (read by tools/report.py).
METRICS_FILE = "evaluation.json"
_AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def eval_tasks(cfg):
    """The COCO task types a model is scored on: CXR.EVAL_TASKS, else bbox (+ segm)."""
    if cfg.CXR.EVAL_TASKS:
        return tuple(cfg.CXR.EVAL_TASKS)
    return ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)


def _percent(value):
    return float(value * 100) if value >= 0 else float("nan")


class CXRCOCOEvaluator(COCOEvaluator):
    """
    COCOEvaluator with the paper's metrics. For every task ("bbox", "segm") it reports AP,
    AP50, AP75, APs/m/l and per-class AP at `max_dets[-1]` detections per image, AR@m for
    each limit m and `AR` = AR at the largest (300); with `agnostic`, the same as
    "<task>_agnostic" with every category merged; with `froc`, "<task>_froc" (FROC mean and
    sensitivity at each rate). Metrics are percentages, as Detectron2's.

    A model that predicts nothing scores 0 (with a warning) where ground truth exists; a
    metric is NaN only where no ground truth defines it (e.g. APs without small lesions).
    Images without ground truth count their false positives.
    """

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        max_dets=DEFAULT_MAX_DETS,
        agnostic=True,
        backend="auto",
        froc=True,
        froc_iou_thresh=0.5,
        froc_fp_rates=FP_RATES,
        run_info=None,
    ):
        """
        Args:
            dataset_name, tasks, distributed, output_dir: as COCOEvaluator.
            max_dets (tuple[int]): detection limits per image (ascending, >= 3); AP and `AR`
                use the last.
            agnostic (bool): also score class-agnostically.
            backend (str): "auto", "pycocotools" or "faster_coco_eval".
            froc (bool): compute FROC and draw `froc_<task>.png` into `output_dir`.
            froc_iou_thresh (float): IoU of a FROC hit.
            froc_fp_rates (tuple[float]): false positives per image of the FROC summary.
            run_info (dict): written into evaluation.json: `model`, `config` (YAML),
                `train_datasets`, `output_dir`, `split_manifest` (the run's manifest file:
                named in evaluation.json when it exists).
        """
        self._max_dets = tuple(sorted(int(m) for m in max_dets))
        converted = _check_ground_truth_file(dataset_name, output_dir)
        try:
            super().__init__(
                dataset_name,
                tasks,
                distributed,
                output_dir,
                max_dets_per_image=self._max_dets[-1],
                use_fast_impl=False,
            )
        except OSError as e:  # converting the dataset to COCO json, into output_dir
            if converted:  # Detectron2 named the file it could not write as the json_file
                MetadataCatalog.get(dataset_name).__dict__.pop("json_file", None)
                if os.path.exists(converted + ".tmp"):
                    os.remove(converted + ".tmp")
            raise output_error(e.filename or converted, e) from None
        if converted:
            check_ground_truth(
                self._coco_api.dataset, f"dataset '{dataset_name}' (as COCO json {converted})"
            )
        self._image_sizes = image_sizes(self._coco_api.dataset)
        self._dataset_name = dataset_name
        self._agnostic = agnostic
        self._backend = resolve_backend(backend)
        self._froc_on = froc
        self._froc_iou = froc_iou_thresh
        self._froc_rates = tuple(froc_fp_rates)
        self._run_info = dict(run_info or {})
        self._froc = {}
        self._num_predictions = 0

    # ---- the Detectron2 hook: scoring of gathered predictions -----------------------------

    def _eval_predictions(self, predictions, img_ids=None, dets=None):
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        classes = list(self._metadata.get("thing_classes"))
        if dets is None or not self._columns_valid(dets, tasks, len(classes)):
            coco_results = check_results(
                coco_results,
                set(range(len(classes))),
                self._image_sizes,
                where=f"predictions of the model on dataset '{self._dataset_name}'",
                contiguous=True,
                class_names=classes,
                tasks=tasks,
            )
            dets = Detections.from_results(coco_results, masks="segm" in tasks)
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        if mapping:
            reverse = {v: k for k, v in mapping.items()}
            for r in coco_results:
                r["category_id"] = reverse[r["category_id"]]
            lookup = np.vectorize(reverse.__getitem__, otypes=[np.int64])
            dets.category_id = lookup(dets.category_id) if len(dets) else dets.category_id
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            write_json_compact(path, coco_results)  # checked: finite values
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        self._score(dets, tasks, img_ids)

    def _columns_valid(self, dets, tasks, num_classes):
        """The model's results as columns pass `check_results`' checks (vectorised)."""
        need_segm = "segm" in tasks
        if need_segm and dets.segmentation is None:
            return False
        return Detections.check_model_columns(
            dets, self._image_sizes, set(range(num_classes)), need_segm
        )

    def evaluate(self, img_ids=None):
        """COCOEvaluator.evaluate, with every file written atomically, then evaluation.json."""
        self._froc = {}
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        if not predictions:
            self._logger.warning("[COCOEvaluator] Did not receive valid predictions.")
            return {}
        # Columns of every image's results, made once: the predictions file and the scores.
        dets = Detections.from_model_results(
            [r for p in predictions if "instances" in p for r in p["instances"]]
        )
        if self._output_dir:
            path = os.path.join(self._output_dir, "instances_predictions.pth")
            save_predictions(path, predictions, dets)
        self._results = OrderedDict()
        if "proposals" in predictions[0]:
            self._eval_box_proposals(predictions)
        if "instances" in predictions[0]:
            self._eval_predictions(predictions, img_ids=img_ids, dets=dets)
        results = copy.deepcopy(self._results)
        if results and self._output_dir:
            self.write_metrics(results)
        return results

    def _eval_box_proposals(self, predictions):
        """COCOEvaluator's, with `box_proposals.pkl` written atomically."""
        output_dir, self._output_dir = self._output_dir, None
        try:
            super()._eval_box_proposals(predictions)
        finally:
            self._output_dir = output_dir
        if output_dir:
            proposal_data = {
                "boxes": [p["proposals"].proposal_boxes.tensor.numpy() for p in predictions],
                "objectness_logits": [
                    p["proposals"].objectness_logits.numpy() for p in predictions
                ],
                "ids": [p["image_id"] for p in predictions],
                "bbox_mode": BoxMode.XYXY_ABS.value,
            }
            path = os.path.join(output_dir, "box_proposals.pkl")
            write_output(path, lambda f: pickle.dump(proposal_data, f))

    # ---- scoring ----------------------------------------------------------------------------

    def evaluate_results(self, coco_results, where, tasks=None):
        """
        Score COCO results that use the dataset's own category ids (a
        `coco_instances_results.json`), check them first, write evaluation.json.

        Args:
            coco_results (list[dict]): COCO results.
            where (str): what they are, for error messages (e.g. the file name).
            tasks (tuple[str]): default: "segm" too when the results have masks.

        Returns:
            OrderedDict: task -> metric -> value, as `evaluate()`.
        """
        tasks = tasks or self._tasks or self._tasks_from_predictions(coco_results)
        coco_results = check_results(
            coco_results,
            set(self._coco_api.getCatIds()),
            self._image_sizes,
            where=where,
            class_names=[c["name"] for c in self._coco_api.dataset["categories"]],
            tasks=tasks,
        )
        self._results, self._froc = OrderedDict(), {}
        self._score(Detections.from_results(coco_results, masks="segm" in tasks), tasks)
        if self._output_dir:
            self.write_metrics(self._results)
        return self._results

    def _score(self, dets, tasks, img_ids=None):
        """Score Detections (the dataset's category ids) on every task, into self._results."""
        self._num_predictions = len(dets)
        if not len(dets):
            self._logger.warning(
                f"The model predicted nothing on the {len(self._coco_api.getImgIds())} images of "
                f"'{self._dataset_name}': every score is 0"
            )
        gt_dict = self._coco_api.dataset
        if img_ids is not None:  # evaluate(img_ids=...): score those images only
            gt_dict = _subset(gt_dict, img_ids)
            keep = set(img_ids)
            dets = dets.select(np.array([i in keep for i in dets.image_id.tolist()], dtype=bool))
        backend = backend_for(gt_dict, self._backend)
        self._logger.info(
            f"Evaluating predictions with {backend} (maxDets {list(self._max_dets)}) ..."
        )
        if "segm" in tasks:
            self._check_gt_masks()
        family = _TaskFamily(gt_dict, backend)
        for task in sorted(tasks):
            if task not in ("bbox", "segm"):
                self._logger.warning(f"Task '{task}' is not scored by CXRCOCOEvaluator: skipped")
                continue
            variants = [(task, False)] + ([(f"{task}_agnostic", True)] if self._agnostic else [])
            for name, agnostic in variants:
                self._score_task(name, task, family, dets, agnostic)

    def _check_gt_masks(self):
        for a in self._coco_api.dataset.get("annotations", []):
            if "segmentation" not in a:
                raise DatasetError(
                    f"dataset '{self._dataset_name}': annotation {a['id']} (image_id "
                    f"{a['image_id']}) has no 'segmentation', which a mask (segm) evaluation "
                    "needs; give the dataset masks, or score boxes only (CXR.EVAL_TASKS "
                    "('bbox',))"
                )

    def _score_task(self, name, iou_type, family, dets, agnostic):
        if agnostic:
            dets = dets.with_category(AGNOSTIC_CATEGORY_ID)
        coco_gt = family.coco_gt(agnostic)
        coco_eval = run_cocoeval(coco_gt, dets, iou_type, self._max_dets, family.backend)
        categories = family.gt_dict(agnostic)["categories"]
        class_names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
        metrics = self._derive_metrics(coco_eval, name, class_names)
        self._results[name] = metrics
        if self._froc_on:
            froc = froc_of(
                family.froc_gt(iou_type, agnostic), dets, iou_type, self._froc_iou, self._froc_rates
            )
            self._froc[name] = froc
            self._results[f"{name}_froc"] = _froc_metrics(froc)
            self._logger.info(
                f"FROC for {name} (sensitivity %, IoU >= {self._froc_iou:g}): \n"
                + create_small_table(self._results[f"{name}_froc"])
            )

    def _derive_metrics(self, coco_eval, name, class_names):
        """Percentages of the summary and per-class AP (at the largest detection limit)."""
        summary = summarize(coco_eval)
        metrics = {k: _percent(v) for k, v in summary.items()}
        precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
        per_class = []
        for k, cls in enumerate(class_names):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            per_class.append((cls, float(np.mean(p) * 100) if p.size else float("nan")))
        self._logger.info(
            f"Evaluation results for {name}: \n"
            + create_small_table({k: metrics[k] for k in _AP_KEYS})
            + "\n"
            + create_small_table({k: v for k, v in metrics.items() if k.startswith("AR")})
        )
        if len(class_names) > 1:
            table = tabulate(per_class, headers=["category", "AP"], tablefmt="pipe", floatfmt=".3f")
            self._logger.info(f"Per-category {name} AP: \n" + table)
        invalid = [k for k in ("AP", "AR") if math.isnan(metrics[k])]
        if invalid:
            self._logger.warning(
                f"{name}: {', '.join(invalid)} undefined: dataset '{self._dataset_name}' has no "
                "ground truth to score"
            )
        metrics.update({f"AP-{cls}": ap for cls, ap in per_class})
        return metrics

    # ---- evaluation.json ------------------------------------------------------------------------

    def write_metrics(self, results):
        """
        Write the FROC PNGs, then evaluation.json, into the output folder, each atomically;
        return the path of evaluation.json. OutputError names a file that cannot be written.
        """
        make_folder(self._output_dir)
        images = self._coco_api.dataset["images"]
        record = {
            "dataset": self._dataset_name,
            "dataset_label": dataset_label(self._dataset_name),
            "agnostic_dataset": is_agnostic_dataset(self._dataset_name),
            "model": self._run_info.get("model", ""),
            "train_datasets": self._run_info.get("train_datasets", []),
            "agnostic_training": self._run_info.get("agnostic_training", False),
            "units": "tasks: percent (0-100); froc: fractions (0-1)",
            "tasks": _nan_to_none(dict(results)),
            "froc": _nan_to_none(self._froc),
            "num_images": len(images),
            "num_predictions": self._num_predictions,
            "backend": self._backend,
            "max_dets": list(self._max_dets),
            "classes": list(self._metadata.get("thing_classes", [])),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run_output_dir": self._run_info.get("output_dir", ""),
            "config": self._run_info.get("config", ""),
            "split_manifest": _existing(self._run_info.get("split_manifest")),
        }
        for task, froc in self._froc.items():
            plot_froc(
                froc,
                os.path.join(self._output_dir, f"froc_{task}.png"),
                title=f"{self._dataset_name} {task}",
            )
        # Last: an evaluation.json on disk means every file of the evaluation is complete.
        path = os.path.join(self._output_dir, METRICS_FILE)
        write_json(path, record, indent=1, allow_nan=False)
        self._logger.info(f"Metrics written to {path}")
        return path


class _TaskFamily:
    """
    The ground truth of one scoring in every form its tasks need, each made once: the
    backend's COCO objects (class-specific and agnostic) and FROC's columns (per IoU type).
    pycocotools and faster-coco-eval write into their COCO objects: theirs are made per task.
    """

    def __init__(self, gt_dict, backend):
        self.backend = backend
        self._dicts = {False: gt_dict}
        self._cocos, self._froc = {}, {}

    def gt_dict(self, agnostic):
        if agnostic not in self._dicts:
            self._dicts[agnostic] = agnostic_gt(self._dicts[False], AGNOSTIC_CLASS)
        return self._dicts[agnostic]

    def coco_gt(self, agnostic):
        if self.backend != "hotcoco":
            return make_coco(self.gt_dict(agnostic), self.backend)
        if agnostic not in self._cocos:
            self._cocos[agnostic] = make_coco(self.gt_dict(agnostic), self.backend)
        return self._cocos[agnostic]

    def froc_gt(self, iou_type, agnostic):
        if iou_type not in self._froc:
            self._froc[iou_type] = FrocGroundTruth.from_dataset(self._dicts[False], iou_type)
        gt = self._froc[iou_type]
        return gt.agnostic(AGNOSTIC_CATEGORY_ID, AGNOSTIC_CLASS) if agnostic else gt


def _check_ground_truth_file(dataset_name, output_dir):
    """
    Check the dataset's COCO json (its `json_file`) before pycocotools reads it. Without one,
    Detectron2 converts the dataset to `<output_dir>/<name>_coco_format.json`, or reuses that
    file: an unreadable one is removed with a warning, to be converted again. Returns that
    path (None where the dataset has its json_file).
    """
    meta = MetadataCatalog.get(dataset_name)
    if hasattr(meta, "json_file"):
        check_ground_truth(load_ground_truth(meta.json_file), f"ground truth {meta.json_file}")
        return None
    if not output_dir:
        return None
    cache = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
    if os.path.isfile(cache):
        try:
            check_ground_truth(load_ground_truth(cache), f"ground truth {cache}")
        except CXRError as e:
            logger.warning(f"{e}: removed, to convert '{dataset_name}' again")
            try:
                os.remove(cache)
            except OSError as err:
                raise output_error(cache, err) from None
    return cache


def _existing(path):
    """`path` made absolute when it names a file, else None."""
    return os.path.abspath(path) if path and os.path.isfile(path) else None


def _subset(gt_dict, img_ids):
    keep = set(img_ids)
    out = dict(gt_dict)
    out["images"] = [im for im in gt_dict["images"] if im["id"] in keep]
    out["annotations"] = [a for a in gt_dict.get("annotations", []) if a["image_id"] in keep]
    return out


def _froc_metrics(froc):
    """Percentages: FROC (mean), S@<rate> overall, FROC-<class> (mean per class)."""
    overall = froc["classes"]["overall"]
    out = {"FROC": overall["mean"] * 100}
    for rate, value in zip(froc["fp_rates"], overall["sensitivity"]):
        out[f"S@{rate:g}"] = value * 100
    for name, entry in froc["classes"].items():
        if name != "overall":
            out[f"FROC-{name}"] = entry["mean"] * 100
    return out


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_coco_evaluator(cfg, dataset_name, output_dir):
    """The CXRCOCOEvaluator of a config (CXR.EVAL keys, see add_cxr_config)."""
    ev = cfg.CXR.EVAL
    limit = int(ev.MAX_DETS_PER_IMAGE)
    if limit <= 10:
        raise ConfigError(
            f"CXR.EVAL.MAX_DETS_PER_IMAGE is {limit}; it must be more than 10 (COCO reports AR@1 "
            "and AR@10 below it); the paper uses 300"
        )
    return CXRCOCOEvaluator(
        dataset_name,
        tasks=eval_tasks(cfg),
        distributed=True,
        output_dir=output_dir,
        max_dets=[m for m in (1, 10, 100) if m < limit] + [limit],
        agnostic=ev.AGNOSTIC,
        backend=ev.BACKEND,
        froc=ev.FROC.ENABLED,
        froc_iou_thresh=ev.FROC.IOU_THRESH,
        froc_fp_rates=tuple(ev.FROC.FP_RATES),
        run_info={
            "model": model_name(cfg),
            "config": cfg.dump(),
            "train_datasets": list(cfg.DATASETS.TRAIN),
            "agnostic_training": bool(cfg.DATASETS.TRAIN)
            and all(is_agnostic_dataset(n) for n in cfg.DATASETS.TRAIN),
            "output_dir": cfg.OUTPUT_DIR,
            "split_manifest": (
                os.path.join(cfg.OUTPUT_DIR, MANIFEST_FILE) if cfg.CXR.WRITE_MANIFEST else ""
            ),
        },
    )
