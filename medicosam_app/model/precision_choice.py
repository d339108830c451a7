"""``precision auto``: the encoder precision chosen by measuring the machine, not by a fixed rule.

Machines differ more than a rule can say: on an Intel Xeon with AMX bf16 matrix products run 5.7× faster
than fp32, on an AMD EPYC without it 6× slower, where int8 linear layers gain ~1.4× instead. So ``auto`` times one encoder block of each kind (windowed
and global attention; the encoder's time is their times by their counts) in every precision the device
offers. A precision faster than fp32 is then checked end to end on a fixed probe slice: the masks its
embedding gives for a set of point and box prompts must agree with fp32's (mean mask IoU ≥
``min_mask_iou``). The fastest precision that agrees wins; fp32 always agrees with itself.

The decision is remembered in ``<cache_dir>/precision/`` under a key of the machine (CPU model and flags,
or GPU name), the torch version and the checkpoint, so it is measured once per machine and model, and a
different machine or a new torch measures again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch
from filelock import FileLock, Timeout
from segment_anything.modeling import Sam

from ..atomic_files import write_json_atomic
from .int8_encoder import int8_supported
from .predictor import PRECISIONS, PromptPredictor

logger = logging.getLogger(__name__)

MIN_MASK_IOU = 0.98
SCREEN_RATIO = 4.0  # an autocast precision whose matmuls are this much slower than fp32's is not timed further
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device_description(device: torch.device) -> str:
    """What decides the speed of each precision: the GPU's name, or the CPU's model and instruction set."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    return f"cpu: {model} (flags {digest})"


def candidate_precisions(device: torch.device) -> List[str]:
    """fp32 first, then what the device computes natively in lower precision."""
    if device.type == "cuda":
        return ["fp32"] + (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["fp16"]
    # fp16 autocast on a CPU is neither supported by every kernel nor faster; int8 is dynamic quantisation of
    # the encoder's linear layers, which integer units (VNNI, AVX2) run where bf16 has no units.
    return ["fp32", "bf16"] + (["int8"] if int8_supported() else [])


@dataclass
class PrecisionChoice:
    """The decision and what it rests on; ``/info`` shows it."""

    chosen: str
    reason: str
    encoder_ms: Dict[str, float] = field(default_factory=dict)  # the encoder's blocks, from one block of each kind
    mean_mask_iou: Dict[str, float] = field(default_factory=dict)  # against fp32 on the probe
    device: str = ""
    torch: str = ""
    checkpoint_xxh128: str = ""
    measured_at: str = ""
    from_cache: bool = False

    def to_dict(self) -> Dict:
        return asdict(self)


class PrecisionProbe(Protocol):
    """The two measurements a decision needs (a test double can stand in for the model)."""

    def block_seconds(self, precision: str) -> float:
        """Seconds for the encoder's blocks in ``precision`` (an estimate is enough to rank precisions)."""

    def mask_iou(self, precision: str) -> float:
        """Mean mask IoU of ``precision``'s probe masks against fp32's."""


def decide(candidates: Sequence[str], probe: PrecisionProbe, min_mask_iou: float = MIN_MASK_IOU) -> PrecisionChoice:
    """The fastest candidate whose masks agree with fp32's; only precisions faster than fp32 are checked."""
    timings: Dict[str, float] = {}
    for precision in candidates:
        try:
            timings[precision] = probe.block_seconds(precision)
        except RuntimeError as error:  # an operator without a kernel in this precision on this device
            if precision == "fp32":
                raise
            logger.warning("Cannot run the encoder in %s here (%s): not a candidate", precision, error)
    agreement: Dict[str, float] = {}
    chosen, reason = "fp32", "fp32 is the fastest precision here"
    for precision in sorted(timings, key=lambda p: timings[p]):
        if precision == "fp32":
            break
        try:
            agreement[precision] = probe.mask_iou(precision)
        except RuntimeError as error:
            logger.warning("Cannot check %s's masks here (%s): not used", precision, error)
            agreement[precision] = 0.0
            continue
        if agreement[precision] >= min_mask_iou:
            speedup = timings["fp32"] / timings[precision]
            chosen = precision
            reason = f"{precision} is {speedup:.1f}× faster than fp32 and its masks agree (mean IoU {agreement[precision]:.3f})"
            break
        logger.warning("%s is faster but its masks differ from fp32's (mean IoU %.3f < %.2f): not used",
                       precision, agreement[precision], min_mask_iou)
    if chosen == "fp32" and agreement:
        reason = f"faster precisions ({', '.join(agreement)}) gave masks that differ from fp32's"
    return PrecisionChoice(
        chosen=chosen, reason=reason, encoder_ms={p: round(1000 * s, 1) for p, s in timings.items()},
        mean_mask_iou={p: round(v, 4) for p, v in agreement.items()},
    )


def probe_slice(size: int = 256, seed: int = 0) -> np.ndarray:
    """A fixed synthetic slice (H×W×3 uint8): a bright body with darker and brighter organs, and noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] / size
    image = np.full((size, size), 20.0)
    image[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.38) ** 2 <= 1] = 110
    for (r, c, a, b, value) in ((0.4, 0.35, 0.12, 0.09, 180), (0.62, 0.6, 0.08, 0.14, 60), (0.35, 0.66, 0.05, 0.05, 240)):
        image[((rows - r) / a) ** 2 + ((cols - c) / b) ** 2 <= 1] = value
    image += rng.normal(0, 6, image.shape)
    grey = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def probe_prompts(size: int = 256) -> List[Tuple[Optional[np.ndarray], Optional[np.ndarray]]]:
    """Point prompts on a 4×4 grid and three boxes, as (points_xy, box_xyxy)."""
    prompts: List[Tuple[Optional[np.ndarray], Optional[np.ndarray]]] = []
    for y in np.linspace(0.2, 0.8, 4) * size:
        for x in np.linspace(0.2, 0.8, 4) * size:
            prompts.append((np.array([[x, y]]), None))
    for box in ((60, 70, 130, 140), (120, 130, 190, 190), (150, 70, 190, 110)):
        prompts.append((None, np.array(box, dtype=float)))
    return prompts


class ModelPrecisionProbe:
    """:class:`PrecisionProbe` on the loaded network: block timings and probe masks."""

    def __init__(self, sam: Sam, device: torch.device, repeats: int = 1, timer: Callable[[], float] = time.perf_counter) -> None:
        self.sam = sam
        self.device = device
        self.repeats = repeats
        self.timer = timer
        self._reference: Optional[List[np.ndarray]] = None
        self._seconds: Dict[str, float] = {}

    def _predictor(self, precision: str) -> PromptPredictor:
        return PromptPredictor(self.sam, self.device, precision)

    @torch.inference_mode()
    def block_seconds(self, precision: str) -> float:
        """The encoder's blocks, estimated from one block of each kind (windowed, global) times its count.

        An autocast precision whose matrix products alone run more than ``SCREEN_RATIO`` times slower than
        fp32's (bf16 on a CPU without bf16 units: ~500×) is not timed block by block, which would take
        many minutes for ViT-B: its estimate is fp32's time by that ratio, enough to rank it last."""
        if precision in self._seconds:
            return self._seconds[precision]
        if precision in AUTOCAST_DTYPES:
            ratio = self._matmul_seconds(AUTOCAST_DTYPES[precision]) / self._matmul_seconds(torch.float32)
            if ratio > SCREEN_RATIO:
                logger.info("%s matrix products run %.0f× slower than fp32 here: not timed further", precision, ratio)
                self._seconds[precision] = self.block_seconds("fp32") * ratio
                return self._seconds[precision]
        self._seconds[precision] = self._time_blocks(precision)
        return self._seconds[precision]

    def _matmul_seconds(self, dtype: torch.dtype) -> float:
        """One (64 × C)·(C × 4C) product, the shape of an MLP layer on a few tokens, after a warm-up."""
        width = self.sam.image_encoder.neck[0].in_channels
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(64, width, generator=generator).to(self.device, dtype)
        b = torch.randn(width, 4 * width, generator=generator).to(self.device, dtype)
        a @ b
        times = []
        for _ in range(3):
            self._synchronize()
            started = self.timer()
            a @ b
            self._synchronize()
            times.append(self.timer() - started)
        return max(min(times), 1e-9)

    def _time_blocks(self, precision: str) -> float:
        predictor = self._predictor(precision)  # moves the network to the device
        encoder = predictor.encoder  # the module that embeds in this precision (int8: the quantised copy)
        side = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
        # A generator of its own: measuring must not move the global random state training runs on.
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randn(1, side, side, encoder.neck[0].in_channels, generator=generator).to(self.device)
        kinds: Dict[bool, List] = {}
        for block in encoder.blocks:
            kinds.setdefault(getattr(block, "window_size", 0) == 0, []).append(block)
        total = 0.0
        with predictor._autocast():
            for blocks in kinds.values():
                block = blocks[0]
                block(tokens)  # warm-up: kernels chosen, caches filled
                times = []
                for _ in range(self.repeats):
                    self._synchronize()
                    started = self.timer()
                    block(tokens)
                    self._synchronize()
                    times.append(self.timer() - started)
                total += float(np.median(times)) * len(blocks)
        return total

    def mask_iou(self, precision: str) -> float:
        if self._reference is None:
            self._reference = self._masks("fp32")
        ious = []
        for ours, reference in zip(self._masks(precision), self._reference):
            union = np.logical_or(ours, reference).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(ours, reference).sum() / union))
        return float(np.mean(ious))

    def _masks(self, precision: str) -> List[np.ndarray]:
        embedding = self._predictor(precision).encode(probe_slice())
        decoder = self._predictor("fp32")  # the decoder always runs in fp32: only the embedding differs
        masks = []
        for points, box in probe_prompts():
            labels = None if points is None else np.ones(len(points), dtype=int)
            masks.append(decoder.predict(embedding, points, labels, box).mask)
        return masks

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class PrecisionChoices:
    """Decisions remembered on disk, one JSON file per (machine, torch version, checkpoint, variant)."""

    def __init__(self, folder: Optional[Path]) -> None:
        self.folder = Path(folder) if folder is not None else None

    @staticmethod
    def key(device: str, checkpoint_xxh128: str, variant: str = "") -> str:
        text = json.dumps([device, torch.__version__, checkpoint_xxh128, variant])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def load(self, key: str) -> Optional[PrecisionChoice]:
        if self.folder is None:
            return None
        try:
            choice = PrecisionChoice(**json.loads((self.folder / f"{key}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None  # none yet, or unreadable: measure again
        if choice.chosen not in PRECISIONS:
            return None
        choice.from_cache = True
        return choice

    @contextlib.contextmanager
    def measuring(self, key: str, timeout_s: float = 900.0) -> Iterator[None]:
        """Held while one process measures ``key``: a second process on this machine (a torchrun rank, a
        replica starting at the same moment) waits and then reads the first one's decision, instead of
        measuring alongside it, which would slow both measurements and could pick differently."""
        if self.folder is None:
            yield
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.folder / f"{key}.lock"), timeout=timeout_s)
            lock.acquire()
        except (OSError, Timeout) as error:  # unwritable cache, or a measurement stuck elsewhere: measure anyway
            logger.warning("Measuring the encoder precision without the lock in %s: %s", self.folder, error)
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def save(self, key: str, choice: PrecisionChoice) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.folder / f"{key}.json", dict(choice.to_dict(), from_cache=False))
        except OSError as error:  # a read-only cache costs a measurement at the next start, nothing else
            logger.warning("Could not remember the precision choice in %s: %s", self.folder, error)


def choose_precision(
    sam: Sam,
    device: torch.device,
    checkpoint_xxh128: str,
    folder: Optional[Path],
    variant: str = "",
    probe: Optional[PrecisionProbe] = None,
) -> PrecisionChoice:
    """The remembered decision for this machine and model, or a new measurement (then remembered)."""
    description = device_description(device)
    candidates = candidate_precisions(device)
    choices = PrecisionChoices(folder)
    # The candidates are part of the key: a release that offers a new precision measures again.
    key = choices.key(description, checkpoint_xxh128, f"{variant};candidates={','.join(candidates)}")
    remembered = choices.load(key)
    if remembered is not None:
        return remembered
    with choices.measuring(key):
        remembered = choices.load(key)  # decided by another process while this one waited
        if remembered is not None:
            return remembered
        started = time.perf_counter()
        choice = decide(candidates, probe or ModelPrecisionProbe(sam, device))
        choice.device, choice.torch, choice.checkpoint_xxh128 = description, torch.__version__, checkpoint_xxh128
        choice.measured_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        logger.info("Encoder precision: %s (%s; measured in %.1f s: encoder ms %s)", choice.chosen, choice.reason,
                    time.perf_counter() - started, choice.encoder_ms)
        choices.save(key, choice)
    return choice
