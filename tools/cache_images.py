#!/usr/bin/env python
"""
Decode every image of the datasets once into the image cache:

    python tools/cache_images.py vindr_cxr_train vindr_cxr_val --dir /fast/cxr-cache --max-size 1024

then train with `CXR.DATA.IMAGE_CACHE.ENABLED True CXR.DATA.IMAGE_CACHE.DIR /fast/cxr-cache
CXR.DATA.IMAGE_CACHE.MAX_SIZE 1024` (the same --max-size and INPUT.FORMAT; a mismatch is a
cache miss, never a wrong image). See cxr_d2/data/image_cache.py.
"""
import sys

from cxr_d2.data.cache_cli import main

if __name__ == "__main__":
    sys.exit(main())
