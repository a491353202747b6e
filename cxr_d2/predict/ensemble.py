"""
`--ensemble CFG[@CKPT][:WEIGHT] ...`: the members (config, checkpoint, weight), their models,
the ModelEnsemble fusing them, and scoring it as `tools/train_net.py --eval-only` does.

A member is its config file; `@CKPT` names its checkpoint (default: the config's
MODEL.WEIGHTS) and `:WEIGHT` its positive weight in the fusion (default 1), e.g.
`configs/Phantom/retinanet_R_18_FPN_cpu.yaml@output/retina/model_final.pth:2`.
"""

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from ..config import add_cxr_config
from ..data.mapper import CXRDatasetMapper
from ..engine.config_file import merge_config_file
from ..engine.projects import project_config_fns
from ..engine.setup import check_config
from ..errors import ConfigError, CXRError
from ..evaluation.naming import model_name
from ..modeling.ensemble import ModelEnsemble
from ..modeling.tta import build_tta_model
from .run import load_model, model_metadata

__all__ = ["Member", "parse_member", "member_config", "build_ensemble", "test_ensemble"]

logger = logging.getLogger(__name__)

SYNTAX = "CFG[@CKPT][:WEIGHT], e.g. configs/a.yaml@output/a/model_final.pth:2"


@dataclass
class Member:
    """One model of an ensemble: as written, its config file, checkpoint ("" = the config's
    MODEL.WEIGHTS) and weight."""

    spec: str
    config_file: str
    checkpoint: str
    weight: float


def parse_member(spec):
    """
    Parse `CFG[@CKPT][:WEIGHT]` into a Member; ConfigError (one line naming the member) for
    a malformed member or a config or checkpoint file that does not exist.
    """
    body, weight = spec, 1.0
    if ":" in spec:
        body, _, text = spec.rpartition(":")
        try:
            weight = float(text)
        except ValueError:
            raise ConfigError(
                f"--ensemble member {spec!r}: the weight after ':' ({text!r}) is "
                f"not a number; write {SYNTAX}"
            ) from None
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(
                f"--ensemble member {spec!r}: weight {text} must be a positive "
                f"number; write {SYNTAX}"
            )
    config_file, at, checkpoint = body.partition("@")
    if not config_file or (at and not checkpoint):
        raise ConfigError(f"--ensemble member {spec!r} is malformed; write {SYNTAX}")
    if not os.path.isfile(config_file):
        raise ConfigError(f"--ensemble member {spec!r}: config file {config_file} does not exist")
    if checkpoint and not os.path.isfile(checkpoint):
        raise ConfigError(f"--ensemble member {spec!r}: checkpoint {checkpoint} does not exist")
    return Member(spec, config_file, checkpoint, weight)


def member_config(member, base_cfg):
    """
    The frozen config of a member: its file (with the installed projects' keys), its
    checkpoint as MODEL.WEIGHTS, and from `base_cfg` (the run's) MODEL.DEVICE, OUTPUT_DIR
    and TEST.AUG (one augmentation for every member), checked as the tools' configs are.
    """
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_config in project_config_fns():
        add_config(cfg)
    try:
        merge_config_file(cfg, member.config_file)
        if member.checkpoint:
            cfg.MODEL.WEIGHTS = member.checkpoint
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError(f"its MODEL.WEIGHTS is empty; name the checkpoint: {SYNTAX}")
        cfg.MODEL.DEVICE = base_cfg.MODEL.DEVICE
        cfg.OUTPUT_DIR = base_cfg.OUTPUT_DIR
        cfg.TEST.AUG = base_cfg.TEST.AUG.clone()
        check_config(cfg)
    except CXRError as e:
        raise ConfigError(f"--ensemble member {member.spec!r}: {e}") from None
    cfg.freeze()
    return cfg


def _classes(cfg):
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    return list(MetadataCatalog.get(names[0]).get("thing_classes", [])) if names else None


def _check_classes(member, cfg, base_cfg):
    """A member must predict the classes of the run's datasets, in the same order."""
    metadata = model_metadata(base_cfg)
    expected = list(metadata.get("thing_classes", [])) if metadata else None
    found = _classes(cfg)
    if expected is not None and found is not None and found != expected:
        raise ConfigError(
            f"--ensemble member {member.spec!r} predicts the classes of "
            f"{(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))[0]} ({', '.join(found)}), "
            f"not those of the run's data ({', '.join(expected)}); fuse only models trained on "
            "the same class list"
        )


def _same_input(cfg, base_cfg):
    keys = ("FORMAT", "MIN_SIZE_TEST", "MAX_SIZE_TEST")
    return all(cfg.INPUT[k] == base_cfg.INPUT[k] for k in keys)


def build_ensemble(base_cfg, specs):
    """
    The ModelEnsemble of `--ensemble` members `specs` under the run's config `base_cfg`
    (TEST.ENSEMBLE.* for the fusion; with TEST.AUG.ENABLED every member gets test-time
    augmentation). A member whose INPUT.FORMAT/MIN_SIZE_TEST/MAX_SIZE_TEST differ from the
    run's reads each image again with its own test mapper.

    Returns:
        (ModelEnsemble, list[CfgNode]): the ensemble in eval mode and the members' configs.
    """
    if len(specs) < 2:
        raise ConfigError(f"--ensemble {' '.join(specs)}: give at least two members ({SYNTAX})")
    members = [parse_member(s) for s in specs]
    cfgs, models, mappers = [], [], []
    for member in members:
        cfg = member_config(member, base_cfg)
        _check_classes(member, cfg, base_cfg)
        model = load_model(cfg)
        if base_cfg.TEST.AUG.ENABLED:
            model = build_tta_model(cfg, model)
        cfgs.append(cfg)
        models.append(model)
        same = _same_input(cfg, base_cfg)
        mappers.append(None if same else CXRDatasetMapper(cfg, is_train=False))
        logger.info(f"ensemble member {member.spec}: {model_name(cfg)}, weight {member.weight}")
    ensemble = ModelEnsemble(base_cfg, models, [m.weight for m in members], mappers)
    return ensemble.eval(), cfgs


def test_ensemble(trainer, cfg, specs):
    """
    Score the ensemble of `specs` on DATASETS.TEST with the trainer's evaluators (boxes
    only), writing to OUTPUT_DIR/inference_ensemble[_TTA]/<dataset>/.

    Returns:
        OrderedDict: the results, each task suffixed "_ensemble" (or "_ensemble_TTA").
    """
    ensemble, cfgs = build_ensemble(cfg, specs)
    suffix = "_ensemble" + ("_TTA" if cfg.TEST.AUG.ENABLED else "")
    eval_cfg = cfg.clone()
    eval_cfg.defrost()
    eval_cfg.CXR.EVAL_TASKS = ["bbox"]
    eval_cfg.CXR.EVAL.MODEL_NAME = "WBF ensemble of " + " + ".join(model_name(c) for c in cfgs)
    eval_cfg.freeze()
    folder = os.path.join(cfg.OUTPUT_DIR, "inference" + suffix)
    evaluators = [
        trainer.build_evaluator(eval_cfg, name, os.path.join(folder, name))
        for name in cfg.DATASETS.TEST
    ]
    res = trainer.test(eval_cfg, ensemble, evaluators)
    return OrderedDict((k + suffix, v) for k, v in res.items())
