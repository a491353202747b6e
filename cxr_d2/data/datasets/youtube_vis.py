"""
Sequences in the YouTube-VIS json format, for video instance segmentation (SipMask-VIS):
fluoroscopy frames or a patient's serial radiographs, with one identity per tracked lesion.

The json (as YouTube-VIS 2019/2021 publish it)::

    videos:      [{id, file_names: [frame paths, relative to the image root], height, width,
                   length (optional; the number of file_names)}]
    annotations: [{id (the track identity), video_id, category_id, iscrowd,
                   segmentations: one per frame: polygons, RLE (compressed or not) or null}]
    categories:  [{id, name}]

Each sequence becomes one Detectron2 dict::

    {"video_id", "file_names": [paths], "height", "width", "length",
     "annotations": [[per-frame instances] for each frame]}

where a per-frame instance is `{"id": track id, "category_id": contiguous index, "bbox": the
tight box around the frame's mask (XYXY_ABS, x2 = last column + 1), "bbox_mode",
"segmentation": the checked polygons or RLE, "iscrowd"}`; a frame where the track's
segmentation is null holds no instance of it. Values are checked before use: a video or track
of the wrong shape, a track whose list of segmentations is not one per frame, an unusable or
empty mask, a frame path leaving the image root, are each one line naming the file and JSON
path, and what they hold is skipped and counted.

`register_youtube_vis(name, json_file, image_root)` registers a set as Detectron2's
`register_coco_instances` does; `youtube_vis_{2019,2021}_{train,val}` are registered under
$CXR_DATASETS/youtube_vis_<year>/ ({train,valid}.json, {train,valid}/JPEGImages/), and the
phantom sequences `cxr_phantom_seq_{train,val}` and `cxr_phantom_seq_tiny_{train,val}`
(:mod:`cxr_d2.data.phantom.sequences`) are drawn into $CXR_DATASETS/cxr_phantom_seq[_tiny]/
on first use.
"""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...errors import DatasetError
from ..checks import ProblemLog
from ..masks import check_segmentation, mask_to_box, segmentation_to_mask
from ..paths import DATASETS_ROOT, resolve_in_root
from ..phantom import PHANTOM_CLASSES
from ..phantom.sequences import generate_phantom_sequences
from .coco_json import MISSING, ShapeError, expect, expect_size, read_json

__all__ = [
    "PHANTOM_SEQUENCES",
    "load_youtube_vis_json",
    "register_youtube_vis",
    "register_phantom_sequences",
    "register_builtin_youtube_vis",
]

# name -> (json file, image root), relative to $CXR_DATASETS
BUILTIN = {
    f"youtube_vis_{year}_{split}": (
        f"youtube_vis_{year}/{part}.json",
        f"youtube_vis_{year}/{part}/JPEGImages",
    )
    for year in (2019, 2021)
    for split, part in (("train", "train"), ("val", "valid"))
}

# name -> generate_phantom_sequences' arguments (the folder is relative to $CXR_DATASETS);
# train and val are different patients (seeds).
PHANTOM_SEQUENCES = {
    "cxr_phantom_seq_train": dict(folder="cxr_phantom_seq/train", num_sequences=24, length=6,
                                  size=256, seed=0),
    "cxr_phantom_seq_val": dict(folder="cxr_phantom_seq/val", num_sequences=8, length=6,
                                size=256, seed=1),
    "cxr_phantom_seq_tiny_train": dict(folder="cxr_phantom_seq_tiny/train", num_sequences=6,
                                       length=4, size=128, seed=0),
    "cxr_phantom_seq_tiny_val": dict(folder="cxr_phantom_seq_tiny/val", num_sequences=3,
                                     length=4, size=128, seed=1),
}


def _lists(data, path):
    try:
        return [expect(data.get(k, MISSING), list, k) for k in ("videos", "annotations",
                                                                 "categories")]
    except ShapeError as e:
        raise DatasetError(f"{path}: {e}; not a YouTube-VIS json") from None


def _categories(categories, path):
    ids, names = [], []
    for k, cat in enumerate(categories):
        try:
            expect(cat, dict, f"categories[{k}]")
            ids.append(expect(cat.get("id", MISSING), (int, str), f"categories[{k}].id"))
            names.append(expect(cat.get("name", MISSING), str, f"categories[{k}].name"))
        except ShapeError as e:
            raise DatasetError(f"{path}: {e}") from None
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: categories: an id is listed twice")
    return {cid: k for k, cid in enumerate(ids)}, names


def _video_record(video, at, image_root):
    expect(video, dict, at)
    video_id = expect(video.get("id", MISSING), (int, str), f"{at}.id")
    names = expect(video.get("file_names", MISSING), list, f"{at}.file_names")
    for t, name in enumerate(names):
        expect(name, str, f"{at}.file_names[{t}]")
    height, width = expect_size(video, at)
    if height is None:
        raise ShapeError(f"{at}: height and width are missing")
    length = video.get("length", len(names))
    if length != len(names):
        raise ShapeError(f"{at}.length: {length!r}, but it lists {len(names)} file_names")
    return video_id, {
        "video_id": video_id,
        "file_names": [resolve_in_root(image_root, n) for n in names],
        "height": height,
        "width": width,
        "length": len(names),
        "annotations": [[] for _ in names],
    }


def _read_videos(videos, path, image_root, log):
    records = {}
    for k, video in enumerate(videos):
        at = f"videos[{k}]"
        try:
            video_id, record = _video_record(video, at, image_root)
        except (ShapeError, DatasetError) as e:
            log.report(f"{path} {at}", str(e), "video")
            continue
        if video_id in records:
            log.report(f"{path} {at}", f"video id {video_id!r} listed twice", "video")
            continue
        records[video_id] = record
    return records


def _frame_instance(segm, record, track, category, where, log):
    """The instance of one track in one frame, or None (reported) when its mask is unusable."""
    checked, problem = check_segmentation(segm, record["height"], record["width"])
    if checked is None:
        log.report(where, f"{problem}; this frame of the track is skipped", "frame mask")
        return None
    if problem:
        log.report(where, problem)
    try:
        box = mask_to_box(segmentation_to_mask(checked, record["height"], record["width"]), where)
    except DatasetError as e:
        log.report(where, f"{e}; this frame of the track is skipped", "frame mask")
        return None
    return {
        "id": track["id"],
        "category_id": category,
        "bbox": box,
        "bbox_mode": BoxMode.XYXY_ABS,
        "segmentation": checked,
        "iscrowd": int(track.get("iscrowd", 0) or 0),
    }


def _add_track(track, at, path, records, contiguous, log):
    expect(track, dict, at)
    expect(track.get("id", MISSING), (int, str), f"{at}.id")
    video_id = expect(track.get("video_id", MISSING), (int, str), f"{at}.video_id")
    category_id = expect(track.get("category_id", MISSING), (int, str), f"{at}.category_id")
    segms = expect(track.get("segmentations", MISSING), list, f"{at}.segmentations")
    if category_id not in contiguous:
        raise ShapeError(f"{at}.category_id: {category_id!r} is not an id of the categories")
    record = records.get(video_id)
    if record is None:
        raise ShapeError(f"{at}.video_id: {video_id!r} is not a video that was read")
    if len(segms) != record["length"]:
        raise ShapeError(
            f"{at}.segmentations: {len(segms)} entries for a video of {record['length']} frames "
            "(one per frame, null where the object is absent)"
        )
    for t, segm in enumerate(segms):
        if segm is None:
            continue
        where = f"{path} {at}.segmentations[{t}]"
        instance = _frame_instance(segm, record, track, contiguous[category_id], where, log)
        if instance is not None:
            record["annotations"][t].append(instance)


def load_youtube_vis_json(json_file, image_root, dataset_name=None):
    """
    Read a YouTube-VIS json (module docstring) into one dict per sequence.

    Args:
        json_file (str): the annotation file.
        image_root (str): the folder the videos' `file_names` are relative to.
        dataset_name (str or None): when given, its metadata gets `thing_classes` (the json's
            category names in file order) and `thing_dataset_id_to_contiguous_id`.

    Returns:
        list[dict]: the sequences, in the json's order.
    """
    log = ProblemLog(dataset_name or json_file)
    videos, tracks, categories = _lists(read_json(json_file, dict), json_file)
    contiguous, names = _categories(categories, json_file)
    records = _read_videos(videos, json_file, image_root, log)
    for k, track in enumerate(tracks):
        try:
            _add_track(track, f"annotations[{k}]", json_file, records, contiguous, log)
        except ShapeError as e:
            log.report(json_file, f"{e}; the track is skipped", "track")
    if dataset_name:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=names, thing_dataset_id_to_contiguous_id=contiguous
        )
    out = list(records.values())
    log.summarize(len(out), sum(len(f) for r in out for f in r["annotations"]))
    return out


def register_youtube_vis(name, json_file, image_root, metadata=None):
    """Register a YouTube-VIS set as `name` in Detectron2's catalogs (read when first used)."""
    DatasetCatalog.register(name, lambda: load_youtube_vis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="youtube_vis",
        **(metadata or {}),
    )


def _load_phantom_sequences(name, folder, **options):
    json_file, image_root = generate_phantom_sequences(folder, **options)
    return load_youtube_vis_json(json_file, image_root, name)


def register_phantom_sequences(root=DATASETS_ROOT, prefix="", replace=False):
    """Register the phantom sequence sets under `root` (drawn when first used)."""
    for name, spec in PHANTOM_SEQUENCES.items():
        options = {k: v for k, v in spec.items() if k != "folder"}
        folder = os.path.join(root, spec["folder"])
        name = prefix + name
        if replace and name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(
            name, lambda n=name, f=folder, o=options: _load_phantom_sequences(n, f, **o)
        )
        MetadataCatalog.get(name).set(
            json_file=os.path.join(folder, "sequences.json"),
            image_root=os.path.join(folder, "frames"),
            evaluator_type="youtube_vis",
            thing_classes=list(PHANTOM_CLASSES),
            thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(PHANTOM_CLASSES))},
        )


def register_builtin_youtube_vis(root=DATASETS_ROOT):
    """Register `youtube_vis_{2019,2021}_{train,val}` and the phantom sequences under `root`
    (reads no file)."""
    for name, (json_file, image_root) in BUILTIN.items():
        if name not in DatasetCatalog.list():
            register_youtube_vis(name, os.path.join(root, json_file), os.path.join(root, image_root))
    register_phantom_sequences(root)
