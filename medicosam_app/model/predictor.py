"""SAM inference split in its two halves: encode an image once, decode many prompts against it.

Unlike segment-anything's ``SamPredictor`` the embedding is a value the caller owns, so it can be cached
and shared between users, slices and requests.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from ..geometry.coordinates import SamFrame
from .encoder_input import encoder_input
from .int8_encoder import int8_encoder


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder output for one 2D image, with the sizes needed to map prompts and masks."""

    features: torch.Tensor  # (1, C, 64, 64)
    original_size: Tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.features.element_size() * self.features.nelement()


@dataclass(frozen=True)
class MaskPrediction:
    """One mask for one image: full-resolution boolean mask, SAM's 256² logits and its predicted IoU."""

    mask: np.ndarray  # (H, W) bool
    low_res_logits: torch.Tensor  # (1, 256, 256)
    predicted_iou: float


PRECISIONS = ("fp32", "bf16", "fp16", "int8")

# Slices per encoder pass for many slices until the provider measures (model/batch_choice.py): a batch fills a
# GPU; on a CPU one slice already keeps every core busy.
GPU_ENCODE_BATCH = 8


def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """``auto`` (or None) → bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU."""
    if precision in (None, "", "auto"):
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {PRECISIONS}, not {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for GPUs; use bf16, int8 or fp32 on a CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("int8 is dynamic quantisation for CPUs; use bf16 or fp16 on a GPU")
    return precision


class PromptPredictor:
    """Encodes uint8 RGB images and decodes point / box / mask prompts with a SAM network.

    ``precision`` applies to the image encoder only (autocast, or for ``int8`` a dynamically quantised
    copy of the encoder); its output is kept in float32 and the small prompt/mask decoder always runs in
    float32.
    """

    def __init__(
        self, sam: Sam, device: Optional[torch.device] = None, precision: Optional[str] = None,
        decoder_version: Optional[str] = None, encoder_tag: Optional[str] = None,
    ) -> None:
        self.decoder_version = decoder_version  # the interactive finetuning version decoding (None: the checkpoint's)
        # A digest of a finetuned encoder's weights (None: the checkpoint's encoder); its embeddings are cached
        # under it, apart from the checkpoint's.
        self.encoder_tag = encoder_tag
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.sam = sam.to(self.device).eval()
        self.image_size = sam.image_encoder.img_size
        self.precision = resolve_precision(precision, self.device)
        # The module that embeds: the checkpoint's encoder, or its int8 copy (made once, shared).
        self.encoder = int8_encoder(sam.image_encoder) if self.precision == "int8" else sam.image_encoder
        # Slices per encoder pass where many are embedded (the provider measures it on a GPU, or takes the setting).
        self.encode_batch_size = GPU_ENCODE_BATCH if self.device.type == "cuda" else 1
        # Features rounded to float16 values as they are made (model/storage_choice.py): half the disk, same masks.
        self.half_embeddings = False
        # The encoder's blocks compiled (model/compiled_encoder.py fills the list when they are ready and faster);
        # empty: the eager blocks. A list shared with the predictors of finetuned decoders on the same encoder.
        self.compiled_blocks: List[Callable[[torch.Tensor], torch.Tensor]] = []
        # The batch sizes they were compiled for: another size would compile again (seconds to minutes) on a
        # request's thread, so it runs the eager blocks instead. Shared like the list.
        self.compiled_sizes: Set[int] = set()
        # The decoder as CUDA graphs per prompt shape (model/decoder_graphs.py; the provider sets it on a GPU).
        self.decoder_graphs: Optional[Any] = None
        with torch.inference_mode():  # depends on the weights only: compute once, not per click
            self._dense_pe = self.sam.prompt_encoder.get_dense_pe()

    @property
    def embedding_kind(self) -> str:
        """What, besides the checkpoint, decides the embeddings' values: the precision, and float16 rounding."""
        return f"{self.precision}-half" if self.half_embeddings else self.precision

    @property
    def dense_pe(self) -> torch.Tensor:
        """The prompt encoder's positional encoding of the 64×64 image grid (1, C, 64, 64)."""
        return self._dense_pe

    def frame(self, original_size: Tuple[int, int]) -> SamFrame:
        return SamFrame(tuple(original_size), self.image_size)  # type: ignore[arg-type]

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        """Embed an HxWx3 uint8 image (resize longest side, normalise, pad, encode)."""
        return self.encode_batch([rgb])[0]

    @torch.inference_mode()
    def encode_batch(
        self, images: Sequence[np.ndarray], between_blocks: Optional[Callable[[], None]] = None
    ) -> List[ImageEmbedding]:
        """Embed several HxWx3 uint8 images of one size in one encoder pass (GPUs gain from batches).

        ``between_blocks`` is called before each transformer block: background work uses it to pause
        while a click needs the processor.
        """
        if not images:
            return []
        for rgb in images:
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
            if rgb.shape != images[0].shape:
                raise ValueError("a batch needs images of one size")
        with self._autocast():
            features = self._image_encoder(encoder_input(self.sam, images, self.device), between_blocks)
        features = features.half().float() if self.half_embeddings else features.float()
        size = tuple(images[0].shape[:2])
        return [ImageEmbedding(features=features[i : i + 1].clone(), original_size=size) for i in range(len(images))]  # type: ignore[arg-type]

    def _image_encoder(
        self, x: torch.Tensor, between_blocks: Optional[Callable[[], None]], blocks: Optional[Sequence[Callable]] = None,
    ) -> torch.Tensor:
        """The encoder on the (B, 3, S, S) input, with ``blocks`` in place of its own (default: the compiled ones
        when ready and compiled for B slices, else its own)."""
        encoder = self.encoder
        if blocks is None and x.shape[0] in self.compiled_sizes:
            blocks = self.compiled_blocks or None
        if between_blocks is None and blocks is None:
            return encoder(x)
        # ImageEncoderViT.forward, one block at a time.
        x = encoder.patch_embed(x)
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in blocks or encoder.blocks:
            if between_blocks is not None:
                between_blocks()
            x = block(x)
        return encoder.neck(x.permute(0, 3, 1, 2))

    @torch.inference_mode()
    def embed_with_blocks(self, images: Sequence[np.ndarray], blocks: Sequence[Callable]) -> torch.Tensor:
        """The (B, C, 64, 64) features of ``images`` with ``blocks`` in place of the encoder's (to compare them)."""
        with self._autocast():
            return self._image_encoder(encoder_input(self.sam, images, self.device), None, blocks).float()

    def _autocast(self):
        if self.precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def predict(
        self,
        embedding: ImageEmbedding,
        points_xy: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box_xyxy: Optional[np.ndarray] = None,
        mask_logits: Optional[torch.Tensor] = None,
        multimask: Optional[bool] = None,
    ) -> MaskPrediction:
        """Decode prompts given in pixel coordinates of the original image.

        ``multimask=None`` applies SAM's rule: ask for three masks and keep the one with the best
        predicted IoU when the only prompt is a single point, since a lone click is ambiguous.
        """
        low_res, iou = decode_prompts(
            self.sam, embedding.features.to(self.device), self._dense_pe, embedding.original_size,
            points_xy, point_labels, box_xyxy, mask_logits, multimask,
            decoder=self.decoder_graphs.decode if self.decoder_graphs is not None else None,
        )
        best = int(torch.argmax(iou[0])) if low_res.shape[1] > 1 else 0
        low_res = low_res[:, best : best + 1]
        full = self.sam.postprocess_masks(low_res, self.frame(embedding.original_size).input_size, embedding.original_size)
        return MaskPrediction(
            mask=(full[0, 0] > self.sam.mask_threshold).cpu().numpy(),
            low_res_logits=low_res[0].detach().cpu().clone(),  # its own 256 kB, not a view on all three masks
            predicted_iou=float(iou[0, best]),
        )

    @torch.inference_mode()
    def decode_points(self, embedding: ImageEmbedding, points_xy: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """One foreground point per prompt, many prompts in one decoder pass, three masks each.

        ``points_xy`` is (B, 2) in pixels of the original image. Returns SAM's low-resolution logits
        (B, 3, 256, 256) and predicted IoUs (B, 3), on this predictor's device; :meth:`upscale` turns
        the logits into the image's size. Grid prompting (the automatic mask generator) uses this.
        """
        frame = self.frame(embedding.original_size)
        xy = np.asarray(points_xy, dtype=float).reshape(-1, 2)
        coords = torch.as_tensor(frame.points(xy), dtype=torch.float, device=self.device)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=self.device)
        sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=embedding.features.to(self.device),
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        return low_res, iou

    @torch.inference_mode()
    def upscale(self, low_res_logits: torch.Tensor, original_size: Tuple[int, int]) -> torch.Tensor:
        """SAM's (B, M, 256, 256) logits → (B, M, H, W) logits of the original image (see :func:`logits_to_image`)."""
        return logits_to_image(low_res_logits, self.image_size, original_size)


def decode_prompts(
    sam: Sam,
    features: torch.Tensor,
    dense_pe: torch.Tensor,
    original_size: Tuple[int, int],
    points_xy: Optional[np.ndarray] = None,
    point_labels: Optional[np.ndarray] = None,
    box_xyxy: Optional[np.ndarray] = None,
    mask_logits: Optional[torch.Tensor] = None,
    multimask: Optional[bool] = None,
    decoder: Optional[Callable[..., Tuple[torch.Tensor, torch.Tensor]]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder for one image's prompts in pixels of the original image: SAM's
    (1, M, 256, 256) logits and (1, M) predicted IoUs, M = 3 with ``multimask`` else 1.

    Differentiable (no inference mode of its own), so finetuning runs the same code the server does.
    ``multimask=None`` applies SAM's rule: three masks when the only prompt is a single point. ``decoder``: runs
    the two on the prompt tensors instead (the CUDA graphs of model/decoder_graphs.py).
    """
    device = features.device
    frame = SamFrame(tuple(original_size), sam.image_encoder.img_size)  # type: ignore[arg-type]
    has_points = points_xy is not None and len(points_xy) > 0
    if multimask is None:
        multimask = has_points and len(points_xy) == 1 and box_xyxy is None and mask_logits is None
    points = None
    if has_points:
        coords = torch.as_tensor(frame.points(points_xy), dtype=torch.float, device=device)[None]
        labels = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=device)[None]
        points = (coords, labels)
    boxes = None
    if box_xyxy is not None:
        boxes = torch.as_tensor(frame.boxes(box_xyxy), dtype=torch.float, device=device)
    masks = mask_logits.to(device)[None] if mask_logits is not None else None
    if decoder is not None:
        return decoder(features, *(points or (None, None)), boxes, masks, bool(multimask))
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return sam.mask_decoder(
        image_embeddings=features,
        image_pe=dense_pe,
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=bool(multimask),
    )


def logits_to_image(low_res_logits: torch.Tensor, image_size: int, original_size: Tuple[int, int]) -> torch.Tensor:
    """SAM's (..., 256, 256) logits → (..., H, W) logits of the original image (differentiable).

    The padding is cut at low resolution and the rest resized once, straight to the image's size:
    SAM's own ``postprocess_masks`` goes through the padded 1024² frame, which for the hundreds of masks
    of a point grid costs more than the decoder itself. Masks differ from it by interpolation rounding
    along edges only."""
    frame = SamFrame(tuple(original_size), image_size)  # type: ignore[arg-type]
    low = low_res_logits.shape[-1]
    rows, cols = (math.ceil(n * low / image_size) for n in frame.input_size)
    valid = low_res_logits[..., :rows, :cols]
    flat = valid.flatten(0, -3)[:, None]
    resized = F.interpolate(flat, size=tuple(original_size), mode="bilinear", align_corners=False)
    return resized.reshape(*low_res_logits.shape[:-2], *original_size)
