"""Options of an interactive finetuning round, with micro-sam's training scheme as the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Tuple

from ..options import Options
from .encoder_changes import ENCODER_MODES


@dataclass(frozen=True)
class FinetuneConfig(Options):
    """What a round may be told, from ``--conf finetune_*``, a train request or the command line."""

    LIMITS: ClassVar[Dict[str, Tuple[float, float]]] = {
        "epochs": (0, 1000),
        "learning_rate": (0.0, 1.0),
        "batch_size": (1, 256),
        "sub_iterations": (1, 16),
        "mask_prompt_probability": (0.0, 1.0),
        "box_jitter": (0.0, 0.5),
        "max_slices_per_image": (1, 4096),
        "max_objects_per_slice": (1, 256),
        "val_fraction": (0.0, 0.9),
        "gate_slices_per_image": (1, 4096),
        "axis": (0, 2),
        "seed": (0, 2**31 - 1),
        "lora_rank": (1, 256),
        "encoder_learning_rate": (0.0, 1.0),
    }
    POSITIVE: ClassVar[Tuple[str, ...]] = ("learning_rate", "encoder_learning_rate")
    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {"encoder": ENCODER_MODES}

    epochs: int = 10
    learning_rate: float = 1e-5  # micro-sam's finetuning rate for the decoder of a trained SAM
    batch_size: int = 8  # objects per optimiser step
    sub_iterations: int = 8  # the opening prompt and 7 simulated corrections per object, as micro-sam trains
    mask_prompt_probability: float = 0.5  # corrections also see the previous logits this often
    box_jitter: float = 0.1  # each side of a box prompt moves by up to this share of the box's size
    max_slices_per_image: int = 32  # foreground slices per image, evenly spread
    max_objects_per_slice: int = 8  # the largest components of each slice
    val_fraction: float = 0.2  # images held out for the evaluation gate
    gate_slices_per_image: int = 16  # the gate's evaluation: foreground slices per held-out image
    axis: int = 2  # the slicing the interactive tasks use, so their cached embeddings are reused
    seed: int = 0
    warm_start: bool = True  # continue from the serving version rather than the checkpoint's decoder
    # The image encoder: frozen (cached embeddings; a CPU can train), or lora / full (a GPU's job: every step
    # runs the encoder forward and backward, and the new encoder's embeddings are cached under a key of their own).
    encoder: str = "frozen"
    lora_rank: int = 4
    encoder_learning_rate: float = 1e-5
