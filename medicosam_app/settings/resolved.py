"""The settings the server and the commands use: the configuration keys (:mod:`.keys`) built into typed values,
with the folders that default to places inside ``cache_dir`` worked out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

from ..embeddings.intensity import IntensityPolicy
from ..finetune.config import FinetuneConfig
from ..model.checkpoints import default_cache_dir
from ..semantic.classes import SemanticClasses
from ..semantic.config import TrainingConfig
from .keys import ConfigKeys, ServerKeys, round_options
from .values import DISK_CACHE_OFF


@dataclass(frozen=True)
class Settings:
    """One process's settings (see docs/configuration.md for each key's meaning)."""

    checkpoint: Optional[str]
    cache_dir: Optional[str]
    allow_download: bool
    weights_url: Optional[str]  # a mirror of the published checkpoint (its hash is still checked)
    device: Optional[str]
    intensity: IntensityPolicy
    embedding_cache_mb: int
    volume_cache_mb: int
    embedding_disk_dir: Optional[Path]  # None: no disk cache
    embedding_disk_mb: int
    prefetch_radius: int
    prefetch_quiet_ms: int
    encode_batch_size: Optional[int]  # None: measured on a GPU, 1 on a CPU
    precision: str
    embedding_storage: str  # auto | fp16 | fp32 (model/storage_choice.py)
    compile_encoder: str  # auto | on | off (model/compiled_encoder.py)
    decoder_cuda_graphs: str  # auto | off (model/decoder_graphs.py)
    fused_attention: bool
    malloc_tuning: bool  # keep large tensors in the heap (see runtime/heap.py)
    classes: SemanticClasses  # the semantic model's labels
    semantic_dir: Path  # versions of the semantic decoder
    released_decoder: Optional[str]  # the released UNETR decoder file (else <cache_dir>/vit_b_medicosam_decoder.pt)
    semantic_batch_size: int
    semantic_downscale: int  # 1: the full 1024² decoder; 2 or 4: decode at 512² or 256² and resize (CPU)
    training: TrainingConfig
    retrain_after_labels: int  # 0: off
    retrain_schedule: str  # "" off, "daily 02:00", "every 30m" ...
    interactive_dir: Path  # versions of the finetuned prompt encoder + mask decoder
    finetune: FinetuneConfig
    finetune_after_labels: int  # 0: off
    finetune_schedule: str  # "" off, like retrain_schedule
    dicom_modalities: Tuple[str, ...]  # series a PACS datastore lists (MONAI_LABEL_DICOMWEB_SEARCH_FILTER overrides)
    dicom_cache_dir: Path  # series downloaded from a PACS, converted once
    pacs_label_listing_s: int  # how long the PACS's list of SEGs is reused (other replicas' saves appear after it)
    pacs_retry_s: int  # how often labels the PACS did not take are sent again
    session_max_mb: int  # the files of one session upload together (an archive: unpacked)
    users_file: Optional[Path]  # users, roles and password hashes; when set, authentication is on
    audit_dir: Path  # the audit trail (JSON Lines, rotated by size)
    token_lifetime_s: int  # how long a sign-in lasts
    cors_origins: Optional[Tuple[str, ...]]  # other origins browsers may call from; None: the default (see README)
    max_propagation_slices: int  # the most slices one 3D/cine request walks (0: the whole axis)
    viewer: str  # "medicosam": our OHIF 3.13 with the MedicoSAM tools at /ohif/; "monailabel": MONAI Label's bundled OHIF
    viewer_dicomweb: Optional[str]  # a DICOMweb root browsers reach directly; None: through this server's proxy

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> "Settings":
        """The settings from ``conf`` (MONAI Label's ``--conf``, or a command's flags), else the ``MEDICOSAM_*``
        environment, else the defaults. A bad value stops here with an error that names its key."""
        return cls.from_keys(ConfigKeys.read(conf))

    @classmethod
    def from_keys(cls, keys: ServerKeys) -> "Settings":
        """The settings built from parsed keys."""

        def inside_cache(configured: Optional[str], name: str) -> Path:
            return Path(configured or Path(keys.cache_dir or default_cache_dir()) / name)

        disk = keys.embedding_disk_dir or ""
        return cls(
            checkpoint=keys.checkpoint,
            cache_dir=keys.cache_dir,
            allow_download=keys.download,
            weights_url=keys.weights_url,
            device=keys.device,
            intensity=IntensityPolicy(
                mode=keys.intensity,  # type: ignore[arg-type]
                window_level=keys.window_level,
                window_width=keys.window_width,
            ),
            embedding_cache_mb=keys.embedding_cache_mb,
            volume_cache_mb=keys.volume_cache_mb,
            embedding_disk_dir=None if disk.lower() in DISK_CACHE_OFF else inside_cache(disk, "embeddings"),
            embedding_disk_mb=keys.embedding_disk_mb,
            prefetch_radius=keys.prefetch_radius,
            prefetch_quiet_ms=keys.prefetch_quiet_ms,
            encode_batch_size=keys.encode_batch_size,
            precision=keys.precision,
            embedding_storage=keys.embedding_storage,
            compile_encoder=keys.compile_encoder,
            decoder_cuda_graphs=keys.decoder_cuda_graphs,
            fused_attention=keys.fused_attention,
            malloc_tuning=keys.malloc_tuning,
            classes=keys.labels,
            semantic_dir=inside_cache(keys.semantic_dir, "semantic"),
            released_decoder=keys.released_decoder,
            semantic_batch_size=keys.semantic_batch_size,
            semantic_downscale=keys.semantic_downscale,
            training=TrainingConfig.from_mapping(round_options(keys, "train_", TrainingConfig)),
            retrain_after_labels=keys.retrain_after_labels,
            retrain_schedule=keys.retrain_schedule,
            interactive_dir=inside_cache(keys.interactive_dir, "interactive"),
            finetune=FinetuneConfig.from_mapping(round_options(keys, "finetune_", FinetuneConfig)),
            finetune_after_labels=keys.finetune_after_labels,
            finetune_schedule=keys.finetune_schedule,
            dicom_modalities=keys.modalities,
            dicom_cache_dir=inside_cache(keys.dicom_cache_dir, "dicomweb"),
            pacs_label_listing_s=keys.pacs_label_listing_s,
            pacs_retry_s=keys.pacs_retry_s,
            session_max_mb=keys.session_max_mb,
            users_file=keys.users_file,
            audit_dir=inside_cache(keys.audit_dir, "audit").expanduser(),
            token_lifetime_s=keys.token_lifetime_s,
            cors_origins=keys.cors_origins,
            max_propagation_slices=keys.max_propagation_slices,
            viewer=keys.viewer,
            viewer_dicomweb=keys.viewer_dicomweb,
        )
