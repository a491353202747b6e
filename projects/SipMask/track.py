#!/usr/bin/env python
"""
Track lesions through one ordered sequence of films with a trained SipMask-VIS model
(tools/predict.py's sibling for sequences):

    python projects/SipMask/track.py --config-file projects/SipMask/configs/vis/sipmask_vis_R_18_FPN_cpu.yaml \
        --input patient_0042/ --output tracks/ --opts MODEL.WEIGHTS output/model_final.pth

Writes tracks.json, frames.csv and strip.png under --output (sipmask/vis/track_tool.py).
"""
import sys

from sipmask.vis.track_tool import main

if __name__ == "__main__":
    sys.exit(main())
