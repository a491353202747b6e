"""
FCOS from a yacs config: Detectron2's own `detectron2.modeling.meta_arch.fcos.FCOS` (target
assignment, centre sampling, centerness, focal and GIoU losses, inference) with a
`from_config` reading AdelaiDet's MODEL.FCOS keys, registered as META_ARCHITECTURE "FCOS".
"""
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.modeling.meta_arch.fcos import FCOS as _D2FCOS

from ...errors import ConfigError
from .head import FCOSHead

__all__ = ["FCOS", "fcos_config_kwargs"]

# AdelaiDet keys whose only supported value is Detectron2's behaviour.
_FIXED_KEYS = {
    "LOC_LOSS_TYPE": "giou",
    "TOP_LEVELS": 2,
    "THRESH_WITH_CTR": False,
    "USE_DEFORMABLE": False,
    "YIELD_PROPOSAL": False,
}


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
    }


@META_ARCH_REGISTRY.register()
class FCOS(_D2FCOS):
    """
    Detectron2's FCOS, buildable from a config (MODEL.META_ARCHITECTURE "FCOS", keys in
    MODEL.FCOS) and trainable on images without instances (normal films). The head is
    `FCOSHead` (AdelaiDet's tower options); everything else is Detectron2's.
    """

    @configurable
    def __init__(self, **kwargs):
        """Arguments as :class:`detectron2.modeling.meta_arch.fcos.FCOS`."""
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
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
