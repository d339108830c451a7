"""The image encoder's blocks compiled with ``torch.compile``, in the background, kept only if faster and agreeing.

Compiling ViT-B's blocks takes 30–40 s on a GPU the first time (segment-anything's figure on an H200), so it
never blocks a click: the server starts with the eager encoder and a background thread compiles each transformer
block (the windowed and global kinds are one compiled graph each), warms them up at one slice (a click) and at
the encode batch size (precompute, propagation), then times them against the eager blocks and checks that the
probe's masks agree (mean IoU ≥ 0.98, the precision rule). Only then does the predictor switch, between two
passes. The compiled code is cached on disk (``<cache_dir>/compile``, inductor's cache), so the next start takes
seconds. The state, its reason and the timings are in ``/info`` (``model.compile``) and in the log.

Blocks, not the whole encoder: a background encode pauses between blocks while a click needs the device
(embeddings/prefetch.py), which a single compiled graph could not do.

``compile_encoder``: ``auto`` compiles on a GPU only (on a CPU compiling costs minutes of the cores clicks need,
for a gain measured at none to small), ``on`` everywhere, ``off`` never.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .block_timing import blocks_ms, encoder_tokens
from .precision_choice import MIN_MASK_IOU, probe_prompts, probe_slice
from .predictor import ImageEmbedding, PromptPredictor

logger = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", "on", "off")
Compiler = Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]


def compile_block(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """One transformer block for static shapes (one graph per batch size: a click's 1 and the encode batch)."""
    return torch.compile(block, dynamic=False)


@dataclass
class CompileStatus:
    """What ``/info`` shows: ``off``, ``waiting``, ``compiling``, ``ready`` (in use), ``not used`` (slower or
    disagreeing) or ``failed``; why; and the timings of the eager and compiled blocks, by batch size."""

    state: str
    reason: str
    seconds: Optional[float] = None
    eager_ms: Optional[Dict[int, float]] = None
    compiled_ms: Optional[Dict[int, float]] = None
    mean_mask_iou: Optional[float] = None

    def to_dict(self) -> Dict:
        return asdict(self)


def wants_compile(setting: str, device: torch.device) -> bool:
    if setting not in COMPILE_CHOICES:
        raise ValueError(f"compile_encoder must be one of {COMPILE_CHOICES}, not {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class EncoderCompilation:
    """Compiles ``predictor``'s encoder blocks on a background thread and switches the predictor to them when they
    are ready, faster and agreeing (see the module's docstring)."""

    def __init__(
        self, predictor: PromptPredictor, cache_dir: Optional[Path] = None, compiler: Compiler = compile_block,
        repeats: int = 3, timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.predictor = predictor
        self.cache_dir = cache_dir
        self.compiler = compiler
        self.repeats = repeats
        self.timer = timer
        self.status = CompileStatus("waiting", "compiles in the background once the model is loaded")
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="medicosam-encoder-compile", daemon=True)
            self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Whether compiling has ended (in whatever state) within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is not None and not self._thread.is_alive()

    def run(self) -> None:
        """Compile, warm up, compare, switch. Never raises: a failure leaves the eager encoder, with the reason."""
        started = self.timer()
        try:
            if self.cache_dir is not None:  # inductor's own cache, unless the administrator set one
                Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.cache_dir))
            self.status = CompileStatus("compiling", "compiling the encoder's blocks (clicks use the eager encoder meanwhile)")
            logger.info("Compiling the image encoder in the background; clicks use the eager encoder meanwhile")
            compiled = [self.compiler(block) for block in self.predictor.encoder.blocks]
            sizes = sorted({1, max(1, int(self.predictor.encode_batch_size))})
            eager_ms = {size: self._block_ms(list(self.predictor.encoder.blocks), size) for size in sizes}
            compiled_ms = {size: self._block_ms(compiled, size) for size in sizes}  # the first call compiles
            iou = self._mask_iou(compiled)
            seconds = round(self.timer() - started, 1)
            faster = all(compiled_ms[size] < eager_ms[size] for size in sizes)
            if faster and iou >= MIN_MASK_IOU:
                self.predictor.compiled_sizes.update(sizes)  # in place, as the blocks: shared with finetuned decoders'
                self.predictor.compiled_blocks[:] = compiled
                state, reason = "ready", f"compiled blocks in use (faster at {sizes} slices per pass, masks agree)"
            elif not faster:
                state, reason = "not used", "the compiled blocks are not faster here: the eager encoder stays"
            else:
                state, reason = "not used", f"the compiled blocks' masks differ (mean IoU {iou:.3f} < {MIN_MASK_IOU})"
            self.status = CompileStatus(state, reason, seconds, eager_ms, compiled_ms, round(iou, 4))
            logger.info("Encoder compile %s after %.1f s: %s (block ms eager %s, compiled %s)", state, seconds, reason,
                        eager_ms, compiled_ms)
        except Exception as error:  # a compiler without a C++ toolchain, an unsupported kernel, …: eager it is
            self.status = CompileStatus("failed", f"{type(error).__name__}: {error}"[:500], round(self.timer() - started, 1))
            logger.warning("Could not compile the image encoder (the eager encoder stays): %s", error)

    def _block_ms(self, blocks: Sequence[Callable], batch: int) -> float:
        tokens = encoder_tokens(self.predictor.encoder, batch, self.predictor.device)
        return blocks_ms(blocks, tokens, self.repeats, self.predictor._autocast, self.timer)

    def _mask_iou(self, compiled: Sequence[Callable]) -> float:
        predictor = self.predictor
        image = probe_slice()
        eager = predictor.embed_with_blocks([image], list(predictor.encoder.blocks))
        ours = predictor.embed_with_blocks([image], compiled)
        ious = []
        for points, box in probe_prompts():
            labels = None if points is None else np.ones(len(points), dtype=int)
            a = predictor.predict(ImageEmbedding(eager, image.shape[:2]), points, labels, box).mask
            b = predictor.predict(ImageEmbedding(ours, image.shape[:2]), points, labels, box).mask
            union = np.logical_or(a, b).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
        return float(np.mean(ious))
