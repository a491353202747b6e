"""The config functions of the Detectron2 projects installed with cxr-d2."""

__all__ = ["project_config_fns"]


def project_config_fns():
    """`add_x_config` of each installed project (SipMask), for `setup_cfg(extra_config_fns=)`.

    Imported on call: the projects import cxr_d2 themselves.
    """
    fns = []
    try:
        from sipmask import add_sipmask_config

        fns.append(add_sipmask_config)
    except ImportError:
        pass
    return tuple(fns)
