"""MedicoSAM Label core: MedicoSAM inference for medical volumes, usable without any server.

Nothing in this package imports monailabel; ``apps/medicosam`` adapts it to MONAI Label. Re-exported here: the
errors, and (on first use) the shared helpers of the top-level modules and :mod:`.services`' builders.
"""

from typing import TYPE_CHECKING

from .lazy_exports import lazy_exports

from .errors import (
    CheckpointError,
    ImageReadError,
    InvalidRequestError,
    MedicoSamError,
    ModelLoadingError,
    ModelUnavailableError,
    PacsError,
    StorageFullError,
    is_storage_full,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .atomic_files import (
        copy_file_atomic,
        fsync_directory,
        make_folders_durably,
        restored_if_failed,
        storage_full_as,
        write_bytes_atomic,
        write_json_atomic,
    )
    from .keyed_locks import KeyedLocks
    from .lru import LRUCache, WhileWaiting
    from .options import Options
    from .request_values import (
        MAX_TEXT_LENGTH,
        optional_text,
        parse_bool,
        parse_choice,
        parse_int,
        parse_json_object,
        parse_number,
        parse_text,
        shortened_repr,
    )
    from .services import (
        build_finetuner,
        build_model_provider,
        build_retrainer,
        build_semantic_segmenter,
        build_slice_embedder,
    )

__all__ = [
    "MAX_TEXT_LENGTH",
    "CheckpointError",
    "ImageReadError",
    "InvalidRequestError",
    "KeyedLocks",
    "LRUCache",
    "MedicoSamError",
    "ModelLoadingError",
    "ModelUnavailableError",
    "Options",
    "PacsError",
    "StorageFullError",
    "WhileWaiting",
    "__version__",
    "build_finetuner",
    "build_model_provider",
    "build_retrainer",
    "build_semantic_segmenter",
    "build_slice_embedder",
    "copy_file_atomic",
    "fsync_directory",
    "is_storage_full",
    "make_folders_durably",
    "optional_text",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_json_object",
    "parse_number",
    "parse_text",
    "restored_if_failed",
    "shortened_repr",
    "storage_full_as",
    "write_bytes_atomic",
    "write_json_atomic",
]

# Imported on first use (PEP 562), not here: every ``import medicosam_app.<anything>`` (``--help`` included) runs
# this file, and :mod:`.services` pulls in torch and the whole model. Only the errors (stdlib alone) load eagerly.
_LAZY = {
    "copy_file_atomic": ".atomic_files",
    "fsync_directory": ".atomic_files",
    "make_folders_durably": ".atomic_files",
    "restored_if_failed": ".atomic_files",
    "storage_full_as": ".atomic_files",
    "write_bytes_atomic": ".atomic_files",
    "write_json_atomic": ".atomic_files",
    "KeyedLocks": ".keyed_locks",
    "LRUCache": ".lru",
    "WhileWaiting": ".lru",
    "Options": ".options",
    "MAX_TEXT_LENGTH": ".request_values",
    "optional_text": ".request_values",
    "parse_bool": ".request_values",
    "parse_choice": ".request_values",
    "parse_int": ".request_values",
    "parse_json_object": ".request_values",
    "parse_number": ".request_values",
    "parse_text": ".request_values",
    "shortened_repr": ".request_values",
    "build_finetuner": ".services",
    "build_model_provider": ".services",
    "build_retrainer": ".services",
    "build_semantic_segmenter": ".services",
    "build_slice_embedder": ".services",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
