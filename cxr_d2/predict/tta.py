"""
`--tta` and `--ensemble` of `tools/predict.py` and `tools/train_net.py --eval-only`: the
flags, and scoring a model with test-time augmentation as Detectron2's train_net does.
"""

import logging
import os
import re
from collections import OrderedDict

from ..errors import ConfigError
from ..modeling.tta import build_tta_model

__all__ = ["add_tta_arguments", "apply_tta_arguments", "test_with_tta"]

logger = logging.getLogger(__name__)

# A config override's key (MODEL.WEIGHTS, OUTPUT_DIR): where `--ensemble`'s members end when
# the tool's overrides follow them as positional arguments (train_net's `opts`).
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")

MEMBER_HELP = (
    "fuse several models' boxes by weighted boxes fusion: members CFG[@CKPT][:WEIGHT], the "
    "checkpoint CKPT (default: CFG's MODEL.WEIGHTS) and weight (default 1); TEST.ENSEMBLE.* "
    "set the fusion"
)


def add_tta_arguments(parser):
    """Add `--tta` and `--ensemble MEMBER ...` to an argparse parser; returns it."""
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation (sets TEST.AUG.ENABLED True; TEST.AUG.MIN_SIZES, "
        "MAX_SIZE, FLIP choose the augmented inputs)",
    )
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="MEMBER", help=MEMBER_HELP)
    return parser


def apply_tta_arguments(args, opts_attr="opts"):
    """
    After parsing: `--tta` becomes the override TEST.AUG.ENABLED True (so the run's config
    records it), and config overrides that followed the members of `--ensemble` (KEY VALUE
    pairs, KEY in capitals, not a file) go back to `args.<opts_attr>`. Returns `args`; a
    ConfigError for either flag without `--eval-only` where the parser has that flag.
    """
    if getattr(args, "eval_only", True) is False and (args.tta or args.ensemble):
        raise ConfigError("--tta and --ensemble score trained models: add --eval-only")
    opts = list(getattr(args, opts_attr) or [])
    members = list(args.ensemble or [])
    end = next((i for i, m in enumerate(members) if _is_config_key(m)), len(members))
    args.ensemble, opts = members[:end], members[end:] + opts
    if args.tta:
        opts += ["TEST.AUG.ENABLED", "True"]
    setattr(args, opts_attr, opts)
    return args


def _is_config_key(word):
    return bool(_CONFIG_KEY.match(word)) and not os.path.exists(word.partition("@")[0])


def test_with_tta(trainer, cfg, model):
    """
    Detectron2's train_net `test_with_TTA`: score `build_tta_model(cfg, model)` on
    DATASETS.TEST with the trainer's evaluators, writing to OUTPUT_DIR/inference_TTA/<dataset>/.

    Args:
        trainer: the Trainer class (its `test` and `build_evaluator`).

    Returns:
        OrderedDict: the results, each task suffixed "_TTA" ("bbox_TTA", ...).
    """
    logger.info("Running inference with test-time augmentation ...")
    evaluators = [
        trainer.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
        for name in cfg.DATASETS.TEST
    ]
    res = trainer.test(cfg, build_tta_model(cfg, model), evaluators)
    return OrderedDict((k + "_TTA", v) for k, v in res.items())
