"""
The image files named by `--input`: files, folders (walked recursively), glob patterns, and
text files listing paths (one per line).

A file named explicitly (or matched by a glob) is always an input, so an unreadable one is
reported. Inside a folder, a file is an input when its name has an image extension (so a
broken `.png` is reported too) or when its content is an image (DICOM files often have no
extension); other files (`.txt`, `.json`, ...) are counted as ignored. Hidden files and folders
are not walked.
"""
import glob
import os

from ..data.dicom import DICOM_EXTENSIONS, is_dicom
from ..data.image_io import sniff
from ..errors import CXRError, DatasetError

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "Inputs", "find_inputs"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif") + DICOM_EXTENSIONS
# A file with one of these extensions lists image paths, one per line (blank lines and lines
# starting with '#' skipped; relative paths are taken from the current folder, else from the
# list's folder).
LIST_EXTENSIONS = (".txt", ".lst", ".list")


class Inputs:
    """
    Attributes:
        paths (list[str]): the image files, in the order given, each once.
        ignored (list[str]): files inside folders that are not images.
    """

    def __init__(self):
        self.paths = []
        self.ignored = []
        self._seen = set()

    def add(self, path):
        key = os.path.abspath(path)
        if key not in self._seen:
            self._seen.add(key)
            self.paths.append(path)


def find_inputs(specs):
    """
    Args:
        specs (list[str]): what `--input` gives: files, folders, globs, path lists.

    Returns:
        Inputs.

    Raises:
        CXRError: a spec that names nothing (a missing path, a glob matching no file).
    """
    inputs = Inputs()
    for spec in specs:
        _add_spec(inputs, spec)
    return inputs


def _add_spec(inputs, spec):
    if os.path.isdir(spec):
        _add_folder(inputs, spec)
    elif os.path.isfile(spec) and spec.lower().endswith(LIST_EXTENSIONS):
        for path in _read_list(spec):
            inputs.add(path)
    elif os.path.exists(spec):
        inputs.add(spec)
    elif glob.has_magic(spec):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise CXRError(f"--input {spec}: the pattern matches no file")
        for match in matches:
            _add_folder(inputs, match) if os.path.isdir(match) else inputs.add(match)
    else:
        raise CXRError(f"--input {spec}: no such file or folder")


def _add_folder(inputs, folder):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if _is_image(path):
                inputs.add(path)
            else:
                inputs.ignored.append(path)


def _is_image(path):
    """By name (an image extension) or, failing that, by content (raster magic or DICOM)."""
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return True
    if path.lower().endswith(LIST_EXTENSIONS):
        return False
    try:
        return sniff(path) is not None or is_dicom(path)
    except DatasetError:
        return False


def _read_list(list_file):
    """Paths listed in `list_file`; a relative path is resolved from the current folder when it
    exists there, else from the list's folder (it is kept as given for the error otherwise)."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise CXRError(f"--input {list_file}: cannot be read as a list of paths ({e})") from None
    base = os.path.dirname(list_file)
    paths = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if not os.path.isabs(line) and not os.path.exists(line):
            beside = os.path.join(base, line)
            line = beside if os.path.exists(beside) else line
        paths.append(line)
    return paths
