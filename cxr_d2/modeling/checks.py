"""Config checks shared by the meta-architectures."""

from ..errors import ConfigError

__all__ = ["check_in_features"]


def check_in_features(key, names, backbone):
    """ConfigError naming `key` unless the backbone returns every feature in `names`;
    returns the backbone's output shapes (dict name -> ShapeSpec)."""
    shapes = backbone.output_shape()
    missing = [f for f in names if f not in shapes]
    if missing:
        raise ConfigError(
            f"{key} names {missing}, which the backbone does not return "
            f"(it returns {list(shapes)}); add them to the backbone's OUT_FEATURES"
        )
    return shapes
