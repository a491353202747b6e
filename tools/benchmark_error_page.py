#!/usr/bin/env python
"""
Time the error-analysis page (tools/error_report.py): building it, its size, and with
--browser its load and slider-update times in headless Chromium (Debian's chromium):

    python tools/benchmark_error_page.py --images 1000 --clutter 30 [--browser]
"""

import sys

from cxr_d2.evaluation.errors_page.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
