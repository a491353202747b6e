"""The main suite's fixtures (tiny_phantom), and `sipmask` importable before installation."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
for path in (ROOT, os.path.join(ROOT, "projects", "SipMask")):
    if path not in sys.path:
        sys.path.insert(0, path)

from tests.conftest import repo_root, tiny_phantom  # noqa: E402,F401
