"""SSD's augmentations as Detectron2 Augmentations, and the mapper that feeds them boxes."""

import numpy as np
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, NoOpTransform, PadTransform

from cxr_d2.config import add_cxr_config
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.data.transforms import (
    MinIoURandomCrop,
    RandomExpand,
    RandomPhotometricDistort,
    SSDDatasetMapper,
    build_train_mapper,
)

from tests.helpers import TINY


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_expand_moves_boxes_with_the_image():
    np.random.seed(0)
    image = np.full((50, 40, 3), 200, np.uint8)
    aug = RandomExpand(max_ratio=3.0, prob=1.0, fill=128.0)
    inp = T.AugInput(image, boxes=np.array([[10.0, 5.0, 20.0, 25.0]]))
    tf = aug(inp)
    assert isinstance(tf, PadTransform)
    out, box = inp.image, inp.boxes[0]
    assert out.shape[0] >= 50 and out.shape[1] >= 40
    x0, y0 = tf.x0, tf.y0
    assert box.tolist() == [10.0 + x0, 5.0 + y0, 20.0 + x0, 25.0 + y0]
    assert (out[y0 : y0 + 50, x0 : x0 + 40] == 200).all() and (
        out == 128
    ).sum() == out.size - 50 * 40 * 3


def test_min_iou_crop_meets_its_constraint():
    boxes = np.array([[20.0, 20.0, 60.0, 60.0], [70.0, 10.0, 90.0, 30.0]])
    image = np.zeros((100, 100, 3), np.uint8)
    aug = MinIoURandomCrop(min_ious=(0.5,), min_scale=0.3)
    crops = 0
    for seed in range(40):
        np.random.seed(seed)
        tf = aug.get_transform(image, boxes)
        if isinstance(tf, CropTransform):
            crops += 1
            crop = [tf.x0, tf.y0, tf.x0 + tf.w, tf.y0 + tf.h]
            assert max(_iou(crop, b) for b in boxes) >= 0.5
            assert 0.5 <= tf.h / tf.w <= 2 and tf.w >= 30 - 1 and tf.h >= 30 - 1
        else:
            assert isinstance(tf, NoOpTransform)
    assert crops > 5  # about half the draws choose the 0.5 mode rather than "no crop"


def test_photometric_distort_keeps_shape_dtype_and_gray_stays_gray():
    np.random.seed(1)
    image = np.repeat(np.arange(100, dtype=np.uint8).reshape(10, 10, 1), 3, axis=2)
    aug = RandomPhotometricDistort(prob=1.0)
    for _ in range(5):
        inp = T.AugInput(image.copy(), boxes=np.array([[1.0, 1.0, 5.0, 5.0]]))
        aug(inp)
        assert inp.image.shape == image.shape and inp.image.dtype == np.uint8
        assert inp.boxes.tolist() == [[1.0, 1.0, 5.0, 5.0]]
        # a grayscale film has no saturation or hue to change: channels stay equal (+-1)
        assert np.abs(inp.image.astype(int) - inp.image[:, :, :1].astype(int)).max() <= 1


def test_ssd_mapper_outputs_fixed_size_with_boxes_inside(tiny_phantom):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file("configs/Base-SSD.yaml")
    cfg.INPUT.SSD_AUG.SIZE = 96
    mapper = build_train_mapper(cfg)
    assert isinstance(mapper, SSDDatasetMapper)
    records = [r for r in DatasetCatalog.get(f"{TINY}_train") if r["annotations"]][:4]
    np.random.seed(0)
    kept = 0
    for _ in range(3):
        for r in records:
            out = mapper(r)
            assert tuple(out["image"].shape) == (3, 96, 96)
            boxes = out["instances"].gt_boxes.tensor
            assert (boxes >= 0).all() and (boxes <= 96).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            kept += len(boxes)
    assert kept > 0
    cfg.INPUT.SSD_AUG.ENABLED = False
    mapper = build_train_mapper(cfg)
    assert type(mapper) is CXRDatasetMapper


def test_ssd_mapper_at_test_time_is_the_default_resize(tiny_phantom):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file("configs/Base-SSD.yaml")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 64
    mapper = SSDDatasetMapper(cfg, is_train=False)
    out = mapper(DatasetCatalog.get(f"{TINY}_test")[0])
    assert tuple(out["image"].shape) == (3, 64, 64) and "annotations" not in out


def test_a_few_iterations_with_ssd_augmentation(tiny_phantom, one_thread, tmp_path):
    """The Trainer with a `build_train_loader` that uses `build_train_mapper`."""
    from detectron2.data import build_detection_train_loader

    from cxr_d2.engine import Trainer, check_config

    from tests.helpers import TINY_OPTS
    from tests.modeling.tiny_dense import TINY_MODEL

    class SSDTrainer(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):
            cls.mapper = build_train_mapper(cfg)
            return build_detection_train_loader(cfg, mapper=cls.mapper)

    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file("configs/Phantom/ssd_VGG16_cpu.yaml")
    cfg.merge_from_list(
        TINY_OPTS
        + TINY_MODEL["ssd"]
        + ["INPUT.SSD_AUG.ENABLED", "True", "INPUT.SSD_AUG.SIZE", "128"]
    )
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SOLVER.MAX_ITER = 2
    check_config(cfg)
    cfg.freeze()
    trainer = SSDTrainer(cfg)
    assert isinstance(SSDTrainer.mapper, SSDDatasetMapper)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = {k: v.latest() for k, v in trainer.storage.histories().items() if k.startswith("loss")}
    assert set(losses) >= {"loss_cls", "loss_box_reg"} and all(v == v for v in losses.values())
