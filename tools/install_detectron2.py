#!/usr/bin/env python
"""Make `import detectron2` work in this Python environment, without GitHub or a compiler.

1. If an importable Detectron2 is installed already (an official build with `detectron2._C`,
   or one this script installed with the same patches), it is used as it is and nothing
   changes. A pure-Python one without this patch set is reinstalled.
2. Otherwise PyPI's `pb1-detectron2==0.6` sdist (Python files identical to the detectron2 v0.6
   release, but without `layers/csrc`) is downloaded with pip, checked against its SHA-256,
   patched with the fixes in `PATCHES` (each must match exactly as often as stated, or the
   script stops), and installed as pure Python (no `detectron2._C`).
3. A fresh interpreter must then import each of `PROBE_MODULES` (engine, data transforms,
   evaluation, export, utils.analysis), each one first; the script exits non-zero if not.

Usage: python tools/install_detectron2.py [--force] [--wheel-dir DIR]
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2==0.6"
SDIST_FILE = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
PROBE_MODULES = (
    "detectron2.engine",
    "detectron2.data.transforms",
    "detectron2.evaluation",
    "detectron2.export",
    "detectron2.utils.analysis",
)

_NO_C_IMPORT = '''try:
    from detectron2 import _C
except ImportError:  # cxr-d2: pure-Python install, compiled ops unavailable

    class _MissingC:
        def __getattr__(self, name):
            raise RuntimeError(
                f"detectron2._C.{name} is a compiled op, and this detectron2 was installed as "
                "pure Python by cxr-d2 (tools/install_detectron2.py); use the torchvision op"
            )

    _C = _MissingC()
'''

# (file, regex, replacement, expected number of matches). Mirrors what upstream detectron2
# main changed for each problem; see the README's "What the setup changes in Detectron2".
PATCHES = [
    # 1. compiled ops imported at module level: import lazily, fail only when called.
    ("detectron2/layers/deform_conv.py", r"from detectron2 import _C\n", _NO_C_IMPORT, 1),
    ("detectron2/layers/rotated_boxes.py", r"from detectron2 import _C\n", _NO_C_IMPORT, 1),
    ("detectron2/layers/roi_align_rotated.py", r"from detectron2 import _C\n", _NO_C_IMPORT, 1),
    # fast_eval_api keeps its hard import; COCOEvaluator falls back to pycocotools' COCOeval.
    (
        "detectron2/evaluation/coco_evaluation.py",
        r"from detectron2\.evaluation\.fast_eval_api import COCOeval_opt\n",
        "try:\n    from detectron2.evaluation.fast_eval_api import COCOeval_opt\n"
        "except ImportError:  # cxr-d2: no detectron2._C, use the official COCOeval\n"
        "    COCOeval_opt = COCOeval\n",
        1,
    ),
    # 2. Pillow 10 removed Image.LINEAR (an alias of BILINEAR).
    ("detectron2/data/transforms/transform.py", r"Image\.LINEAR\b", "Image.BILINEAR", 1),
    # 3. NumPy 1.24 removed the aliases np.bool, np.int, np.float, np.str, np.object.
    ("detectron2/**/*.py", r"\bnp\.(bool|int|float|str|object)\b(?![_\d])", r"\1", 19),
    ("projects/**/*.py", r"\bnp\.(bool|int|float|str|object)\b(?![_\d])", r"\1", None),
    # 4. torch >= 2.2 rejects GroupNorm(32, 1), built only to learn the norm's type.
    ("detectron2/modeling/meta_arch/retinanet.py", r"get_norm\(norm, 1\)", "get_norm(norm, 32)", 1),
    # 5. setuptools 81 removed pkg_resources.
    ("detectron2/model_zoo/model_zoo.py", r"import pkg_resources\n", "", 1),
    (
        "detectron2/model_zoo/model_zoo.py",
        r"pkg_resources\.resource_filename\(\s*\"detectron2\.model_zoo\", "
        r"os\.path\.join\(\"configs\", config_path\)\s*\)",
        'os.path.join(os.path.dirname(__file__), "configs", config_path)',
        1,
    ),
    # 6. the build: no C++/CUDA extension; model-zoo configs packaged from the sdist's copy;
    #    black unpinned (21.4b2 does not import with click >= 8.1; only LazyConfig.save uses it).
    ("setup.py", r"ext_modules=get_extensions\(\),\n\s*cmdclass=\{[^}]*\},\n", "", 1),
    (
        "setup.py",
        r"package_data=\{\"detectron2\.model_zoo\": get_model_zoo_configs\(\)\}",
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}',
        1,
    ),
    ("setup.py", r"\"black==21\.4b2\"", '"black"', 1),
    # 7. Python 3.11 refuses random.sample on a set: MapDataset crashed on the first image its
    #    mapper skipped (returned None) instead of drawing another one.
    (
        "detectron2/data/common.py",
        r"self\._rng\.sample\(self\._fallback_candidates, k=1\)",
        "self._rng.sample(sorted(self._fallback_candidates), k=1)",
        1,
    ),
    # 8. detectron2.export imported caffe2 (gone from torch >= 1.10's wheels) unconditionally, so
    #    neither detectron2.export (TracingAdapter, scripting) nor detectron2.utils.analysis
    #    imported: the caffe2 API is imported only where caffe2 is installed.
    (
        "detectron2/export/__init__.py",
        r"from \.api import \*\n",
        "try:\n    from caffe2.proto import caffe2_pb2 as _tmp  # noqa: F401\n"
        "except ImportError:  # cxr-d2: caffe2 is optional, as on detectron2 main\n"
        "    pass\nelse:\n    from .api import *\n",
        1,
    ),
]


STAMP_MODULE = "_cxr_d2_patches"


def patches_digest():
    """Identifies the sdist and the patch set; stamped into the package it installs."""
    return hashlib.sha256((SDIST_SHA256 + repr(PATCHES)).encode()).hexdigest()[:16]


def installed_stamp(python=sys.executable):
    """
    What the importable detectron2 is: "compiled" (an official build, with `_C`), the patch
    digest stamped by this script, "unstamped" (pure Python of unknown origin), or None.
    """
    code = (
        "import importlib.util, detectron2\n"
        "if importlib.util.find_spec('detectron2._C'): print('compiled')\n"
        f"else:\n    try:\n        from detectron2 import {STAMP_MODULE} as s; print(s.DIGEST)\n"
        "    except ImportError:\n        print('unstamped')"
    )
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def probe(python=sys.executable):
    """Import each probe module first in a fresh interpreter; return a list of failures."""
    failures = []
    for first in PROBE_MODULES:
        order = [first] + [m for m in PROBE_MODULES if m != first]
        code = "; ".join(f"import {m}" for m in order)
        r = subprocess.run([python, "-c", code], capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            failures.append(f"{code}: {last}")
    return failures


def download(cache_dir):
    path = os.path.join(cache_dir, SDIST_FILE)
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        # --no-build-isolation: setup.py imports torch, which the isolated build env lacks.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += ["--no-build-isolation", "-d", cache_dir, SDIST]
        subprocess.run(cmd, check=True)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{path}: SHA-256 {digest} is not the expected {SDIST_SHA256}; delete it and retry")
    return path


def apply_patches(src):
    import glob

    for pattern, regex, repl, expected in PATCHES:
        files = sorted(glob.glob(os.path.join(src, pattern), recursive=True))
        total = 0
        for f in files:
            text = open(f).read()
            new, n = re.subn(regex, repl, text)
            if n:
                open(f, "w").write(new)
                total += n
        if expected is not None and total != expected:
            sys.exit(f"patch {regex!r} on {pattern} matched {total} times, expected {expected}")
        print(f"patched {pattern}: {regex!r} x{total}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if importable")
    parser.add_argument("--cache-dir", default=os.path.join(".cache", "detectron2"))
    parser.add_argument("--wheel-dir", help="also build a wheel of the patched sdist here")
    args = parser.parse_args()

    stamp = installed_stamp()
    if not args.force and stamp in ("compiled", patches_digest()) and not probe():
        import detectron2  # noqa: F401 (only to print where it is)

        print(f"detectron2 {detectron2.__version__} ({stamp}) is importable at {detectron2.__path__[0]}")
        return
    if stamp not in (None, "compiled"):
        print(f"detectron2 is pure Python without this patch set ({stamp}): reinstalling")
    sdist = download(args.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, "pb1-detectron2-0.6")
        shutil.rmtree(os.path.join(src, "pb1_detectron2.egg-info"), ignore_errors=True)
        apply_patches(src)
        with open(os.path.join(src, "detectron2", STAMP_MODULE + ".py"), "w") as f:
            f.write(f'"""Written by cxr-d2\'s tools/install_detectron2.py."""\nDIGEST = "{patches_digest()}"\n')
        pip = [sys.executable, "-m", "pip"]
        subprocess.run(pip + ["install", "--no-build-isolation", src], check=True)
        if args.wheel_dir:
            cmd = pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", args.wheel_dir, src]
            subprocess.run(cmd, check=True)
    failures = probe()
    if failures:
        sys.exit("detectron2 still does not import:\n  " + "\n  ".join(failures))
    print("detectron2 installed as pure Python (patched pb1-detectron2 0.6); imports work")


if __name__ == "__main__":
    main()
