import copy
import dataclasses
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

import cxr_d2  # noqa: F401 (registers the built-in datasets)
from cxr_d2.data.datasets import SOURCES, register_source
from tests.helpers import TINY, TWO_FILMS

_TINY_ENV = {}  # projects' conftests re-export the fixture: register the set only once


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """
    The built-in cxr_phantom_tiny_* (40 films of 128 px) re-registered under a session
    folder as datasets root. Returns the environment (CXR_DATASETS = that folder) under
    which a subprocess reads the same films by the same names.
    """
    if _TINY_ENV:
        return dict(_TINY_ENV)
    datasets = tmp_path_factory.mktemp("datasets")
    phantom = SOURCES["cxr_phantom"]
    tiny = [v for v in phantom.variants if v.name == TINY[len(phantom.name) + 1 :]]
    register_source(dataclasses.replace(phantom, variants=tuple(tiny)), str(datasets), replace=True)
    _TINY_ENV.update(os.environ, CXR_DATASETS=str(datasets))
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

