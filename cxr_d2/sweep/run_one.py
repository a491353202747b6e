"""
One sweep run in this process, as the `local` executor starts it:

    python -m cxr_d2.sweep.run_one SPEC_JSON [--eval-only] [--sweep NAME]

SPEC_JSON is a RunSpec as JSON; the run is tools/train_net.py's (job.py). A CXRError ends it
with one line, `error: ...`, and exit status 1.
"""

import argparse
import json
import sys

from ..errors import CXRError
from .job import RunJob
from .matrix import RunSpec


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--sweep", default="")
    args = parser.parse_args(argv)
    try:
        RunJob(RunSpec(**json.loads(args.spec)), args.sweep or None, args.eval_only)()
    except CXRError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
