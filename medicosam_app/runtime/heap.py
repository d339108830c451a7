"""Keep the encoder's large buffers in the heap instead of mapping fresh pages on every pass (glibc only).

A ViT-B encoder pass allocates and frees tensors of tens to hundreds of MB. By default glibc's malloc serves
every block above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and unmaps it at ``free``, and a
thread other than the main one allocates from an arena of its own whose heaps stop at 64 MiB and are unmapped
when empty. The server encodes on worker threads, so each pass faulted in gigabytes of zeroed pages: on a
2-core AMD EPYC an int8 encode of one 1024² slice took 7.8–8.6 s, about 4 s of it in the kernel (1.7 M page
faults). With one arena and the thresholds raised the same pass takes 5.9–6.2 s, with no faults after the first.

Two halves, because glibc binds a thread to an arena when the thread first allocates:
- ``GLIBC_TUNABLES`` (:func:`glibc_tunables`), set by ``scripts/start_server.sh`` before Python starts, puts
  every thread on the main arena. Only a process started with it gets this half.
- :func:`keep_large_buffers` calls ``mallopt`` at start-up for the thresholds (every arena) and the arena limit
  (threads that have no arena yet), so the command line and a server started without the script gain most.

The cost is memory that stays mapped after a peak (free heap up to ``trim_threshold`` is kept). Turn it off
with ``--conf malloc_tuning false`` / ``MEDICOSAM_MALLOC_TUNING=false``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional, Sequence, Union

logger = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

TUNING_ENV = "MEDICOSAM_MALLOC_TUNING"
_OFF = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class HeapTuning:
    """What glibc's malloc is asked for."""

    mmap_threshold: int = 1 << 30  # blocks below 1 GiB come from the heap, and go back to it
    trim_threshold: int = 2 << 30  # free memory at the heap's top is returned to the system above 2 GiB
    arena_max: int = 1  # every thread shares the main arena, which grows without the 64 MiB heap limit

    def as_tunables(self) -> str:
        return (f"glibc.malloc.arena_max={self.arena_max}:glibc.malloc.mmap_threshold={self.mmap_threshold}"
                f":glibc.malloc.trim_threshold={self.trim_threshold}")


Value = Union[bool, int, str]
_lock = threading.Lock()
_state: Optional[Dict[str, Value]] = None


def is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def glibc_tunables(
    args: Sequence[str] = (), environ: Optional[Mapping[str, str]] = None, tuning: HeapTuning = HeapTuning()
) -> str:
    """The ``GLIBC_TUNABLES`` value a server process should start with: the value already in ``environ``
    (default: this process's environment) followed by ``tuning``; unchanged when tuning is off
    (``--conf malloc_tuning false`` among ``args``, or ``MEDICOSAM_MALLOC_TUNING``) or the C library is not glibc."""
    environ = os.environ if environ is None else environ
    current = environ.get("GLIBC_TUNABLES", "")
    wanted = environ.get(TUNING_ENV, "true")
    for position, arg in enumerate(args[:-2]):
        if arg == "--conf" and args[position + 1] == "malloc_tuning":
            wanted = args[position + 2]
    if wanted.strip().lower() in _OFF or not is_glibc():
        return current
    return f"{current}:{tuning.as_tunables()}" if current else tuning.as_tunables()


def keep_large_buffers(tuning: HeapTuning = HeapTuning()) -> Dict[str, Value]:
    """Apply ``tuning`` through ``mallopt`` once per process; returns what was done (also shown in ``/info``).

    Call it before the threads that allocate tensors start. On a C library other than glibc nothing changes.
    """
    global _state
    with _lock:
        if _state is not None:
            return dict(_state)
        _state = _apply(tuning)
        if _state["applied"]:
            logger.info("malloc tuned for large tensors: %s", _state)
        else:
            logger.warning("malloc left as it is: %s", _state["reason"])
        return dict(_state)


def heap_tuning_state() -> Dict[str, Value]:
    """What :func:`keep_large_buffers` did in this process (``applied`` false when it was not called)."""
    with _lock:
        return dict(_state) if _state is not None else {"applied": False, "reason": "malloc_tuning is off"}


def _apply(tuning: HeapTuning) -> Dict[str, Value]:
    if not is_glibc():
        return {"applied": False, "reason": f"not glibc ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'})"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return {"applied": False, "reason": f"mallopt unavailable: {error}"}
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    refused = [
        name
        for name, parameter, value in (
            ("mmap_threshold", M_MMAP_THRESHOLD, tuning.mmap_threshold),
            ("trim_threshold", M_TRIM_THRESHOLD, tuning.trim_threshold),
            ("arena_max", M_ARENA_MAX, tuning.arena_max),
        )
        if mallopt(parameter, value) != 1  # mallopt answers 1 on success
    ]
    state: Dict[str, Value] = {"applied": not refused, **asdict(tuning)}
    # Whether every thread is on the main arena, or only those that first allocated after this call.
    state["all_threads"] = tuning.as_tunables() in os.environ.get("GLIBC_TUNABLES", "")
    if refused:
        state["reason"] = f"glibc {platform.libc_ver()[1]} refused {', '.join(refused)}"
    return state


if __name__ == "__main__":  # scripts/start_server.sh: GLIBC_TUNABLES for the server it is about to start
    print(glibc_tunables(sys.argv[1:]))
