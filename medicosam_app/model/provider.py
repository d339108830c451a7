"""Owns the loaded MedicoSAM network: finds and loads it in the background, and reports why it cannot.

A server must start even when the weights are missing (an offline hospital machine): the status then
says why, and every request for the model gets the same explanation. While a background load or download
runs, requests are told so at once (:class:`ModelLoadingError`) instead of waiting minutes for it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..errors import CheckpointError, MedicoSamError, ModelLoadingError, ModelUnavailableError
from .attention import use_fused_attention
from .attention_choice import AttentionChoice, choose_bias_form
from .batch_choice import BatchChoice, choose_batch_size
from .compiled_encoder import EncoderCompilation, wants_compile
from .decoder_graphs import DecoderGraphs, wants_graphs
from .checkpoints import MEDICOSAM_VIT_B, PublishedWeights, ResolvedCheckpoint, default_cache_dir, resolve_checkpoint
from .decoder_choice import DecoderChoice
from .memory_layout import use_channels_last_decoder, use_contiguous_encoder_tokens
from .precision_choice import PrecisionChoice, choose_precision
from .storage_choice import StorageChoice, choose_storage
from .predictor import PromptPredictor
from .sam_builder import SamArchitecture, load_sam

logger = logging.getLogger(__name__)


class ModelProvider:
    """Resolves the checkpoint, builds the predictor and keeps a status for ``/info``."""

    def __init__(
        self,
        checkpoint: Optional[str] = None,
        cache_dir: Optional[str] = None,
        allow_download: bool = True,
        device: Optional[str] = None,
        weights: PublishedWeights = MEDICOSAM_VIT_B,
        precision: Optional[str] = None,
        fused_attention: bool = True,
        served_decoder: Optional[DecoderChoice] = None,
        encode_batch_size: Optional[int] = None,
        embedding_storage: str = "auto",
        compile_encoder: str = "auto",
        decoder_cuda_graphs: str = "auto",
    ) -> None:
        """``served_decoder``: chooses a finetuned decoder version per request (the interactive model's versions,
        :class:`medicosam_app.finetune.serving.ServedDecoder`); None serves the checkpoint's own decoder.
        ``encode_batch_size``, ``embedding_storage``, ``compile_encoder``, ``decoder_cuda_graphs``: the settings of
        the same names, with their defaults, so a provider built here embeds exactly as the server does."""
        self._checkpoint = checkpoint
        self._cache_dir = cache_dir
        self._allow_download = allow_download
        self._device = device
        self._weights = weights
        self._precision = precision
        self._fused_attention = fused_attention
        self._loaded = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._predictor: Optional[PromptPredictor] = None
        self._resolved: Optional[ResolvedCheckpoint] = None
        self._architecture: Optional[SamArchitecture] = None
        self._error: Optional[str] = None
        self._phase = "waiting to start"
        self._precision_choice: Optional[PrecisionChoice] = None
        self._served_decoder = served_decoder
        self._encode_batch_size = encode_batch_size  # None: measured (model/batch_choice.py)
        self._batch_choice: Optional[BatchChoice] = None
        self._embedding_storage = embedding_storage  # auto | fp16 | fp32 (model/storage_choice.py)
        self._storage_choice: Optional[StorageChoice] = None
        self._compile_encoder = compile_encoder  # auto | on | off (model/compiled_encoder.py)
        self._compilation: Optional[EncoderCompilation] = None
        self._attention_choice: Optional[AttentionChoice] = None
        self._decoder_cuda_graphs = decoder_cuda_graphs  # auto | off (model/decoder_graphs.py)

    def start_loading(self) -> None:
        """Load in a background thread (a download may take minutes); safe to call twice."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.load, name="medicosam-model-loader", daemon=True)
            self._thread.start()

    def load(self) -> None:
        """Resolve and load now, recording success or the reason for failure. Never raises."""
        try:
            self._phase = "finding and verifying the checkpoint"
            resolved = resolve_checkpoint(
                self._weights, self._checkpoint, self._cache_dir, self._allow_download, on_progress=self._downloading
            )
            self._phase = f"loading {Path(resolved.path).name}"
            sam, architecture = load_sam(resolved.path)
            if self._fused_attention:
                use_fused_attention(sam)
            use_channels_last_decoder(sam)
            use_contiguous_encoder_tokens(sam)
            device = torch.device(self._device or ("cuda" if torch.cuda.is_available() else "cpu"))
            precision = self._precision
            if precision == "auto":
                self._phase = "measuring which encoder precision is fastest here (once per machine and model)"
                self._precision_choice = choose_precision(
                    sam, device, resolved.xxh128, Path(self._cache_dir or default_cache_dir()) / "precision",
                    variant=f"fused_attention={self._fused_attention}",
                )
                precision = self._precision_choice.chosen
            predictor = PromptPredictor(sam, device, precision)
            self._phase = "choosing the attention kernels' form"
            self._attention_choice = choose_bias_form(predictor)
            if self._encode_batch_size:
                self._batch_choice = BatchChoice(int(self._encode_batch_size), "set by configuration (encode_batch_size)")
            else:
                self._phase = "measuring how many slices one encoder pass should take"
                self._batch_choice = choose_batch_size(predictor)
            predictor.encode_batch_size = self._batch_choice.chosen
            if self._embedding_storage == "auto":
                self._phase = "checking that float16 embeddings give the same masks (once per machine and model)"
            self._storage_choice = choose_storage(
                predictor, self._embedding_storage, resolved.xxh128, Path(self._cache_dir or default_cache_dir()) / "embedding_storage")
            predictor.half_embeddings = self._storage_choice.half
            if wants_graphs(self._decoder_cuda_graphs, device):
                predictor.decoder_graphs = DecoderGraphs(predictor.sam, predictor.dense_pe)
            self._predictor = predictor
            if wants_compile(self._compile_encoder, device):
                self._compilation = EncoderCompilation(predictor, Path(self._cache_dir or default_cache_dir()) / "compile")
                self._compilation.start()
            self._resolved, self._architecture = resolved, architecture
            logger.info("MedicoSAM %s loaded from %s on %s", architecture.name, resolved.path, self._predictor.device)
        except (MedicoSamError, OSError, ValueError, RuntimeError) as error:  # e.g. a forced precision without kernels
            self._error = str(error)
            logger.error("MedicoSAM model unavailable: %s", error)
        finally:
            self._loaded.set()

    def _downloading(self, done: int, total: Optional[int]) -> None:
        share = f", {100 * done / total:.0f} %" if total else ""
        self._phase = f"downloading {self._weights.filename} ({done / 2**20:.0f} MiB{share})"

    def predictor(self, timeout: Optional[float] = None) -> PromptPredictor:
        """The predictor to serve: the checkpoint's encoder with the serving interactive decoder version
        (the checkpoint's own decoder before any promotion). Raises with the reason when there is none."""
        base = self.base_predictor(timeout)
        if self._served_decoder is None:
            return base
        return self._served_decoder.predictor(base, self.checkpoint_hash)

    @property
    def interactive_version(self) -> Optional[str]:
        """The interactive decoder version the last request used (None: the checkpoint's own)."""
        return self._served_decoder.version if self._served_decoder is not None else None

    def base_predictor(self, timeout: Optional[float] = None) -> PromptPredictor:
        """The checkpoint as loaded, with its own decoder; raises with the reason when there is none.

        Without a background load (command-line tools) the model is loaded now. While a background load
        runs (the server), this waits at most ``timeout`` seconds (default: not at all) and then raises
        :class:`ModelLoadingError`, so a click during a download is answered 503 at once.
        """
        if self._thread is None and not self._loaded.is_set():
            self.load()
        if not self._loaded.wait(timeout or 0):
            raise ModelLoadingError(f"The MedicoSAM model is loading ({self._phase}); try again in a moment.")
        if self._predictor is None:
            raise ModelUnavailableError(self._error or "The MedicoSAM model is not loaded.")
        return self._predictor

    @property
    def compilation(self) -> Optional[EncoderCompilation]:
        """The background compile of the encoder (None when ``compile_encoder`` does not ask for one here)."""
        return self._compilation

    @property
    def checkpoint_hash(self) -> str:
        """xxh128 of the loaded checkpoint (part of every embedding cache key)."""
        if self._resolved is None:
            raise CheckpointError("no checkpoint loaded")
        return self._resolved.xxh128

    @property
    def encoder_key(self) -> str:
        """Identifies the served encoder's output in embedding cache keys (see :meth:`encoder_key_for`)."""
        return self.encoder_key_for(self.predictor())  # loads now (tools), or raises while a background load runs

    @property
    def checkpoint_encoder_key(self) -> str:
        """The key of the checkpoint's own encoder, whatever interactive version is served (semantic decoder)."""
        return self.encoder_key_for(self.base_predictor())

    def encoder_key_for(self, predictor: PromptPredictor) -> str:
        """Checkpoint hash and precision, plus the digest of a finetuned encoder's change when there is one."""
        return self.encoder_key_of(getattr(predictor, "embedding_kind", predictor.precision), predictor.encoder_tag)

    def encoder_key_of(self, precision: str, encoder_tag: Optional[str] = None) -> str:
        key = f"{self.checkpoint_hash}-{precision}"
        return f"{key}-{encoder_tag}" if encoder_tag else key

    @property
    def status(self) -> Dict[str, Any]:
        """What ``/info`` shows about the model."""
        if not self._loaded.is_set():
            return {"available": False, "state": "loading", "reason": self._phase}
        if self._predictor is None or self._resolved is None or self._architecture is None:
            return {"available": False, "state": "unavailable", "reason": self._error}
        return {
            "available": True,
            "state": "ready",
            "checkpoint": str(Path(self._resolved.path).name),
            "xxh128": self._resolved.xxh128,
            "official": self._resolved.official,
            "warning": self._resolved.warning,
            "source": self._resolved.source,
            "architecture": self._architecture.to_dict(),
            "device": str(self._predictor.device),
            "precision": self._predictor.precision,
            "precision_choice": self._precision_choice.to_dict() if self._precision_choice else {
                "chosen": self._predictor.precision, "reason": "set by configuration (precision auto measures)"
            },
            "fused_attention": self._fused_attention,
            "attention": self._attention_choice.to_dict() if self._attention_choice else None,
            "encode_batch": self._batch_choice.to_dict() if self._batch_choice else None,
            "embedding_storage": self._storage_choice.to_dict() if self._storage_choice else None,
            "decoder_graphs": self._predictor.decoder_graphs.status() if self._predictor.decoder_graphs else {
                "state": "off", "reason": f"decoder_cuda_graphs {self._decoder_cuda_graphs} on {self._predictor.device.type}"},
            "compile": self._compilation.status.to_dict() if self._compilation else {
                "state": "off", "reason": f"compile_encoder {self._compile_encoder} on {self._predictor.device.type}"},
            "interactive_decoder": self._served_decoder.status() if self._served_decoder is not None else {"serving": None},
        }
