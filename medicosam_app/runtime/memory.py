"""The process's resident memory, as the progress lines and summaries of long runs state it."""

from __future__ import annotations

import resource
import sys

import psutil


def resident_bytes() -> int:
    """Resident set size now (what ``top`` shows as RES)."""
    return psutil.Process().memory_info().rss


def peak_resident_bytes() -> int:
    """The largest resident set size this process has had (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def gib(size: int) -> str:
    """``size`` bytes as "1.23 GiB"."""
    return f"{size / 2**30:.2f} GiB"
