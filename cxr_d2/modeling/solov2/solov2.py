"""SOLOv2 (Wang et al., NeurIPS 2020) as a Detectron2 meta-architecture."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import BitMasks, PolygonMasks
from detectron2.utils.events import get_event_storage

from ...config.adelaidet import check_adelaidet_config
from ...errors import ConfigError
from ..checks import check_in_features
from .head import SOLOv2InstanceHead, resample_to_strides
from .inference import point_nms, solov2_inference_single
from .loss import solov2_losses
from .mask_branch import SOLOv2MaskBranch
from .targets import solov2_targets

__all__ = ["SOLOv2"]


@META_ARCH_REGISTRY.register()
class SOLOv2(DenseDetector):
    """
    Backbone + FPN -> instance head (`self.head`) (category branch: K scores per grid cell;
    kernel branch: one E-long kernel per grid cell) and mask feature branch (E channels at 1/4
    scale). A cell's mask is its kernel convolved with the mask features (dynamic convolution).
    Training: Dice loss on the masks of positive cells, focal loss on the grids. Inference:
    Matrix NMS, and boxes derived from the masks. Reuses DenseDetector's normalisation buffers,
    `device` and `preprocess_image` (padding to the backbone's size divisibility); its own
    `forward`, since the masks come out at the original size and need no `detector_postprocess`.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        instance_head: SOLOv2InstanceHead,
        mask_branch: SOLOv2MaskBranch,
        instance_in_features: List[str],
        instance_strides: List[int],
        scale_ranges,
        sigma: float,
        mask_in_features: List[str],
        num_classes: int,
        pixel_mean,
        pixel_std,
        dice_stride: int = 4,
        loss_params: Dict = None,
        inference_params: Dict = None,
        freeze_backbone: bool = False,
    ):
        """
        Args:
            backbone: returns the features named in the two `*_in_features` lists.
            instance_head (SOLOv2InstanceHead), mask_branch (SOLOv2MaskBranch).
            instance_in_features, instance_strides, scale_ranges: per grid level.
            sigma (float): centre-region scale of the targets.
            mask_in_features (list[str]): features of the mask branch, finest first.
            num_classes (int): K.
            pixel_mean, pixel_std (list[float]): input normalisation.
            dice_stride (int): stride of the Dice loss's masks (divides the mask features').
            loss_params (dict): keyword arguments of `solov2_losses`.
            inference_params (dict): keyword arguments of `solov2_inference_single`.
            freeze_backbone (bool): no gradient to the backbone's parameters.
        """
        super().__init__(
            backbone, instance_head, instance_in_features, pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )  # fmt: skip
        self.mask_branch = mask_branch
        self.instance_strides = list(instance_strides)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self.mask_in_features = list(mask_in_features)
        self.num_classes = num_classes
        self.dice_stride = dice_stride
        self.loss_params = dict(loss_params or {})
        self.inference_params = dict(inference_params or {})
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad = False

    @classmethod
    def from_config(cls, cfg):
        _check_solov2_config(cfg)
        s = cfg.MODEL.SOLOV2
        backbone = build_backbone(cfg)
        _check_features(s, backbone)
        return {
            "backbone": backbone,
            "instance_head": SOLOv2InstanceHead(cfg),
            "mask_branch": SOLOv2MaskBranch(cfg),
            "instance_in_features": s.INSTANCE_IN_FEATURES,
            "instance_strides": s.FPN_INSTANCE_STRIDES,
            "scale_ranges": s.FPN_SCALE_RANGES,
            "sigma": s.SIGMA,
            "mask_in_features": s.MASK_IN_FEATURES,
            "num_classes": s.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "dice_stride": s.LOSS.DICE_STRIDE,
            "loss_params": {
                "focal_alpha": s.LOSS.FOCAL_ALPHA,
                "focal_gamma": s.LOSS.FOCAL_GAMMA,
                "focal_weight": s.LOSS.FOCAL_WEIGHT,
                "dice_weight": s.LOSS.DICE_WEIGHT,
            },
            "inference_params": {
                "score_thr": s.SCORE_THR,
                "mask_thr": s.MASK_THR,
                "nms_pre": s.NMS_PRE,
                "update_thr": s.UPDATE_THR,
                "max_per_img": s.MAX_PER_IMG,
                "nms_kernel": s.NMS_KERNEL,
                "nms_sigma": float(s.NMS_SIGMA),
                "min_mask_area": s.MIN_MASK_AREA,
                "mask_upsample": s.MASK_UPSAMPLE,
            },
            "freeze_backbone": s.FREEZE,
        }

    @property
    def num_grids(self):
        return self.head.num_grids

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """
        Args:
            batched_inputs: Detectron2's list of dicts (`image` (C, H, W); `instances` with
                gt_boxes, gt_classes, gt_masks when training; optional `height`/`width`).

        Returns:
            dict of losses ("loss_ins", "loss_cate") when training, else a list of
            {"instances": Instances} with pred_masks (bool, original image size), scores,
            pred_classes and pred_boxes (tight boxes of the masks, XYXY_ABS).
        """
        images = self.preprocess_image(batched_inputs)
        padded = tuple(images.tensor.shape[-2:])
        features = self.backbone(images.tensor)
        ins_feats = resample_to_strides(
            [features[f] for f in self.head_in_features], self.instance_strides, padded
        )
        cate_preds, kernel_preds = self.head(ins_feats)
        mask_features = self.mask_branch([features[f] for f in self.mask_in_features])
        if self.training:
            gt_instances = [self._gt_instances(x) for x in batched_inputs]
            return self.losses(cate_preds, kernel_preds, mask_features, gt_instances, padded)
        return self.inference(cate_preds, kernel_preds, mask_features, images, batched_inputs)

    def _gt_instances(self, inputs):
        if "instances" not in inputs:
            raise ValueError("SOLOv2 training needs 'instances' in every input dict")
        inst = inputs["instances"].to(self.device)
        if not inst.has("gt_masks") and len(inst) == 0:  # a film without findings
            inst.gt_masks = BitMasks(
                torch.zeros((0, *inst.image_size), dtype=torch.bool, device=self.device)
            )
        if not inst.has("gt_masks"):
            raise ValueError(
                "SOLOv2 trains on instance masks but the inputs have none; set MODEL.MASK_ON True "
                "and use a dataset with masks"
            )
        if isinstance(inst.gt_masks, PolygonMasks):
            h, w = inst.image_size
            inst.gt_masks = BitMasks.from_polygon_masks(inst.gt_masks, h, w).to(self.device)
        return inst

    def losses(self, cate_preds, kernel_preds, mask_features, gt_instances, padded):
        """Targets (`solov2_targets`) and `solov2_losses`; returns the loss dict."""
        labels, assigned, gt_masks = solov2_targets(
            gt_instances,
            padded,
            self.dice_stride,
            self.num_grids,
            self.scale_ranges,
            self.sigma,
            self.num_classes,
        )
        num_pos = sum(int((a >= 0).sum()) for a in assigned)
        get_event_storage().put_scalar("solov2/num_pos_per_image", num_pos / len(gt_instances))
        return solov2_losses(
            cate_preds,
            kernel_preds,
            mask_features,
            labels,
            assigned,
            gt_masks,
            self.num_classes,
            **self.loss_params,
        )

    def inference(self, cate_preds, kernel_preds, mask_features, images, batched_inputs):
        """Per image `solov2_inference_single`; masks and boxes at the original size."""
        n, k = mask_features.shape[0], self.num_classes
        probs = [point_nms(p.sigmoid()).permute(0, 2, 3, 1).reshape(n, -1, k) for p in cate_preds]
        cate = cat(probs, dim=1)  # (N, R, K), R = sum of S_i^2, row-major per level
        kernels = cat([x.permute(0, 2, 3, 1).reshape(n, -1, x.shape[1]) for x in kernel_preds], 1)
        grids = zip(self.num_grids, self.instance_strides)
        strides = cat([cate.new_full((g * g,), float(s)) for g, s in grids])  # (R,)
        padded = tuple(images.tensor.shape[-2:])
        results = []
        for i, (inputs, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            out_size = (inputs.get("height", size[0]), inputs.get("width", size[1]))
            result = solov2_inference_single(
                cate[i], kernels[i], strides, mask_features[i], padded, tuple(size), out_size,
                **self.inference_params,
            )  # fmt: skip
            results.append({"instances": result})
        return results


def _check_solov2_config(cfg):
    """One ConfigError naming the key for settings the model cannot work with."""
    check_adelaidet_config(cfg)
    s = cfg.MODEL.SOLOV2
    if s.NUM_CLASSES <= 0:
        raise ConfigError(
            f"MODEL.SOLOV2.NUM_CLASSES is {s.NUM_CLASSES}; set it, or leave it 0 and build the "
            "model after check_config() (tools/train_net.py does) to take it from the dataset"
        )
    n = len(s.INSTANCE_IN_FEATURES)
    for key in ("FPN_INSTANCE_STRIDES", "FPN_SCALE_RANGES", "NUM_GRIDS"):
        if len(s[key]) != n:
            raise ConfigError(
                f"MODEL.SOLOV2.{key} has {len(s[key])} entries but "
                f"MODEL.SOLOV2.INSTANCE_IN_FEATURES has {n}; give one per instance feature"
            )
    if s.NUM_KERNELS != s.NUM_MASKS:
        raise ConfigError(
            f"MODEL.SOLOV2.NUM_KERNELS ({s.NUM_KERNELS}) must equal MODEL.SOLOV2.NUM_MASKS "
            f"({s.NUM_MASKS}): the kernels are 1x1 convs over the mask features"
        )
    choices = {
        "NMS_TYPE": ("matrix",),
        "NMS_KERNEL": ("gaussian", "linear"),
        "TYPE_DCN": ("DCN", "DCNv2"),
        "MIN_MASK_AREA": ("cells", "pixels"),
        "MASK_UPSAMPLE": ("probs", "logits"),
    }
    for key, allowed in choices.items():
        if s[key] not in allowed:
            raise ConfigError(
                f"MODEL.SOLOV2.{key} is '{s[key]}'; use one of {', '.join(map(repr, allowed))}"
            )
    if s.LOSS.DICE_STRIDE not in (1, 2, 4):
        raise ConfigError(
            f"MODEL.SOLOV2.LOSS.DICE_STRIDE is {s.LOSS.DICE_STRIDE}; use 1, 2 or 4 (a divisor "
            "of the mask features' stride, 4)"
        )
    if not s.LOSS.FOCAL_USE_SIGMOID:
        raise ConfigError(
            "MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID False (softmax focal loss) is not implemented; "
            "set it True"
        )
    if not cfg.MODEL.MASK_ON:
        raise ConfigError(
            "MODEL.MASK_ON is False but SOLOv2 needs instance masks (the data mapper loads them "
            "only with MASK_ON); set MODEL.MASK_ON True"
        )


def _check_features(s, backbone):
    for key, channels_key in (
        ("INSTANCE_IN_FEATURES", "INSTANCE_IN_CHANNELS"),
        ("MASK_IN_FEATURES", "MASK_IN_CHANNELS"),
    ):
        shapes = check_in_features(f"MODEL.SOLOV2.{key}", s[key], backbone)
        channels = {shapes[f].channels for f in s[key]}
        if channels != {s[channels_key]}:
            raise ConfigError(
                f"MODEL.SOLOV2.{channels_key} is {s[channels_key]} but the features "
                f"{list(s[key])} have {sorted(channels)} channels; set it to "
                "MODEL.FPN.OUT_CHANNELS"
            )
    strides = [shapes[f].stride for f in s.MASK_IN_FEATURES]
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ConfigError(
            f"MODEL.SOLOV2.MASK_IN_FEATURES {list(s.MASK_IN_FEATURES)} have strides {strides}; "
            "the mask feature branch needs consecutive FPN levels (each twice the previous)"
        )
