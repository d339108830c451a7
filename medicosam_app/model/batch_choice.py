"""How many slices one encoder pass takes when many are embedded (precompute, prefetch, propagation, the
automatic tasks): measured on a GPU, one on a CPU.

On a GPU a batch keeps the device busy where one slice leaves it waiting on the host, so the gain depends on
the card, the precision and the attention kernels: the size is chosen by timing the encoder at growing batch
sizes (1, 2, 4, …) and keeping the fastest per slice, stopping where a doubling gains less than
``MIN_GAIN`` or would not fit in half of the free memory (from the memory one slice takes). On a CPU one slice
already keeps every core busy (the matrix products are large), so a batch gains nothing, while a click waiting
for a slice of a running batch waits for all of it: one slice per pass, without measuring.

A configured ``encode_batch_size`` always wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
MIN_GAIN = 1.05  # a doubling that speeds each slice up by less than 5 % is not worth the click's wait
MEMORY_SHARE = 0.5  # of the free GPU memory at load, for one encoder batch (clicks and caches need the rest)


@dataclass
class BatchChoice:
    """The decision and what it rests on; ``/info`` shows it."""

    chosen: int
    reason: str
    ms_per_slice: Dict[int, float] = field(default_factory=dict)
    memory_cap: Optional[int] = None  # the largest batch that fits the memory share (None: not limited)

    def to_dict(self) -> Dict:
        return asdict(self)


def decide_batch_size(
    seconds_per_slice: Callable[[int], float], candidates: Sequence[int] = CANDIDATES,
    memory_cap: Optional[int] = None, min_gain: float = MIN_GAIN,
) -> BatchChoice:
    """Time growing batches until one gains less than ``min_gain`` per slice over the best so far, or no
    longer fits ``memory_cap``; the fastest per slice wins. A size the device runs out of memory for ends it."""
    timings: Dict[int, float] = {}
    best = None
    for size in sorted(candidates):
        if memory_cap is not None and size > max(memory_cap, 1):
            break
        try:
            timings[size] = seconds_per_slice(size)
        except torch.cuda.OutOfMemoryError:  # a subclass of RuntimeError: the memory estimate was optimistic
            logger.info("An encoder batch of %d slices does not fit in memory here", size)
            break
        if best is not None and timings[best] < timings[size] * min_gain:
            break
        if best is None or timings[size] < timings[best]:
            best = size
    chosen = best or 1
    reason = f"{chosen} slices per pass are the fastest per slice measured here"
    if memory_cap is not None and chosen == max(s for s in timings if s <= max(memory_cap, 1)):
        reason += f" (at most {memory_cap} fit in the memory share)"
    return BatchChoice(chosen, reason, {s: round(1000 * t, 2) for s, t in timings.items()}, memory_cap)


def choose_batch_size(predictor, repeats: int = 3) -> BatchChoice:
    """The batch size for ``predictor``'s encoder on its device (see the module's docstring)."""
    device = predictor.device
    if device.type != "cuda":
        return BatchChoice(1, "one slice per pass on a CPU: it already keeps every core busy, and a click never waits "
                              "for the rest of a batch")
    started = time.perf_counter()
    image = np.zeros((predictor.image_size, predictor.image_size, 3), dtype=np.uint8)
    predictor.encode_batch([image])  # warm-up: kernels chosen, memory pools grown
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    predictor.encode_batch([image])
    torch.cuda.synchronize(device)
    per_slice = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    memory_cap = max(int(free * MEMORY_SHARE // per_slice), 1)

    def seconds_per_slice(size: int) -> float:
        batch = [image] * size
        predictor.encode_batch(batch)  # warm-up at this shape
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize(device)
            begun = time.perf_counter()
            predictor.encode_batch(batch)
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - begun)
        return min(times) / size

    choice = decide_batch_size(seconds_per_slice, memory_cap=memory_cap)
    logger.info("Encoder batch: %d slices per pass (%s; ms per slice %s; measured in %.1f s)", choice.chosen,
                choice.reason, choice.ms_per_slice, time.perf_counter() - started)
    return choice
