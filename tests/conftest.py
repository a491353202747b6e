import copy
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

import cxr_d2  # noqa: F401 (registers the built-in datasets)
from cxr_d2.data.datasets import register_phantom
from tests.helpers import TINY, TINY_SIZE, TWO_FILMS

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


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads fight other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def two_films(tiny_phantom):
    """The first two training films with lesions of the tiny phantom, as dataset TWO_FILMS."""
    source = f"{TINY}_train"
    records = [r for r in DatasetCatalog.get(source) if r["annotations"]][:2]
    DatasetCatalog.register(TWO_FILMS, lambda: copy.deepcopy(records))
    MetadataCatalog.get(TWO_FILMS).set(
        thing_classes=MetadataCatalog.get(source).thing_classes, evaluator_type="coco"
    )
    yield records
    DatasetCatalog.remove(TWO_FILMS)
    MetadataCatalog.remove(TWO_FILMS)

