#!/usr/bin/env python
"""
FLOPs, activations, parameters or structure of a cxr-d2 model, as Detectron2's
tools/analyze_model.py (fvcore's counters; no TorchScript or ONNX export here):

    python tools/analyze_model.py --config-file CFG --tasks flop activation --num-inputs 10 \
        MODEL.WEIGHTS output/model_final.pth
    python tools/analyze_model.py --config-file CFG --tasks parameter structure
"""
import sys

from cxr_d2.engine.analysis import main

if __name__ == "__main__":
    sys.exit(main())
