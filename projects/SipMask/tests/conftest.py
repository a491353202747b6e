"""The main suite's fixtures (tiny_phantom), `sipmask` importable before installation, and
`run_eval_only` for the overfit tests' --eval-only round trip."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
for path in (ROOT, os.path.join(ROOT, "projects", "SipMask")):
    if path not in sys.path:
        sys.path.insert(0, path)

from tests.conftest import repo_root, tiny_phantom  # noqa: E402,F401


def run_eval_only(module, register, args, env, timeout):
    """
    `tools/train_net.py --eval-only ARGS` in a subprocess that first calls `register()` of the
    test module `module` (its datasets); one thread. Returns stdout + stderr; asserts exit 0.
    """
    code = (
        f"import sys, runpy, {module} as t; t.{register}();"
        "sys.argv = ['train_net.py'] + sys.argv[1:];"
        f"runpy.run_path({os.path.join(ROOT, 'tools', 'train_net.py')!r}, run_name='__main__')"
    )
    path = [os.path.dirname(os.path.abspath(__file__)), os.path.join(ROOT, "projects", "SipMask"),
            ROOT]  # fmt: skip
    env = dict(env, PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, "--eval-only", *args], capture_output=True,
                       text=True, env=env, timeout=timeout, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout + r.stderr
