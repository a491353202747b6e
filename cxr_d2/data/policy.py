"""
What the data readers allow, set once per run from the config (`CXR.DATA`) by
:func:`cxr_d2.engine.setup_cfg` and read by the loaders and image readers.

- `max_image_pixels`: an image whose header states more pixels (rows x columns) is refused
  before any pixel is decoded (decompression bombs, absurd DICOM sizes).
- `allow_outside_root`: whether an annotation's `file_name` may name a file outside its
  dataset's folder (absolute paths, `../`).
"""

from dataclasses import dataclass

__all__ = ["DataPolicy", "data_policy", "set_data_policy", "apply_data_policy"]


@dataclass
class DataPolicy:
    max_image_pixels: int = 100_000_000
    allow_outside_root: bool = False


_POLICY = DataPolicy()


def data_policy():
    """The policy in force (defaults until :func:`set_data_policy` is called)."""
    return _POLICY


def set_data_policy(**changes):
    """Change fields of the policy in force (e.g. `max_image_pixels=10**6`); returns the old one."""
    global _POLICY
    old = _POLICY
    _POLICY = DataPolicy(**{**old.__dict__, **changes})
    return old


def apply_data_policy(cfg):
    """Set the policy from `cfg.CXR.DATA`."""
    set_data_policy(
        max_image_pixels=int(cfg.CXR.DATA.MAX_IMAGE_PIXELS),
        allow_outside_root=bool(cfg.CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT),
    )
