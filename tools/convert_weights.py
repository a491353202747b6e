#!/usr/bin/env python
"""
Convert a published checkpoint into one cxr-d2 loads (see docs/pretrained.md):

    python tools/convert_weights.py --from torchvision resnet50-0676ba61.pth R-50-tv.pth
    python tools/convert_weights.py --from darknet darknet53.conv.74 darknet53.pth

Sources: detectron2, torchvision, adelaidet, sipmask, darknet, torchxrayvision.
"""
import sys

from cxr_d2.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
