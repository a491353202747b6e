"""Registers every built-in dataset on `import cxr_d2`, lazily (see Detectron2's builtin.py)."""
import os

from .phantom import register_phantom

__all__ = ["register_all"]


def register_all():
    # The phantom's size can be changed for quick experiments and tests; the cache in
    # $CXR_DATASETS/cxr_phantom is regenerated whenever these differ from what it holds.
    register_phantom(
        "cxr_phantom",
        num_images=int(os.getenv("CXR_PHANTOM_IMAGES", "600")),
        size=int(os.getenv("CXR_PHANTOM_SIZE", "512")),
    )


register_all()
