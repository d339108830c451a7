"""Builds the long-lived objects from :class:`Settings`, the same way for the server and the command line."""

from __future__ import annotations

from typing import Optional

from .embedding_store import EmbeddingDiskStore
from .embeddings import EmbeddingCache
from .model_provider import ModelProvider
from .prefetch import Prefetcher
from .settings import Settings
from .slice_embedder import SliceEmbedder


def build_model_provider(settings: Settings) -> ModelProvider:
    return ModelProvider(
        checkpoint=settings.checkpoint,
        cache_dir=settings.cache_dir,
        allow_download=settings.allow_download,
        device=settings.device,
        precision=settings.precision,
        fused_attention=settings.fused_attention,
    )


def build_embedding_cache(settings: Settings, memory_mb: Optional[int] = None) -> EmbeddingCache:
    disk = None
    if settings.embedding_disk_dir is not None:
        disk = EmbeddingDiskStore(settings.embedding_disk_dir, settings.embedding_disk_mb << 20)
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
