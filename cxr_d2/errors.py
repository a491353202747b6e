"""Errors that end a tool with one line naming the file, key or path and what to do."""

__all__ = ["CXRError", "ConfigError", "DatasetError"]


class CXRError(Exception):
    """A user-facing error: its message is the whole story, no traceback needed."""


class ConfigError(CXRError):
    """A config key or value that cannot work (names the key)."""


class DatasetError(CXRError):
    """A dataset that cannot be read (names the file, row or path)."""
