"""
Detectron2 projects installed beside cxr-d2, found the Python way: each declares its
`add_x_config(cfg)` in the entry-point group `cxr_d2.projects` of its setup.py, e.g.

    entry_points={"cxr_d2.projects": ["sipmask = sipmask:add_sipmask_config"]}

cxr_d2 imports no project itself; loading an entry point imports its project, which
registers its meta-architecture.
"""
from importlib.metadata import entry_points

from ..errors import CXRError

__all__ = ["PROJECTS_GROUP", "project_config_fns"]

PROJECTS_GROUP = "cxr_d2.projects"


def project_config_fns(group=PROJECTS_GROUP):
    """
    The `add_x_config(cfg)` functions of the installed projects, sorted by entry-point name,
    for `setup_cfg(args, extra_config_fns=...)`.

    Raises:
        CXRError: a project failed to import; names its entry point and the original error.
    """
    fns = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            fns.append(ep.load())
        except Exception as e:
            raise CXRError(
                f"project '{ep.name}' (entry point '{ep.value}' in group {group}) failed to "
                f"import: {type(e).__name__}: {e}"
            ) from e
    return tuple(fns)
