"""
The phantom's worker pool: :func:`run_workers` calls ``fn(i, *args)`` for every item ``i`` in
fresh Python interpreters and returns the results in item order.

Fresh interpreters rather than a fork-based ``multiprocessing.Pool``: OpenCV's thread pool is
not fork-safe (a forked child of a process that already used OpenCV can hang), and a
spawn-based pool would re-import the caller's ``__main__`` and the whole ``cxr_d2`` package
(torch, Detectron2 and every model: seconds per worker). A worker enters the packages above
``fn``'s module without running their ``__init__``, so it loads only that module and what it
imports (for the phantom: numpy, OpenCV, pycocotools and tqdm).
"""

from __future__ import annotations

import importlib
import json
import queue
import subprocess
import sys
import threading

import cv2

__all__ = ["run_workers"]

_TAG = "PHANTOM-RESULT "  # prefix of the result lines a worker prints on stdout
# Run by `python -c`: argv[1] = [[package, __path__], ...] to enter without their __init__,
# argv[2] = this module, argv[3:] = the arguments of worker_main.
_BOOTSTRAP = (
    "import importlib, json, sys, types\n"
    "for name, path in json.loads(sys.argv[1]):\n"
    "    sys.modules[name] = types.ModuleType(name)\n"
    "    sys.modules[name].__path__ = path\n"
    "importlib.import_module(sys.argv[2]).worker_main(sys.argv[3:])\n"
)


def run_workers(fn, args: tuple, num_items: int, workers: int, bar) -> list:
    """
    Calls ``fn(i, *args)`` for ``i`` in ``range(num_items)`` in ``workers`` processes, worker
    ``k`` taking items ``k, k + workers, ...``.

    Args:
        fn: A module-level function; its result must survive a JSON round trip.
        args: JSON-serializable arguments after ``i``.
        bar: Progress bar; ``bar.update()`` is called once per finished item.

    Returns:
        list: The results (as decoded from JSON), in item order.

    Raises:
        RuntimeError: If a worker exits with an error (its traceback is on stderr).
    """
    where = [fn.__module__, fn.__name__, json.dumps(list(args)), str(num_items), str(workers)]
    packages = json.dumps(_packages_above(fn.__module__, __name__))
    lines: queue.Queue = queue.Queue()
    procs, results, finished = [], [None] * num_items, 0
    try:
        for k in range(workers):
            cmd = [sys.executable, "-c", _BOOTSTRAP, packages, __name__, *where, str(k)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            threading.Thread(target=_pump, args=(procs[-1].stdout, lines), daemon=True).start()
        while finished < workers:  # each worker: one tagged json line per item, then None
            line = lines.get()
            if line is None:
                finished += 1
            elif line.startswith(_TAG):
                record = json.loads(line[len(_TAG) :])
                results[record["i"]] = record["result"]
                bar.update()
        for proc in procs:
            proc.wait()
    finally:
        for proc in procs:  # only still running if interrupted
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(proc.returncode for proc in procs) or any(r is None for r in results):
        failed = f"{fn.__module__}.{fn.__name__}"
        raise RuntimeError(f"a worker process failed in {failed}; see its traceback above")
    return results


def _packages_above(*modules: str) -> list[list]:
    """``[name, __path__]`` of every package above ``modules``, outermost first."""
    names = {".".join(m.split(".")[:n]) for m in modules for n in range(1, m.count(".") + 1)}
    return [[name, list(importlib.import_module(name).__path__)] for name in sorted(names)]


def _pump(stream, lines: queue.Queue) -> None:
    """Copies the lines of a worker's stdout into ``lines``, then puts ``None``."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def worker_main(argv: list[str]) -> None:
    """
    Worker entry point: prints one tagged json line ``{"i", "result"}`` per item.

    Args:
        argv: ``[module, function, args as json, num_items, workers, k]``.
    """
    module, function, args = argv[0], argv[1], json.loads(argv[2])
    num_items, workers, k = (int(v) for v in argv[3:6])
    cv2.setNumThreads(1)  # one core per worker
    fn = getattr(importlib.import_module(module), function)
    for i in range(k, num_items, workers):
        print(_TAG + json.dumps({"i": i, "result": fn(i, *args)}), flush=True)
