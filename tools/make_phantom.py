#!/usr/bin/env python
"""
Write a phantom dataset in a real source's on-disk layout, so every loader can be run end to
end without the real data:

    python tools/make_phantom.py --layout nih_cxr14 --out datasets \\
        --annotations ../shared/data/nih/BBox_List_2017.csv --size 256
    python tools/make_phantom.py --layout siim_ptx --out /tmp/ds --num-images 40 --size 128
    CXR_DATASETS=/tmp/ds python tools/check_dataset.py siim_ptx_train

With --annotations, one image is drawn per image of the file, with a lesion in each of its
boxes; coordinates are scaled from the source's native size to --size (and the file is
copied verbatim at the native size).
"""

import argparse
import sys

from cxr_d2.data.phantom.layouts import (
    LAYOUTS,
    phantom_layout,
    plan_from_annotations,
    random_plan,
    write_layout,
)
from cxr_d2.errors import CXRError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument(
        "--out", default="datasets", help="writes OUT/<layout>/ (default ./datasets)"
    )
    parser.add_argument("--num-images", type=int, default=50, help="without --annotations")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the source's)")
    parser.add_argument("--annotations", default=None, help="a real annotation file to draw")
    parser.add_argument(
        "--annotations-size",
        type=int,
        default=None,
        help="image side the --annotations coordinates refer to (default: the source's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--uml-masks",
        choices=("coco", "png"),
        default="coco",
        help="uml_peru: annotations.json (polygons and RLE) or per-instance PNGs",
    )
    args = parser.parse_args(argv)
    size = args.size or phantom_layout(args.layout).native_size
    try:
        if args.annotations:
            items = plan_from_annotations(
                args.layout, args.annotations, size, args.annotations_size
            )
        else:
            items = random_plan(args.layout, args.num_images, size, seed=args.seed)
        root = write_layout(
            args.layout,
            args.out,
            items,
            size,
            seed=args.seed,
            uml_masks=args.uml_masks,
            annotations_file=args.annotations,
        )
    except (CXRError, OSError) as e:
        sys.exit(f"error: {e}")
    boxes = sum(len(i.findings) for i in items)
    print(f"wrote {len(items)} images with {boxes} findings to {root}")


if __name__ == "__main__":
    main()
