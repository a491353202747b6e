"""tools/analyze_model.py on tiny R-18 models of the tiny phantom set (128 px)."""
import contextlib
import io
import re

import fvcore.nn
import pytest
import torch
from detectron2.export import TracingAdapter

from cxr_d2.engine import Trainer, analysis, check_config
from tests.helpers import TINY, TINY_OPTS, base_config, cpu_config


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = analysis.main(argv)
    return rc, out.getvalue(), err.getvalue()


def _tiny_cfg(family, weights="", output_dir="."):
    """The tool's config, built independently (check_config fills NUM_CLASSES)."""
    cfg = base_config(cpu_config(family))
    cfg.merge_from_list(TINY_OPTS + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(output_dir)])
    check_config(cfg)
    return cfg


def _seeded_weights(family, path):
    """A checkpoint of the freshly built tiny model (seeded), as the tool's MODEL.WEIGHTS."""
    torch.manual_seed(0)
    model = Trainer.build_model(_tiny_cfg(family, output_dir=path.parent))
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("family", ["retinanet"])
def test_parameter_count_is_sum_of_numel(tiny_phantom, tmp_path, family):
    weights = _seeded_weights(family, tmp_path / "w.pth")
    rc, out, err = _run(["--config-file", cpu_config(family), "--tasks", "parameter",
                         "structure"] + TINY_OPTS + ["MODEL.WEIGHTS", weights])
    assert rc == 0, err[-2000:]
    model = Trainer.build_model(_tiny_cfg(family, output_dir=tmp_path))
    expected = sum(p.numel() for p in model.parameters())
    assert int(re.search(r"Total parameters: (\d+)", out).group(1)) == expected
    assert "Parameter count:" in out and "Model structure:" in out
    assert type(model).__name__ in out


@pytest.mark.parametrize("family", ["faster_rcnn"])
def test_flops_equal_fvcore_on_the_same_model_and_input(tiny_phantom, tmp_path, family):
    weights = _seeded_weights(family, tmp_path / "w.pth")
    rc, out, err = _run(["--config-file", cpu_config(family), "--tasks", "flop",
                         "--num-inputs", "1"] + TINY_OPTS + ["MODEL.WEIGHTS", weights])
    assert rc == 0, err[-2000:]
    reported = int(re.search(r"Total flops of input 0: (\d+)", out).group(1))

    cfg = _tiny_cfg(family, weights, tmp_path)
    model = Trainer.build_model(cfg)
    model.load_state_dict(torch.load(weights)["model"])
    model.eval()
    batch = next(iter(Trainer.build_test_loader(cfg, f"{TINY}_test")))
    assert batch[0]["image"].shape[-2:] == (128, 128)
    wrapper = TracingAdapter(model, batch, allow_non_tensor=True)
    with torch.no_grad():
        expected = fvcore.nn.FlopCountAnalysis(wrapper, wrapper.flattened_inputs).total()
    assert expected > 0
    assert reported == expected


def test_flop_without_test_dataset_is_one_line(tiny_phantom):
    rc, out, err = _run(["--config-file", cpu_config("retinanet"), "--tasks", "flop"]
                        + TINY_OPTS + ["DATASETS.TEST", "()"])
    assert rc == 1
    assert err.strip().startswith("error: DATASETS.TEST is empty")
    assert len(err.strip().splitlines()) == 1


FAMILIES = ["faster_rcnn", "mask_rcnn", "retinanet", "fcos", "solov2", "blendmask"]
OTHER_CONFIGS = {"ssd": "configs/Phantom/ssd_VGG16_cpu.yaml",
                 "yolov3": "configs/Phantom/yolov3_DarkNet53_cpu.yaml",
                 "sipmask": "projects/SipMask/configs/sipmask_R_18_FPN_cpu.yaml"}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES + list(OTHER_CONFIGS))
def test_every_family_counts_flops_and_activations(tiny_phantom, name):
    config = OTHER_CONFIGS.get(name) or cpu_config(name)
    rc, out, err = _run(["--config-file", config, "--num-inputs", "2", "--tasks", "flop",
                         "activation", "parameter"] + TINY_OPTS)
    assert rc == 0, err[-2000:]
    assert int(re.search(r"Total flops of input 0: (\d+)", out).group(1)) > 0
    activations = float(re.search(r"Total \(million\) activations over 2 inputs: ([\d.]+)",
                                  out).group(1))
    assert activations > 0
    assert int(re.search(r"Total parameters: (\d+)", out).group(1)) > 0


def test_tasks_then_overrides_split_and_unknown_task_refused():
    parser = analysis.analyze_model_parser()
    args = analysis._split_tasks(parser, parser.parse_args(
        ["--config-file", "c.yaml", "--tasks", "flop", "parameter", "MODEL.WEIGHTS", "w.pth"]))
    assert args.tasks == ["flop", "parameter"] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        analysis.main(["--config-file", "c.yaml", "--tasks", "flops"])
