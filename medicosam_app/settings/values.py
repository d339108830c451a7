"""How a configuration key is spelled in the environment, and how its text becomes a value.

Each kind of value is an annotated type whose parser runs inside the settings model
(:mod:`medicosam_app.settings.keys`) and raises an error that names the key. The messages are the ones the
server has always given, so an administrator's notes and the tests keep matching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Tuple

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from ..request_values import parse_bool
from ..semantic.classes import SemanticClasses

ENV_PREFIX = "MEDICOSAM_"
VIEWERS = ("medicosam", "monailabel")
DISK_CACHE_OFF = frozenset({"0", "false", "no", "off", "none"})  # embedding_disk_dir words that turn it off


def env_name(key: str) -> str:
    """The environment variable of ``key``: ``cache_dir`` → ``MEDICOSAM_CACHE_DIR``."""
    return ENV_PREFIX + key.upper()


def _flag(value: object, info: ValidationInfo) -> bool:
    # The same words as a request's true/false; anything else stops the start with the setting's name.
    key = str(info.field_name)
    return parse_bool(value, f"--conf {key} / {env_name(key)}")


def _integer(value: Any, info: ValidationInfo) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{info.field_name} must be an integer (got {value!r})") from None


def _number(value: Any, info: ValidationInfo) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{info.field_name} must be a number (got {value!r})") from None


def _whole_number(value: object, info: ValidationInfo) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{info.field_name} must be a whole number, 0 or more (got {value!r})")
    return int(text)


def _positive_number(value: object, info: ValidationInfo) -> int:
    number = _whole_number(value, info)
    if number == 0:
        raise ValueError(f"{info.field_name} must be 1 or more (got {value!r})")
    return number


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


EMBEDDING_STORAGE = ("auto", "fp16", "fp32")
COMPILE_CHOICES = ("auto", "on", "off")
GRAPH_CHOICES = ("auto", "off")


def _one_of(name: str, choices: Tuple[str, ...]) -> Callable[[object], str]:
    """A parser for a key that takes one word of ``choices``, in any case."""

    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)} (got {value!r})")
        return text

    return parse


def _origins(value: Optional[str]) -> Optional[Tuple[str, ...]]:
    """``https://viewer.hospital.org,https://other`` → the tuple; ``none`` → no other origin; unset → None."""
    if value is None or value == "":
        return None
    if value.strip().lower() in ("none", "off", "self"):
        return ()
    return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())


def _modalities(value: object) -> Tuple[str, ...]:
    """``ct, mr`` → ``("CT", "MR")``; ``all`` → ``("ALL",)``."""
    return tuple(m.strip().upper() for m in str(value).split(",") if m.strip())


def _classes(value: object) -> SemanticClasses:
    return SemanticClasses.parse(str(value))


def _user_path(value: Optional[str]) -> Optional[Path]:
    return Path(value).expanduser() if value else None


def _none_if_blank(value: Optional[str]) -> Optional[str]:
    return value or None


Flag = Annotated[bool, BeforeValidator(_flag)]
Integer = Annotated[int, BeforeValidator(_integer)]
Number = Annotated[float, BeforeValidator(_number)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]  # 0 or more
PositiveNumber = Annotated[int, BeforeValidator(_positive_number)]  # 1 or more
BatchSize = Annotated[Optional[int], BeforeValidator(_batch_size)]  # None: ``auto``
Viewer = Annotated[str, BeforeValidator(_one_of("viewer", VIEWERS))]
EmbeddingStorage = Annotated[str, BeforeValidator(_one_of("embedding_storage", EMBEDDING_STORAGE))]
CompileChoice = Annotated[str, BeforeValidator(_one_of("compile_encoder", COMPILE_CHOICES))]
GraphChoice = Annotated[str, BeforeValidator(_one_of("decoder_cuda_graphs", GRAPH_CHOICES))]
Origins = Annotated[Optional[Tuple[str, ...]], BeforeValidator(_origins)]  # None: unset, (): no other origin
Modalities = Annotated[Tuple[str, ...], BeforeValidator(_modalities)]
Classes = Annotated[SemanticClasses, BeforeValidator(_classes)]
UserPath = Annotated[Optional[Path], BeforeValidator(_user_path)]  # ``~`` expanded; unset or empty: None
Url = Annotated[Optional[str], AfterValidator(_none_if_blank)]  # empty: None, as if unset
