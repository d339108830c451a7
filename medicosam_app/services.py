"""Builds the long-lived objects from :class:`Settings`, the same way for the server and the command line."""

from __future__ import annotations

import dataclasses
from typing import Optional

from .embeddings.disk_store import EmbeddingDiskStore
from .embeddings.memory_cache import EmbeddingCache
from .embeddings.prefetch import Prefetcher
from .embeddings.slice_embedder import SliceEmbedder
from .finetune.rounds import InteractiveFinetuner
from .finetune.serving import ServedDecoder
from .geometry.volume_cache import VolumeCache
from .model.checkpoints import MEDICOSAM_VIT_B
from .model.provider import ModelProvider
from .runtime.heap import keep_large_buffers
from .semantic.retrain import SemanticRetrainer
from .semantic.segmenter import SemanticSegmenter
from .learning.versions import VersionStore
from .settings import Settings


def build_model_provider(settings: Settings) -> ModelProvider:
    if settings.malloc_tuning:  # before the model's threads start: see runtime/heap.py
        keep_large_buffers()
    weights = MEDICOSAM_VIT_B
    if settings.weights_url:  # a hospital's own mirror: same file, same hash
        weights = dataclasses.replace(weights, url=settings.weights_url)
    return ModelProvider(
        checkpoint=settings.checkpoint,
        weights=weights,
        cache_dir=settings.cache_dir,
        allow_download=settings.allow_download,
        device=settings.device,
        precision=settings.precision,
        fused_attention=settings.fused_attention,
        served_decoder=ServedDecoder(build_interactive_store(settings)),
        encode_batch_size=settings.encode_batch_size,
        embedding_storage=settings.embedding_storage,
        compile_encoder=settings.compile_encoder,
        decoder_cuda_graphs=settings.decoder_cuda_graphs,
    )


def build_interactive_store(settings: Settings) -> VersionStore:
    return VersionStore(settings.interactive_dir, what="interactive model")


def build_finetuner(settings: Settings, models: ModelProvider, embedder: SliceEmbedder) -> InteractiveFinetuner:
    return InteractiveFinetuner(
        build_interactive_store(settings), embedder, models, settings.classes.label_names(), device=settings.device
    )


def build_embedding_cache(settings: Settings, memory_mb: Optional[int] = None) -> EmbeddingCache:
    disk = None
    if settings.embedding_disk_dir is not None:
        disk = EmbeddingDiskStore(settings.embedding_disk_dir, settings.embedding_disk_mb << 20, background=True)
    memory = settings.embedding_cache_mb if memory_mb is None else memory_mb
    return EmbeddingCache(memory << 20, disk=disk)


def build_slice_embedder(
    settings: Settings, models: ModelProvider, prefetcher: Optional[Prefetcher] = None, memory_mb: Optional[int] = None
) -> SliceEmbedder:
    return SliceEmbedder(
        models,
        intensity=settings.intensity,
        embeddings=build_embedding_cache(settings, memory_mb),
        prefetcher=prefetcher,
        prefetch_radius=settings.prefetch_radius,
    )


def build_version_store(settings: Settings) -> VersionStore:
    return VersionStore(settings.semantic_dir)


def build_semantic_segmenter(
    settings: Settings, embedder: SliceEmbedder, volumes: Optional[VolumeCache] = None
) -> SemanticSegmenter:
    return SemanticSegmenter(
        build_version_store(settings), embedder, volumes, batch_size=settings.semantic_batch_size,
        axis=settings.training.axis, downscale=settings.semantic_downscale,
    )


def build_retrainer(settings: Settings, models: ModelProvider, embedder: SliceEmbedder) -> SemanticRetrainer:
    return SemanticRetrainer(
        build_version_store(settings),
        embedder,
        models,
        settings.classes,
        device=settings.device,
        released_decoder=settings.released_decoder,
        cache_dir=settings.cache_dir,
    )
