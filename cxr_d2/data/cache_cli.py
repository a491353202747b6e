"""`tools/cache_images.py`: fill the decoded-image cache for whole datasets, once."""
import argparse
import sys

from detectron2.data import DatasetCatalog
from tqdm import tqdm

from ..errors import CXRError, DatasetError
from .image_cache import ImageCache

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(
        description="Decode every image of the datasets once into the image cache "
        "(CXR.DATA.IMAGE_CACHE); training and evaluation with the cache on then read it."
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help="registered names")
    parser.add_argument("--dir", required=True, help="the cache folder (CXR.DATA.IMAGE_CACHE.DIR)")
    parser.add_argument("--max-size", type=int, default=0,
                        help="longer side at most this many pixels (IMAGE_CACHE.MAX_SIZE); 0 = native")
    parser.add_argument("--format", default="BGR", help="the model's INPUT.FORMAT (default BGR)")
    return parser


def _files(names):
    files = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise CXRError(f"dataset {name!r} is not registered (see datasets/README.md)")
        files += [r["file_name"] for r in DatasetCatalog.get(name) if "file_name" in r]
    return list(dict.fromkeys(files))


def main(argv=None):
    import cxr_d2  # noqa: F401  (registers the datasets)

    args = _parser().parse_args(argv)
    try:
        files = _files(args.datasets)
    except CXRError as e:
        sys.exit(f"error: {e}")
    cache = ImageCache(args.dir, args.max_size)
    failed = 0
    for path in tqdm(files, unit="image", desc="caching", file=sys.stderr):
        try:
            cache.read(path, args.format)
        except DatasetError as e:
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            failed += 1
    print(f"{len(files)} images: {cache.misses} decoded and stored, {cache.hits} already cached, "
          f"{failed} unreadable; cache {args.dir}")
    return 1 if failed else 0
