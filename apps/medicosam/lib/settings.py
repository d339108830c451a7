"""The app's settings: ``--conf key value`` on the command line, else environment variables, else defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from medicosam_app.checkpoints import CHECKPOINT_ENV
from medicosam_app.intensity import IntensityPolicy

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class AppSettings:
    checkpoint: Optional[str]
    cache_dir: Optional[str]
    allow_download: bool
    device: Optional[str]
    intensity: IntensityPolicy
    embedding_cache_mb: int
    volume_cache_mb: int

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> "AppSettings":
        def get(key: str, env: str, default: Optional[str] = None) -> Optional[str]:
            value = conf.get(key)
            return value if value not in (None, "") else os.environ.get(env, default)

        return cls(
            checkpoint=get("checkpoint", CHECKPOINT_ENV),
            cache_dir=get("cache_dir", "MEDICOSAM_CACHE_DIR"),
            allow_download=str(get("download", "MEDICOSAM_DOWNLOAD", "true")).lower() in _TRUE,
            device=get("device", "MEDICOSAM_DEVICE"),
            intensity=IntensityPolicy(
                mode=get("intensity", "MEDICOSAM_INTENSITY", "volume"),  # type: ignore[arg-type]
                window_level=float(get("window_level", "MEDICOSAM_WINDOW_LEVEL", "40")),
                window_width=float(get("window_width", "MEDICOSAM_WINDOW_WIDTH", "400")),
            ),
            embedding_cache_mb=int(get("embedding_cache_mb", "MEDICOSAM_EMBEDDING_CACHE_MB", "2048")),
            volume_cache_mb=int(get("volume_cache_mb", "MEDICOSAM_VOLUME_CACHE_MB", "4096")),
        )
