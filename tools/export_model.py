#!/usr/bin/env python
"""
Export a cxr-d2 model to TorchScript or ONNX, as Detectron2's tools/deploy/export_model.py,
run the exported file on a sample image and print its largest box difference from PyTorch
(docs/export.md):

    python tools/export_model.py --config-file CFG --format onnx --output DIR \
        MODEL.WEIGHTS output/model_final.pth
    python tools/export_model.py --config-file CFG --format torchscript \
        --export-method scripting --sample-image film.png --run-eval --output DIR \
        MODEL.WEIGHTS output/model_final.pth
"""
import sys

from cxr_d2.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
