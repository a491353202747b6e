"""Projects found through the entry-point group cxr_d2.projects (setup.py)."""
import pytest

from cxr_d2 import CXRError
from cxr_d2.engine.projects import PROJECTS_GROUP, project_config_fns


def _install_fake_project(root, name, target, module_source=None):
    """A distribution in `root` declaring `name = target` in the projects group (what pip
    writes for a setup.py entry point), and optionally the module it points at."""
    dist = root / f"{name}_project-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-project\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{PROJECTS_GROUP}]\n{name} = {target}\n")
    if module_source is not None:
        (root / f"{target.split(':')[0]}.py").write_text(module_source)


def test_sipmask_is_found_through_its_entry_point():
    from sipmask import add_sipmask_config

    assert add_sipmask_config in project_config_fns()


def test_a_working_project_adds_its_config_function(tmp_path, monkeypatch):
    source = "def add_config(cfg):\n    cfg.TOY = 1\n"
    _install_fake_project(tmp_path, "toy", "cxr_toy_project_ok:add_config", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fns = {f.__module__: f for f in project_config_fns()}
    assert "cxr_toy_project_ok" in fns and "sipmask.config" in fns


def test_a_project_that_fails_to_import_is_an_error_naming_it(tmp_path, monkeypatch):
    source = "import cxr_not_installed_dependency\n\ndef add_config(cfg):\n    pass\n"
    _install_fake_project(tmp_path, "broken", "cxr_toy_project_broken:add_config", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CXRError) as e:
        project_config_fns()
    message = str(e.value)
    assert "project 'broken'" in message
    assert "'cxr_toy_project_broken:add_config'" in message
    assert "No module named 'cxr_not_installed_dependency'" in message
    assert isinstance(e.value.__cause__, ModuleNotFoundError)
