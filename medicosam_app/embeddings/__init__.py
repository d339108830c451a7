"""Slice embeddings: the slice → RGB preprocessing, their cache key, the memory and disk caches, the embedder
that fills them, the background prefetch and the overnight precompute."""
