"""Typed option sets read from requests, ``--conf`` and the environment, with bounds and clear 422s."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar

from .errors import InvalidRequestError
from .request_values import parse_bool

T = TypeVar("T", bound="Options")


class Options:
    """A frozen dataclass mixin: ``from_mapping`` takes known keys (strings accepted) over a base and checks
    every numeric field against ``LIMITS`` (name → (low, high), inclusive); ``POSITIVE`` fields must be > 0;
    text fields must be one of their ``CHOICES``."""

    LIMITS: ClassVar[Dict[str, Tuple[float, float]]] = {}
    POSITIVE: ClassVar[Tuple[str, ...]] = ()
    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {}

    @classmethod
    def from_mapping(cls: Type[T], values: Mapping[str, Any], base: Optional[T] = None) -> T:
        base = base or cls()
        updates = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in values or values[f.name] in (None, ""):
                continue
            raw = values[f.name]
            try:
                if f.type in ("bool", bool):  # the request's rule: "ture" is refused, not read as false
                    updates[f.name] = parse_bool(raw, f.name)
                elif f.type in ("str", str):
                    updates[f.name] = str(raw).strip().lower()
                else:
                    updates[f.name] = (int if f.type in ("int", int) else float)(raw)
            except (TypeError, ValueError) as error:
                raise InvalidRequestError(f"Training option {f.name}={raw!r} is not a valid {f.type}.") from error
        config = dataclasses.replace(base, **updates)  # type: ignore[type-var]
        for name, (low, high) in cls.LIMITS.items():
            value = getattr(config, name)
            if not (low <= value <= high) or (name in cls.POSITIVE and value == 0):
                raise InvalidRequestError(
                    f"Training option {name}={value!r} is out of range: it must lie in [{low}, {high}]"
                    + (" and be above 0." if name in cls.POSITIVE else ".")
                )
        for name, choices in cls.CHOICES.items():
            if getattr(config, name) not in choices:
                raise InvalidRequestError(
                    f"Training option {name}={getattr(config, name)!r} is not one of {', '.join(choices)}."
                )
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
