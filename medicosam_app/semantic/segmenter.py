"""Automatic segmentation of whole volumes with the served semantic decoder, slice by slice in batches,
on the same cached embeddings the interactive tasks use. A newly promoted version is picked up at the next
request, without a restart."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..runtime.cancellation import raise_if_cancelled
from ..embeddings.slice_embedder import SliceEmbedder
from ..errors import InvalidRequestError
from ..geometry.coordinates import SliceView
from ..geometry.volume import Volume
from ..geometry.volume_cache import VolumeCache
from .classes import SemanticClasses
from .network import DOWNSCALES, DecoderShape, UNETRDecoder, logits_to_slice
from .slices import input_size
from ..learning.versions import VersionStore, trained_on_checkpoint

logger = logging.getLogger(__name__)


class NoSemanticModelError(InvalidRequestError):
    """No version has been promoted yet: there is nothing to segment with."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409)


@dataclass(frozen=True)
class ServedDecoder:
    version: str
    decoder: UNETRDecoder
    classes: SemanticClasses
    metadata: Dict


@dataclass
class SemanticResult:
    label: np.ndarray  # label values, in the image's voxel order
    volume: Volume
    version: str
    classes: SemanticClasses
    latencies: Dict[str, float] = field(default_factory=dict)
    confidence: Optional[np.ndarray] = None  # the chosen class's probability per voxel (float16), when asked for
    axis: int = 2


class SemanticSegmenter:
    """Segments volumes with whichever version :class:`VersionStore` says is served."""

    def __init__(
        self,
        store: VersionStore,
        embedder: SliceEmbedder,
        volumes: Optional[VolumeCache] = None,
        batch_size: int = 8,
        axis: int = 2,
        downscale: int = 1,
    ) -> None:
        self.store = store
        # The checkpoint's encoder, even while an interactive version with an encoder of its own is served:
        # the decoder learned on its features.
        self.embedder = embedder.using_checkpoint_encoder()
        self.volumes = volumes or VolumeCache(0)
        self.batch_size = max(1, int(batch_size))
        self.axis = axis
        if downscale not in DOWNSCALES:
            raise InvalidRequestError(f"semantic_downscale must be one of {DOWNSCALES}, not {downscale}.")
        self.downscale = downscale  # 2 or 4: the light path (decode at half or quarter size, resize the logits)
        self._served: Optional[ServedDecoder] = None
        self._token: Tuple[Optional[str], int] = (None, -1)
        self._lock = threading.Lock()

    def served(self) -> ServedDecoder:
        """The promoted decoder, reloaded when the serving pointer changed since the last call."""
        token = self.store.serving_token()
        with self._lock:
            if token != self._token or self._served is None:
                version = token[0]
                if version is None:
                    raise NoSemanticModelError(
                        "No semantic model has been trained yet. Save final labels for a few images (Slicer: "
                        "'Submit Label'), then train it: POST /train/medicosam_semantic, or wait for the automatic "
                        "retraining, or run 'python -m medicosam_app retrain --studies DIR'."
                    )
                if self._served is None or self._served.version != version:
                    self._served = self._load(version)
                    logger.info("Serving semantic decoder %s", version)
                self._token = token
            return self._served

    def _load(self, version: str) -> ServedDecoder:
        meta = self.store.metadata(version)
        self.embedder.predictor()  # the checkpoint's: loaded now in a tool or a scoring process, 503 while loading
        checkpoint = self.embedder.models.checkpoint_hash
        if not trained_on_checkpoint(meta, checkpoint):
            raise NoSemanticModelError(
                f"Semantic model {version} was trained on another encoder ({meta.get('encoder_key')}, now {checkpoint}); "
                "retrain it for the loaded MedicoSAM checkpoint, or roll back to a matching version."
            )
        decoder = UNETRDecoder(DecoderShape.from_dict(meta["decoder_shape"]))
        decoder.load_state_dict(self.store.load_state(version))
        device = self.embedder.predictor().device
        return ServedDecoder(version, decoder.to(device).eval(), SemanticClasses.from_mapping(meta["labels"]), meta)

    def segment(self, image_path: str, with_confidence: bool = False) -> SemanticResult:
        """The whole volume; ``with_confidence`` also keeps the winning class's probability per voxel."""
        started = time.perf_counter()
        served = self.served()
        volume = self.volumes.get(image_path)
        loaded = time.perf_counter()
        view = volume.configured_view(self.axis)
        indices = np.zeros(volume.shape, dtype=np.uint8)
        confidence = np.zeros(volume.shape, dtype=np.float16) if with_confidence else None
        # Slices are encoded in the encoder's batches (larger than the decoder's on a GPU, see model/batch_choice.py)
        encode_batch = max(self.batch_size, self.embedder.batch_size())
        for start in range(0, view.num_slices, self.batch_size):
            raise_if_cancelled()  # the client may have gone: a whole volume takes minutes on a CPU
            self.embedder.encode_into_cache(volume, view, range(start, min(start + encode_batch, view.num_slices)))
            batch = list(range(start, min(start + self.batch_size, view.num_slices)))
            probabilities = self.probabilities(served, volume, view, batch)
            for index, probs in zip(batch, probabilities):
                view.paste(probs.argmax(0).astype(np.uint8), indices, index)
                if confidence is not None:
                    view.paste(probs.max(0).astype(np.float16), confidence, index)
        done = time.perf_counter()
        return SemanticResult(
            label=served.classes.to_values(indices),
            volume=volume,
            version=served.version,
            classes=served.classes,
            latencies={"load_image": round(loaded - started, 4), "segment": round(done - loaded, 4), "slices": view.num_slices},
            confidence=confidence,
            axis=self.axis,
        )

    @torch.inference_mode()
    def probabilities(self, served: ServedDecoder, volume: Volume, view: SliceView, indices: Sequence[int]) -> np.ndarray:
        """Softmax class probabilities (len(indices), N, H, W) of display-orientation slices."""
        self.embedder.encode_into_cache(volume, view, indices)
        features = torch.cat([self.embedder.embedding(volume, view, i)[0].features for i in indices])
        decoder = served.decoder
        logits = decoder(features.to(next(decoder.parameters()).device), self.downscale)
        size = view.pixel_shape
        framed = tuple(math.ceil(n / self.downscale) for n in input_size(size, decoder.shape.image_size))
        logits = logits_to_slice(logits, framed, size)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
