import os

import pytest

import cxr_d2  # noqa: F401 (registers the built-in datasets)
from cxr_d2.data.datasets import register_phantom

TINY = "cxr_phantom_tiny"


TINY_SIZE = {"num_images": 40, "size": 128}
_TINY_ENV = {}  # projects' conftests re-export the fixture: register the set only once


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """
    A small phantom set (40 images of 128 px) registered as cxr_phantom_tiny_*. Returns the
    environment under which a subprocess sees the same images as the built-in cxr_phantom_*.
    """
    if _TINY_ENV:
        return dict(_TINY_ENV)
    datasets = tmp_path_factory.mktemp("datasets")
    register_phantom(TINY, root=str(datasets / "cxr_phantom"), **TINY_SIZE)
    _TINY_ENV.update(
        os.environ,
        CXR_DATASETS=str(datasets),
        CXR_PHANTOM_IMAGES=str(TINY_SIZE["num_images"]),
        CXR_PHANTOM_SIZE=str(TINY_SIZE["size"]),
    )
    return dict(_TINY_ENV)


@pytest.fixture(scope="session")
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
