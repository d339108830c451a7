"""Process-wide tuning a model server needs before it serves: how memory is allocated (and how much the
process holds); and the cancellation of a request's work when its client goes away."""

from .cancellation import Cancellation, RequestCancelled, cancellable, current_cancellation, raise_if_cancelled
from .heap import HeapTuning, glibc_tunables, heap_tuning_state, is_glibc, keep_large_buffers
from .memory import gib, peak_resident_bytes, resident_bytes

__all__ = [
    "Cancellation",
    "HeapTuning",
    "RequestCancelled",
    "cancellable",
    "current_cancellation",
    "gib",
    "glibc_tunables",
    "heap_tuning_state",
    "is_glibc",
    "keep_large_buffers",
    "peak_resident_bytes",
    "raise_if_cancelled",
    "resident_bytes",
]
