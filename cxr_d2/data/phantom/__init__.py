"""
Seeded procedural generator of synthetic chest radiographs ("phantoms") with lesions: the
built-in default dataset of ``cxr_d2`` and the images of ``tools/make_phantom.py``.

Modules, by concern:

* :mod:`.anatomy`: the chest geometry and the lesion-free film (body, lung fields, ribs,
  clavicles, mediastinum, spine, heart, diaphragm domes, vessel markings), tone and noise.
* :mod:`.lesions`: the four lesion classes (:data:`PHANTOM_CLASSES`) and their placement.
* :mod:`.render`: one film (:func:`draw_phantom`, :func:`draw_normal_phantom`).
* :mod:`.dataset`: the COCO dataset on disk and its cache check
  (:func:`generate_phantom_dataset`); :mod:`.pool`: its worker processes.
* :mod:`.plan`, :mod:`.dicom_writer`: what a source module's phantom writer uses (its
  :class:`~.plan.PhantomLayout`); :mod:`.layouts`: phantoms in the real sources' on-disk
  layouts, for ``tools/make_phantom.py`` (not imported here: it imports the source table).

Conventions: images are uint8 ``[S, S]``, bright = dense; pixel ``(x, y)`` = (column, row);
boxes ``XYXY_ABS`` with exclusive ``x2``/``y2`` (:func:`cxr_d2.data.masks.mask_to_box`).
"""

from .dataset import GENERATOR_VERSION, generate_phantom_dataset
from .lesions import PHANTOM_CLASSES
from .render import draw_normal_phantom, draw_phantom

__all__ = [
    "PHANTOM_CLASSES",
    "GENERATOR_VERSION",
    "draw_phantom",
    "draw_normal_phantom",
    "generate_phantom_dataset",
]
