"""projects/SipMask/train_net.py, the project's own entry point (as Detectron2's projects)."""
import importlib.util
import os

from detectron2.engine import default_argument_parser

from cxr_d2.engine import Trainer
from sipmask import SipMask


def test_train_net_builds_a_sipmask_model(repo_root, tmp_path):
    path = os.path.join(repo_root, "projects", "SipMask", "train_net.py")
    spec = importlib.util.spec_from_file_location("sipmask_train_net", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = os.path.join(repo_root, "projects", "SipMask", "configs", "sipmask_R_18_FPN_cpu.yaml")
    args = default_argument_parser().parse_args(
        ["--config-file", config, "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"]
    )
    cfg = tool.setup(args)
    assert cfg.MODEL.META_ARCHITECTURE == "SipMask" and cfg.MODEL.FCOS.NUM_CLASSES == 4
    model = Trainer.build_model(cfg)
    assert isinstance(model, SipMask)
    assert model.head.cls_logits.out_channels == 4
    assert os.path.isfile(tmp_path / "config.yaml")  # default_setup ran
