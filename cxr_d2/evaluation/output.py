"""
Every file the evaluator and the report write goes through `write_output`: written to
`<file>.tmp`, fsynced and renamed into place (`cxr_d2.engine.checkpoint.write_atomic`), so a
file is complete or absent, never cut; a failed write (full disk, quota, read-only or
unwritable folder) is a CXRError naming the file and what to do, and leaves no `.tmp`.
"""

import errno
import json
import os

import orjson

from ..engine.checkpoint import write_atomic
from ..errors import CXRError

__all__ = [
    "OutputError",
    "output_error",
    "write_output",
    "write_json",
    "write_json_compact",
    "write_text",
    "make_folder",
]

_WHAT_TO_DO = {
    errno.ENOSPC: "free space on that disk, or write the outputs elsewhere",
    errno.EDQUOT: "free space within your disk quota, or write the outputs elsewhere",
    errno.EROFS: "the disk is read-only: write the outputs elsewhere",
    errno.EACCES: "make the folder writable, or write the outputs elsewhere",
    errno.EPERM: "make the folder writable, or write the outputs elsewhere",
}


class OutputError(CXRError):
    """An output file that could not be written (names it and what to do)."""


def output_error(path, e):
    """The OutputError of an OSError `e` raised while writing `path`."""
    todo = _WHAT_TO_DO.get(e.errno, "check the folder, or write the outputs elsewhere")
    return OutputError(f"cannot write {path} ({e.strerror or e}); {todo}")


def make_folder(path):
    """`os.makedirs(path, exist_ok=True)`; OutputError names the folder on failure."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise output_error(path, e) from None


def write_output(path, write):
    """
    Write `path` atomically through `write(binary_file)`; OSError -> OutputError.

    Args:
        path (str): the file.
        write (callable): writes the whole content into the open binary file it is given.
    """
    make_folder(os.path.dirname(path) or ".")
    try:
        write_atomic(path, write)
    except OSError as e:
        raise output_error(path, e) from None


def write_text(path, text):
    """Write a str (UTF-8) atomically."""
    write_output(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj, **kwargs):
    """Write `json.dumps(obj, **kwargs)` atomically."""
    write_text(path, json.dumps(obj, **kwargs))


def write_json_compact(path, obj):
    """
    Write `obj` as compact JSON (no spaces) atomically, through orjson: about 9x json.dumps on
    100,000 detections with RLE masks, the same values when read back. For checked, finite
    values only (orjson writes NaN as null); json.dumps where orjson refuses the types
    (e.g. integer keys, which json writes as strings).
    """
    try:
        data = orjson.dumps(obj)
    except TypeError:
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    write_output(path, lambda f: f.write(data))
