"""Settings shared by the server and the command line: ``--conf key value`` (or a CLI flag), else environment
variables (``MEDICOSAM_*``), else defaults. One place, so ``precompute`` fills the cache the server reads."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

from .embeddings.intensity import IntensityPolicy
from .finetune.config import FinetuneConfig
from .model.checkpoints import CACHE_DIR_ENV, CHECKPOINT_ENV, default_cache_dir
from .request_values import parse_bool
from .semantic.classes import DEFAULT_CLASSES, SemanticClasses
from .semantic.config import TrainingConfig

_DISK_CACHE_OFF = {"0", "false", "no", "off", "none"}


@dataclass(frozen=True)
class Settings:
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
    encode_batch_size: Optional[int]  # None: by the encoder's device (8 on a GPU, 1 on a CPU)
    precision: str
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
        def get(key: str, env: str, default: Optional[str] = None) -> Optional[str]:
            value = conf.get(key)
            return value if value not in (None, "") else os.environ.get(env, default)

        def flag(key: str, env: str, default: bool) -> bool:
            # The same words as a request's true/false; anything else stops the start with the setting's name.
            return parse_bool(get(key, env), f"--conf {key} / {env}", default)

        cache_dir = get("cache_dir", CACHE_DIR_ENV)
        users_file = get("users_file", "MEDICOSAM_USERS_FILE")
        disk = str(get("embedding_disk_dir", "MEDICOSAM_EMBEDDING_DISK_DIR", "") or "")
        if disk.lower() in _DISK_CACHE_OFF:
            disk_dir = None
        else:
            disk_dir = Path(disk) if disk else Path(cache_dir or default_cache_dir()) / "embeddings"
        return cls(
            checkpoint=get("checkpoint", CHECKPOINT_ENV),
            cache_dir=cache_dir,
            allow_download=flag("download", "MEDICOSAM_DOWNLOAD", True),
            weights_url=get("weights_url", "MEDICOSAM_WEIGHTS_URL") or None,
            device=get("device", "MEDICOSAM_DEVICE"),
            intensity=IntensityPolicy(
                mode=get("intensity", "MEDICOSAM_INTENSITY", "volume"),  # type: ignore[arg-type]
                window_level=float(get("window_level", "MEDICOSAM_WINDOW_LEVEL", "40")),
                window_width=float(get("window_width", "MEDICOSAM_WINDOW_WIDTH", "400")),
            ),
            embedding_cache_mb=int(get("embedding_cache_mb", "MEDICOSAM_EMBEDDING_CACHE_MB", "2048")),
            volume_cache_mb=int(get("volume_cache_mb", "MEDICOSAM_VOLUME_CACHE_MB", "4096")),
            embedding_disk_dir=disk_dir,
            embedding_disk_mb=int(get("embedding_disk_mb", "MEDICOSAM_EMBEDDING_DISK_MB", "20480")),
            prefetch_radius=int(get("prefetch_radius", "MEDICOSAM_PREFETCH_RADIUS", "16")),
            prefetch_quiet_ms=int(get("prefetch_quiet_ms", "MEDICOSAM_PREFETCH_QUIET_MS", "1000")),
            encode_batch_size=_batch_size(get("encode_batch_size", "MEDICOSAM_ENCODE_BATCH_SIZE", "auto")),
            precision=str(get("precision", "MEDICOSAM_PRECISION", "auto")),
            fused_attention=flag("fused_attention", "MEDICOSAM_FUSED_ATTENTION", True),
            malloc_tuning=flag("malloc_tuning", "MEDICOSAM_MALLOC_TUNING", True),
            classes=SemanticClasses.parse(str(get("labels", "MEDICOSAM_LABELS", DEFAULT_CLASSES))),
            semantic_dir=Path(
                get("semantic_dir", "MEDICOSAM_SEMANTIC_DIR", "") or Path(cache_dir or default_cache_dir()) / "semantic"
            ),
            released_decoder=get("released_decoder", "MEDICOSAM_RELEASED_DECODER"),
            semantic_batch_size=int(get("semantic_batch_size", "MEDICOSAM_SEMANTIC_BATCH_SIZE", "4")),
            semantic_downscale=int(get("semantic_downscale", "MEDICOSAM_SEMANTIC_DOWNSCALE", "1")),
            training=TrainingConfig.from_mapping(
                {
                    f.name: get(f"train_{f.name}", f"MEDICOSAM_TRAIN_{f.name.upper()}")
                    for f in dataclasses.fields(TrainingConfig)
                }
            ),
            retrain_after_labels=int(get("retrain_after_labels", "MEDICOSAM_RETRAIN_AFTER_LABELS", "5")),
            retrain_schedule=str(get("retrain_schedule", "MEDICOSAM_RETRAIN_SCHEDULE", "") or ""),
            interactive_dir=Path(
                get("interactive_dir", "MEDICOSAM_INTERACTIVE_DIR", "") or Path(cache_dir or default_cache_dir()) / "interactive"
            ),
            finetune=FinetuneConfig.from_mapping(
                {
                    f.name: get(f"finetune_{f.name}", f"MEDICOSAM_FINETUNE_{f.name.upper()}")
                    for f in dataclasses.fields(FinetuneConfig)
                }
            ),
            # Off by default: on a CPU server a round competes with clicks for the cores (see README).
            finetune_after_labels=int(get("finetune_after_labels", "MEDICOSAM_FINETUNE_AFTER_LABELS", "0")),
            finetune_schedule=str(get("finetune_schedule", "MEDICOSAM_FINETUNE_SCHEDULE", "") or ""),
            dicom_modalities=tuple(
                m.strip().upper() for m in str(get("modalities", "MEDICOSAM_MODALITIES", "all")).split(",") if m.strip()
            ),
            dicom_cache_dir=Path(
                get("dicom_cache_dir", "MEDICOSAM_DICOM_CACHE_DIR", "") or Path(cache_dir or default_cache_dir()) / "dicomweb"
            ),
            pacs_label_listing_s=_whole_number(
                get("pacs_label_listing_s", "MEDICOSAM_PACS_LABEL_LISTING_S", "60"), "pacs_label_listing_s"),
            pacs_retry_s=_whole_number(get("pacs_retry_s", "MEDICOSAM_PACS_RETRY_S", "30"), "pacs_retry_s"),
            session_max_mb=_positive_number(get("session_max_mb", "MEDICOSAM_SESSION_MAX_MB", "4096"), "session_max_mb"),
            users_file=Path(users_file).expanduser() if users_file else None,
            audit_dir=Path(
                get("audit_dir", "MEDICOSAM_AUDIT_DIR", "") or Path(cache_dir or default_cache_dir()) / "audit"
            ).expanduser(),
            token_lifetime_s=int(get("token_lifetime_s", "MEDICOSAM_TOKEN_LIFETIME_S", str(8 * 3600))),
            cors_origins=_origins(get("cors_origins", "MEDICOSAM_CORS_ORIGINS")),
            max_propagation_slices=_whole_number(
                get("max_propagation_slices", "MEDICOSAM_MAX_PROPAGATION_SLICES", "0"), "max_propagation_slices"),
            viewer=_viewer(get("viewer", "MEDICOSAM_VIEWER", "medicosam")),
            viewer_dicomweb=get("viewer_dicomweb", "MEDICOSAM_VIEWER_DICOMWEB") or None,
        )


def _batch_size(value: object) -> Optional[int]:
    """``auto`` (or unset) → None, the encoder's device decides; else a whole number of slices, at least 1."""
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"encode_batch_size must be auto or a whole number of slices, at least 1 (got {value!r})")
    return size


def _positive_number(value: object, name: str) -> int:
    number = _whole_number(value, name)
    if number == 0:
        raise ValueError(f"{name} must be 1 or more (got {value!r})")
    return number


def _whole_number(value: object, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number, 0 or more (got {value!r})")
    return int(text)


VIEWERS = ("medicosam", "monailabel")


def _viewer(value: object) -> str:
    text = str(value).strip().lower()
    if text not in VIEWERS:
        raise ValueError(f"viewer must be one of {', '.join(VIEWERS)} (got {value!r})")
    return text


def _origins(value: Optional[str]) -> Optional[Tuple[str, ...]]:
    """``https://viewer.hospital.org,https://other`` → the tuple; ``none`` → no other origin; unset → None."""
    if value is None or value == "":
        return None
    if value.strip().lower() in ("none", "off", "self"):
        return ()
    return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
