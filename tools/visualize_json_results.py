#!/usr/bin/env python
"""
Draw an evaluation's predictions beside the ground truth, as Detectron2's
tools/visualize_json_results.py:

    python tools/visualize_json_results.py --dataset cxr_phantom_test \
        --input output/inference/cxr_phantom_test/coco_instances_results.json --output DIR
"""
import sys

from cxr_d2.predict.visualize_json import main

if __name__ == "__main__":
    sys.exit(main())
