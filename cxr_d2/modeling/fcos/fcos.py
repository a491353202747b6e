"""
FCOS from a yacs config: Detectron2's own `detectron2.modeling.meta_arch.fcos.FCOS` (target
assignment, centre sampling, centerness, focal and GIoU losses) with a `from_config` reading
AdelaiDet's MODEL.FCOS keys and AdelaiDet's inference rule, registered as META_ARCHITECTURE
"FCOS" and as AdelaiDet's "OneStageDetector" (with PROPOSAL_GENERATOR.NAME "FCOS").
"""
import torch
from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.modeling.meta_arch.fcos import FCOS as _D2FCOS

from ...config.adelaidet import check_adelaidet_config
from ...errors import ConfigError
from .head import FCOSHead
from .inference import fcos_detections

__all__ = ["FCOS", "OneStageDetector", "check_backbone_name", "fcos_config_kwargs"]

# AdelaiDet keys whose only supported value is Detectron2's behaviour (or the only one
# implemented here).
_FIXED_KEYS = {
    "LOC_LOSS_TYPE": "giou",
    "TOP_LEVELS": 2,
    "USE_DEFORMABLE": False,
    "YIELD_PROPOSAL": False,
    "YIELD_BOX_FEATURES": False,
    "BOX_QUALITY": "ctrness",
    "LOSS_WEIGHT_CLS": 1.0,
}
# Tower norms: get_norm names, plus AdelaiDet's "none".
_TOWER_NORMS = ("", "none", "GN", "BN", "SyncBN", "FrozenBN", "nnSyncBN", "naiveSyncBN", "LN")


def check_backbone_name(cfg):
    """A ConfigError naming MODEL.BACKBONE.NAME when no backbone of that name is registered
    (e.g. AdelaiDet's DLA, VoVNet, MobileNet and BiFPN backbones), or naming the AdelaiDet
    key that asks for something else not implemented (`check_adelaidet_config`)."""
    check_adelaidet_config(cfg)
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BACKBONE_REGISTRY:
        raise ConfigError(
            f"MODEL.BACKBONE.NAME is {name!r}, which cxr-d2 does not implement; use one of "
            f"{sorted(k for k, _ in BACKBONE_REGISTRY)}"
        )


def _check_fcos_config(cfg, backbone_shape, own_keys=()):
    f = cfg.MODEL.FCOS
    own = set(own_keys)
    if cfg.MODEL.BACKBONE.NAME == "build_fcos_resnet_fpn_backbone":
        own.add("TOP_LEVELS")  # that backbone builds TOP_LEVELS levels above P5 itself
    for key, value in _FIXED_KEYS.items():
        if key not in own and f[key] != value:
            raise ConfigError(
                f"MODEL.FCOS.{key} is {f[key]!r}; Detectron2's FCOS supports only {value!r}"
            )
    if f.NORM not in _TOWER_NORMS:
        raise ConfigError(f"MODEL.FCOS.NORM is {f.NORM!r}; use one of {list(_TOWER_NORMS)}")
    if f.LOSS_NORMALIZER_CLS not in ("fg", "moving_fg"):
        raise ConfigError(
            f"MODEL.FCOS.LOSS_NORMALIZER_CLS is {f.LOSS_NORMALIZER_CLS!r}; cxr-d2 implements "
            "'fg' and 'moving_fg'"
        )
    missing = [k for k in f.IN_FEATURES if k not in backbone_shape]
    if missing:
        raise ConfigError(
            f"MODEL.FCOS.IN_FEATURES names {missing}, which the backbone "
            f"{cfg.MODEL.BACKBONE.NAME} does not output (it has {sorted(backbone_shape)})"
        )
    strides = [backbone_shape[k].stride for k in f.IN_FEATURES]
    if list(f.FPN_STRIDES) != strides:
        raise ConfigError(
            f"MODEL.FCOS.FPN_STRIDES is {list(f.FPN_STRIDES)} but the backbone's strides of "
            f"{list(f.IN_FEATURES)} are {strides}; set FPN_STRIDES to {strides}"
        )
    sizes = [8 * s for s in strides[:-1]]
    if list(f.SIZES_OF_INTEREST) != sizes:
        raise ConfigError(
            f"MODEL.FCOS.SIZES_OF_INTEREST is {list(f.SIZES_OF_INTEREST)}; Detectron2's FCOS "
            f"assigns levels by 4x..8x their stride, i.e. {sizes} for these strides"
        )


def fcos_config_kwargs(cfg, backbone, own_keys=()):
    """
    The keyword arguments of Detectron2's FCOS (less `head`) read from MODEL.FCOS, after
    checking the keys against the backbone. Shared with the models built on FCOS.
    `own_keys`: MODEL.FCOS keys of `_FIXED_KEYS` that the calling model implements itself
    (e.g. BlendMask's inference reads THRESH_WITH_CTR), so any value of theirs is accepted.
    """
    _check_fcos_config(cfg, backbone.output_shape(), own_keys)
    f = cfg.MODEL.FCOS
    return {
        "backbone": backbone,
        "head_in_features": list(f.IN_FEATURES),
        "box2box_transform": Box2BoxTransformLinear(normalize_by_size=f.NORM_REG_TARGETS),
        "num_classes": f.NUM_CLASSES,
        "center_sampling_radius": f.POS_RADIUS if f.CENTER_SAMPLE else float("inf"),
        "focal_loss_alpha": f.LOSS_ALPHA,
        "focal_loss_gamma": f.LOSS_GAMMA,
        "test_score_thresh": f.INFERENCE_TH_TEST,
        "test_topk_candidates": f.PRE_NMS_TOPK_TEST,
        "test_nms_thresh": f.NMS_TH,
        "max_detections_per_image": f.POST_NMS_TOPK_TEST,
        "pixel_mean": cfg.MODEL.PIXEL_MEAN,
        "pixel_std": cfg.MODEL.PIXEL_STD,
        "thresh_with_ctr": f.THRESH_WITH_CTR,
        "clip_before_nms": f.CLIP_BEFORE_NMS,
        "loss_normalizer_cls": f.LOSS_NORMALIZER_CLS,
    }


@META_ARCH_REGISTRY.register()
class FCOS(_D2FCOS):
    """
    Detectron2's FCOS, buildable from a config (MODEL.META_ARCHITECTURE "FCOS", keys in
    MODEL.FCOS) and trainable on images without instances (normal films). The head is
    `FCOSHead` (AdelaiDet's tower options); inference is AdelaiDet's (:func:`fcos_detections`);
    training is Detectron2's, with AdelaiDet's loss normaliser.
    """

    @configurable
    def __init__(
        self,
        *,
        thresh_with_ctr=False,
        clip_before_nms=False,
        loss_normalizer_cls="fg",
        **kwargs,
    ):
        """
        Args:
            thresh_with_ctr: inference thresholds sigmoid(class) * sigmoid(centerness) (else
                sigmoid(class) alone).
            clip_before_nms: inference clips the boxes to the image before NMS (else only the
                final boxes are clipped, by `detector_postprocess`).
            loss_normalizer_cls: "fg": the losses are divided by this batch's positives
                (AdelaiDet); "moving_fg": by their moving average (Detectron2's).
            kwargs: arguments of :class:`detectron2.modeling.meta_arch.fcos.FCOS`.
        """
        super().__init__(**kwargs)
        self.thresh_with_ctr = thresh_with_ctr
        self.clip_before_nms = clip_before_nms
        self.loss_normalizer_cls = loss_normalizer_cls

    @classmethod
    def from_config(cls, cfg):
        check_backbone_name(cfg)
        backbone = build_backbone(cfg)
        kwargs = fcos_config_kwargs(cfg, backbone)
        shapes = backbone.output_shape()
        kwargs["head"] = FCOSHead(cfg, [shapes[k] for k in cfg.MODEL.FCOS.IN_FEATURES])
        return kwargs

    @torch.no_grad()
    def match_anchors(self, anchors, gt_instances):
        """Detectron2's matching; an image without instances gets -1 (background) everywhere
        (Detectron2's own fails on it)."""
        num_anchors = sum(len(a) for a in anchors)
        matched = [None] * len(gt_instances)
        nonempty = [i for i, x in enumerate(gt_instances) if len(x) > 0]
        if nonempty:
            some = super().match_anchors(anchors, [gt_instances[i] for i in nonempty])
            for i, m in zip(nonempty, some):
                matched[i] = m
        device = anchors[0].tensor.device
        return [
            m if m is not None else torch.full((num_anchors,), -1, dtype=torch.long, device=device)
            for m in matched
        ]

    @torch.no_grad()
    def label_anchors(self, anchors, gt_instances, matched_indices=None):
        """As Detectron2's, also for images without instances (gt boxes of zeros there);
        `matched_indices` from `match_anchors` when the caller already has them."""
        if matched_indices is None:
            matched_indices = self.match_anchors(anchors, gt_instances)
        labels, boxes = [], []
        for gt_index, gt in zip(matched_indices, gt_instances):
            if len(gt) == 0:
                labels.append(torch.full_like(gt_index, self.num_classes))
                boxes.append(type(gt.gt_boxes)(gt_index.new_zeros((len(gt_index), 4)).float()))
                continue
            label = gt.gt_classes[gt_index.clip(min=0)]
            label[gt_index < 0] = self.num_classes
            labels.append(label)
            boxes.append(gt.gt_boxes[gt_index.clip(min=0)])
        return labels, boxes

    def _ema_update(self, name, value, initial_value, momentum=0.9):
        """Detectron2's moving normaliser ("moving_fg"), or this batch's value ("fg")."""
        if name == "loss_normalizer" and self.loss_normalizer_cls == "fg":
            return value
        return super()._ema_update(name, value, initial_value, momentum)

    def forward_inference(self, images, features, predictions):
        """
        Args:
            predictions: per level logits (N, C, Hi, Wi), bbox_reg (N, 4, Hi, Wi) in strides,
                ctrness (N, 1, Hi, Wi).
        Returns:
            per image Instances (pred_boxes, scores, pred_classes) at input resolution, by
            AdelaiDet's rule (:func:`fcos_detections`).
        """
        logits, deltas, ctrness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        return [
            fcos_detections(
                anchors,
                [x[i] for x in logits],
                [x[i] for x in deltas],
                [x[i] for x in ctrness],
                image_size,
                **self.decode_options(),
            )
            for i, image_size in enumerate(images.image_sizes)
        ]

    def decode_options(self):
        """The keyword arguments of :func:`fcos_detections` from this model's settings."""
        return {
            "box2box_transform": self.box2box_transform,
            "score_thresh": self.test_score_thresh,
            "topk_candidates": self.test_topk_candidates,
            "nms_thresh": self.test_nms_thresh,
            "max_detections": self.max_detections_per_image,
            "thresh_with_ctr": self.thresh_with_ctr,
            "clip_before_nms": self.clip_before_nms,
        }


@META_ARCH_REGISTRY.register()
class OneStageDetector(FCOS):
    """
    AdelaiDet's META_ARCHITECTURE name for FCOS: its FCOS configs name "OneStageDetector" with
    MODEL.PROPOSAL_GENERATOR.NAME "FCOS". The model is :class:`FCOS` (its state-dict keys:
    convert AdelaiDet checkpoints with `tools/convert_weights.py --from adelaidet`).
    """

    @classmethod
    def from_config(cls, cfg):
        name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
        if name != "FCOS":
            raise ConfigError(
                f"MODEL.PROPOSAL_GENERATOR.NAME is {name!r} with META_ARCHITECTURE "
                "OneStageDetector; cxr-d2 implements AdelaiDet's OneStageDetector with 'FCOS' only"
            )
        return super().from_config(cfg)
