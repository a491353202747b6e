from .builtin import register_all
from .phantom import load_phantom, register_phantom

__all__ = ["register_all", "load_phantom", "register_phantom"]
