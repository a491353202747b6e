"""
Merge a YAML config file (and its `_BASE_` chain) or command-line overrides into a config,
turning what yacs/fvcore would raise into a ConfigError naming the file, line or key.
"""
import difflib
import os
import re

import yaml

from ..errors import ConfigError

__all__ = ["merge_config_file", "merge_overrides", "config_keys"]

BASE_KEY = "_BASE_"


def config_keys(cfg, prefix=""):
    """Every leaf key of `cfg` as a dotted name ("SOLVER.BASE_LR", ...)."""
    keys = []
    for name, value in cfg.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            keys += config_keys(value, full + ".")
        else:
            keys.append(full)
    return keys


def _did_you_mean(cfg, key):
    close = difflib.get_close_matches(key, config_keys(cfg), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def merge_config_file(cfg, path):
    """
    `cfg.merge_from_file(path)`; a file that cannot be read or parsed, a missing `_BASE_`, an
    unknown key or a value of the wrong type is a ConfigError naming the file (and the line or
    key) and what to do.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--config-file {path} does not exist")
    chain = _load_chain(path, ())
    try:
        cfg.merge_from_file(path, allow_unsafe=False)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(_merge_error(cfg, e, chain, path)) from None


def merge_overrides(cfg, opts):
    """`cfg.merge_from_list(opts)`; a bad KEY VALUE pair is a ConfigError naming the key."""
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        message = _strip_quotes(e)
        key = _unknown_key(message)
        hint = _did_you_mean(cfg, key) if key else ""
        raise ConfigError(f"command-line override {opts}: {message}{hint}") from None


def _strip_quotes(error):
    return str(error.args[0] if error.args else error).strip("'\"")


def _unknown_key(message):
    m = re.search(r"Non-existent (?:config )?key: (\S+)", message)
    return m.group(1) if m else None


def _error_key(message):
    m = re.search(r"config key: (\S+)", message)
    return m.group(1) if m else None


def _merge_error(cfg, error, chain, path):
    message = _strip_quotes(error)
    key = _error_key(message)
    where = _file_holding(chain, key) if key else path
    if _unknown_key(message):
        return (
            f"{where}: unknown config key {key}{_did_you_mean(cfg, key)}; fix its name or "
            "remove it"
        )
    if message.startswith("Type mismatch"):
        return f"{where}: {message}; give {key} a value of the default's type"
    return f"{where}: {message}"


def _file_holding(chain, key):
    """The last file of the `_BASE_` chain (merge order) that sets dotted `key`."""
    holding = [f for f, data in chain if _has_key(data, key.split("."))]
    return holding[-1] if holding else chain[-1][0] if chain else "config file"


def _has_key(data, parts):
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _load_chain(path, seen):
    """
    [(file, its own YAML dict)] for `path` and its `_BASE_` files, bases first (merge order).
    Files reached by URL are left to fvcore.
    """
    if path in seen:
        raise ConfigError(f"{path}: _BASE_ includes itself ({' -> '.join(seen + (path,))})")
    data = _read_yaml(path)
    bases = data.get(BASE_KEY, [])
    chain = []
    for base in bases if isinstance(bases, list) else [bases]:
        chain += _base_chain(path, base, seen + (path,))
    return chain + [(path, data)]


def _base_chain(path, base, seen):
    if not isinstance(base, str):
        raise ConfigError(f"{path}: _BASE_ is {base!r}; give the path of a config file")
    if base.startswith(("http://", "https://")):
        return []
    resolved = os.path.expanduser(base)
    if not resolved.startswith("/"):
        resolved = os.path.join(os.path.dirname(path), resolved)  # as fvcore resolves it
    if not os.path.isfile(resolved):
        raise ConfigError(
            f"{path}: _BASE_ {base} does not exist (looked for {resolved}); fix the path, "
            "which is relative to this file"
        )
    return _load_chain(resolved, seen)


def _read_yaml(path):
    """The file's own dict (None for an empty one). A Python tag, which could run code when
    loaded (fvcore's fallback `yaml.unsafe_load`), is refused."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; give a YAML config file") from None
    except yaml.constructor.ConstructorError as e:
        tag = (e.problem or "").startswith("could not determine a constructor")
        raise ConfigError(_python_tag_error(path, e) if tag else _yaml_error(path, e)) from None
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{path} holds {kind}, not a mapping of config keys (KEY: value)")
    return data


def _python_tag_error(path, error):
    mark = getattr(error, "problem_mark", None)
    where = f"{path} line {mark.line + 1}" if mark is not None else path
    return (
        f"{where}: a YAML tag that builds a Python object ({error.problem}), which could run "
        "code and is not loaded; write plain values"
    )


def _yaml_error(path, error):
    mark = getattr(error, "problem_mark", None)
    where = f"{path} line {mark.line + 1}" if mark is not None else path
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{where}: not valid YAML ({problem}); fix the syntax"
