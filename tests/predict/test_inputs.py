"""find_inputs: folders walked recursively, DICOM found by content, lists, globs, errors."""
import os
import re

import pytest

from cxr_d2.errors import CXRError
from cxr_d2.predict.inputs import find_inputs
from cxr_d2.predict.writers import overlay_names
from tests.predict.films import write_films


@pytest.fixture
def films(tmp_path):
    paths = write_films(str(tmp_path))
    os.makedirs(tmp_path / "films" / ".cache")
    (tmp_path / "films" / ".cache" / "x.png").write_bytes(b"")
    return paths


def test_folder_recursive_dicom_by_content_others_ignored(films):
    found = find_inputs([os.path.dirname(films["png"])])
    assert found.paths == [films["broken"], films["png"], films["png16"], films["dicom"]]
    assert found.ignored == [films["other"]]


def test_list_file_glob_and_duplicates(films, tmp_path):
    listing = tmp_path / "films.txt"
    listing.write_text(f"# a comment\n\nfilms/sub/chest16.png\n{films['png']}\nnot_there.png\n")
    pattern = os.path.join(os.path.dirname(films["png"]), "**", "*.png")
    found = find_inputs([str(listing), pattern, films["dicom"]])
    # relative entries from the list's folder; a missing one kept, to be reported when read
    assert found.paths == [str(tmp_path / "films" / "sub" / "chest16.png"), films["png"],
                           "not_there.png", films["broken"], films["dicom"]]


@pytest.mark.parametrize("spec", ["nowhere/film.png", "nowhere/*.dcm"])
def test_names_nothing_is_an_error(spec):
    with pytest.raises(CXRError, match=re.escape(f"--input {spec}: ")):
        find_inputs([spec])


def test_overlay_names_distinct():
    paths = ["/d/a/film.png", "/d/b/film.png", "/d/a/film.dcm", "/d/a/x"]
    assert overlay_names(paths) == ["a__film.png", "b__film.png", "a__film-2.png", "a__x.png"]
