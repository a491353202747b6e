"""The demo's promise: box AP50 >= 0.5 on cxr_phantom_test (slow: ~7 minutes on 2 cores)."""
import os
import subprocess
import sys

import pytest

DEMO = os.path.join("configs", "Phantom", "retinanet_R_18_FPN_cpu.yaml")


@pytest.mark.slow
def test_demo_reaches_ap50(tmp_path):
    cmd = [sys.executable, os.path.join("tools", "train_net.py"), "--config-file", DEMO,
           "OUTPUT_DIR", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    ap, ap50 = _bbox_ap((r.stdout + r.stderr).splitlines())
    assert ap50 >= 50.0, (ap, ap50)


def _bbox_ap(log_lines):
    """AP and AP50 from Detectron2's `copypaste:` lines (Task: bbox / names / values)."""
    values = [line.split("copypaste: ", 1)[1] for line in log_lines if "copypaste: " in line]
    task = values.index("Task: bbox")
    assert values[task + 1].startswith("AP,AP50")
    return tuple(float(v) for v in values[task + 2].split(",")[:2])
