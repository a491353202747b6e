#!/usr/bin/env python
"""
Draw the ground truth of a config's DATASETS.TRAIN, as Detectron2's tools/visualize_data.py:

    python tools/visualize_data.py --source annotation --config-file CFG --output-dir DIR
    python tools/visualize_data.py --source dataloader --config-file CFG --output-dir DIR \
        --num-images 20 [KEY VALUE ...]
"""
import sys

from cxr_d2.predict.visualize_data import main

if __name__ == "__main__":
    sys.exit(main())
