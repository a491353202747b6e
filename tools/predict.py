#!/usr/bin/env python
"""
Run a trained cxr-d2 model on chest films, as Detectron2's demo/demo.py:

    python tools/predict.py --config-file configs/Phantom/mask_rcnn_R_18_FPN_cpu.yaml \
        --input films/ more.txt 'other/*.dcm' --output predictions/ \
        --opts MODEL.WEIGHTS output/model_final.pth

Writes predictions.json (COCO results), predictions.csv, images.json and overlays/*.png
under --output; see docs/predict.md.
"""
import sys

from cxr_d2.predict.cli import main

if __name__ == "__main__":
    sys.exit(main())
