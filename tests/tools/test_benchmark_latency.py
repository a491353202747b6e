"""tools/benchmark_latency.py: several configs timed on the same inputs."""
import importlib.util
import json
import os

import pytest
import torch

from tests.modeling.tiny_dense import CONFIGS


def test_benchmark_latency_tool(repo_root, one_thread, tmp_path, capsys):
    """tools/benchmark_latency.py times several configs on the same inputs and names the machine."""
    path = os.path.join(repo_root, "tools", "benchmark_latency.py")
    spec = importlib.util.spec_from_file_location("benchmark_latency", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "latency.json"
    args = ["--config-file", CONFIGS["ssd"], CONFIGS["yolov3"], "--device", "cpu", "--images", "2"]
    args += ["--warmup", "1", "--iters", "3", "--json", str(out)]
    args += ["--opts", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"]
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "| median latency (ms) |" in printed
    result = json.loads(out.read_text())
    assert [r["config"] for r in result["rows"]] == [CONFIGS["ssd"], CONFIGS["yolov3"]]
    assert all(r["input"] == "128x128" and len(r["times_ms"]) == 3 for r in result["rows"])
    assert all(r["median_ms"] > 0 for r in result["rows"])
    first, second = result["rows"]
    assert first["ratio_to_first"] == 1.0
    assert second["ratio_to_first"] == pytest.approx(second["median_ms"] / first["median_ms"])
    amp = tmp_path / "amp.json"
    args = ["--config-file", CONFIGS["yolov3"], "--device", "cpu", "--images", "1", "--warmup", "0",
            "--iters", "1", "--amp", "bf16", "--json", str(amp), "--opts", "INPUT.MIN_SIZE_TEST",
            "96", "INPUT.MAX_SIZE_TEST", "96"]  # fmt: skip
    assert tool.main(args) == 0
    assert json.loads(amp.read_text())["amp"] == "bf16"
    assert ", autocast bf16" in capsys.readouterr().out
    with pytest.raises(tool.CXRError, match="--weights has 1 entries for 2 configs"):
        tool.main(["--config-file", CONFIGS["ssd"], CONFIGS["yolov3"], "--weights", "a.pth"])


def test_perturb_is_seeded_and_reaches_zero_initialised_layers(repo_root, one_thread):
    """--perturb adds the same noise in every build; zero-initialised weights become non-zero."""
    path = os.path.join(repo_root, "tools", "benchmark_latency.py")
    spec = importlib.util.spec_from_file_location("benchmark_latency", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    sipmask = os.path.join("projects", "SipMask", "configs", "sipmask_R_18_FPN_cpu.yaml")
    plain = tool.build(sipmask, "", [], "cpu", seed=0)[1]
    a, b = (tool.build(sipmask, "", [], "cpu", seed=0, perturb=0.01)[1] for _ in range(2))
    assert not plain.head.feature_align.offset.weight.any()
    assert a.head.feature_align.offset.weight.abs().max() > 0
    for (name, x), y, z in zip(a.state_dict().items(), b.state_dict().values(),
                               plain.state_dict().values()):  # fmt: skip
        assert torch.equal(x, y), name
    assert not torch.equal(a.head.cls_logits.weight, plain.head.cls_logits.weight)


@pytest.mark.slow
def test_seeded_weights_and_tracking_cost(repo_root, one_thread, tmp_path, capsys):
    """Random weights are seeded (the same detections in two runs), detections per image are
    reported, and a SipMask-VIS config is also timed tracking its images as one sequence."""
    path = os.path.join(repo_root, "tools", "benchmark_latency.py")
    spec = importlib.util.spec_from_file_location("benchmark_latency", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    vis = os.path.join("projects", "SipMask", "configs", "vis", "sipmask_vis_R_18_FPN_cpu.yaml")
    rows = []
    for k in range(2):
        out = tmp_path / f"l{k}.json"
        args = ["--config-file", vis, "--device", "cpu", "--images", "2", "--warmup", "0",
                "--iters", "2", "--json", str(out), "--opts", "INPUT.MIN_SIZE_TEST", "128",
                "INPUT.MAX_SIZE_TEST", "128", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]
        assert tool.main(args) == 0
        rows.append(json.loads(out.read_text())["rows"][0])
    printed = capsys.readouterr().out
    assert "tracking 2 frames as one sequence" in printed and "| detections/image |" in printed
    assert rows[0]["detections_per_image"] == rows[1]["detections_per_image"] > 0
    assert rows[0]["tracking_ms"] > 0 and rows[0]["image_path_ms"] > 0
