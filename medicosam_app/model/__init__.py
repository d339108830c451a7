"""The model: checkpoints (registry, verified download, safe load), the SAM built from their weights, the
predictor that encodes and decodes, the encoder's speed-ups (fused attention, int8, and what is measured at load:
precision, attention form, batch size, float16 embeddings, a background compile)
and the provider that loads it all in the background and reports its status."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .checkpoints import (
    MEDICOSAM_DECODER,
    MEDICOSAM_VIT_B,
    default_cache_dir,
    download_weights,
    file_xxh128,
    resolve_checkpoint,
)

if TYPE_CHECKING:
    from .attention import FusedAttention, use_fused_attention
    from .attention_choice import AttentionChoice, choose_bias_form
    from .batch_choice import BatchChoice, choose_batch_size
    from .compiled_encoder import CompileStatus, EncoderCompilation
    from .int8_encoder import int8_supported
    from .memory_layout import ContiguousPatchEmbed, use_channels_last_decoder, use_contiguous_encoder_tokens
    from .precision_choice import (
        ModelPrecisionProbe,
        PrecisionChoices,
        candidate_precisions,
        choose_precision,
        decide,
        device_description,
        probe_prompts,
        probe_slice,
    )
    from .encoder_input import encoder_input
    from .predictor import (
        ImageEmbedding,
        MaskPrediction,
        PromptPredictor,
        decode_prompts,
        logits_to_image,
        resolve_precision,
    )
    from .provider import ModelProvider
    from .random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint
    from .sam_builder import build_sam, derive_architecture, load_sam, read_state_dict
    from .storage_choice import StorageChoice, choose_storage

__all__ = [
    "MEDICOSAM_DECODER",
    "MEDICOSAM_VIT_B",
    "TINY_SAM",
    "VIT_B_SAM",
    "AttentionChoice",
    "BatchChoice",
    "CompileStatus",
    "ContiguousPatchEmbed",
    "EncoderCompilation",
    "FusedAttention",
    "ImageEmbedding",
    "MaskPrediction",
    "ModelPrecisionProbe",
    "ModelProvider",
    "PrecisionChoices",
    "PromptPredictor",
    "StorageChoice",
    "build_sam",
    "candidate_precisions",
    "choose_batch_size",
    "choose_bias_form",
    "choose_precision",
    "choose_storage",
    "decide",
    "decode_prompts",
    "default_cache_dir",
    "derive_architecture",
    "device_description",
    "download_weights",
    "encoder_input",
    "file_xxh128",
    "int8_supported",
    "load_sam",
    "logits_to_image",
    "probe_prompts",
    "probe_slice",
    "read_state_dict",
    "resolve_checkpoint",
    "resolve_precision",
    "use_channels_last_decoder",
    "use_contiguous_encoder_tokens",
    "use_fused_attention",
    "write_random_checkpoint",
]

# Imported on first use (PEP 562), not here: these modules import torch (most also segment_anything),
# which :mod:`.checkpoints` (the settings read its cache folder) does without.
_LAZY = {
    "AttentionChoice": ".attention_choice",
    "choose_bias_form": ".attention_choice",
    "BatchChoice": ".batch_choice",
    "choose_batch_size": ".batch_choice",
    "CompileStatus": ".compiled_encoder",
    "EncoderCompilation": ".compiled_encoder",
    "StorageChoice": ".storage_choice",
    "choose_storage": ".storage_choice",
    "FusedAttention": ".attention",
    "use_fused_attention": ".attention",
    "int8_supported": ".int8_encoder",
    "ContiguousPatchEmbed": ".memory_layout",
    "use_channels_last_decoder": ".memory_layout",
    "use_contiguous_encoder_tokens": ".memory_layout",
    "ModelPrecisionProbe": ".precision_choice",
    "PrecisionChoices": ".precision_choice",
    "candidate_precisions": ".precision_choice",
    "choose_precision": ".precision_choice",
    "decide": ".precision_choice",
    "device_description": ".precision_choice",
    "probe_prompts": ".precision_choice",
    "probe_slice": ".precision_choice",
    "ImageEmbedding": ".predictor",
    "MaskPrediction": ".predictor",
    "PromptPredictor": ".predictor",
    "decode_prompts": ".predictor",
    "encoder_input": ".encoder_input",
    "logits_to_image": ".predictor",
    "resolve_precision": ".predictor",
    "ModelProvider": ".provider",
    "TINY_SAM": ".random_checkpoint",
    "VIT_B_SAM": ".random_checkpoint",
    "write_random_checkpoint": ".random_checkpoint",
    "build_sam": ".sam_builder",
    "derive_architecture": ".sam_builder",
    "load_sam": ".sam_builder",
    "read_state_dict": ".sam_builder",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
