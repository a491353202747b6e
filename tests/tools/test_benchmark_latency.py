"""tools/benchmark_latency.py: several configs timed on the same inputs."""
import importlib.util
import json
import os

import pytest

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
    with pytest.raises(tool.CXRError, match="--weights has 1 entries for 2 configs"):
        tool.main(["--config-file", CONFIGS["ssd"], CONFIGS["yolov3"], "--weights", "a.pth"])
