"""Names a package re-exports without importing their modules until first use (PEP 562).

A package's ``__init__`` lists its public surface in ``__all__``; the names whose modules are heavy (torch, pydicom,
monailabel) are looked up on first use instead of at import, so ``import medicosam_app.geometry`` and
``python -m medicosam_app --help`` stay light.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, List, Mapping, Sequence, Tuple


def lazy_exports(
    package: str, modules: Mapping[str, str], exported: Sequence[str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        modules: each lazy name → the module that defines it, relative to the package (``".volume"``).
        exported: the package's ``__all__``, listed by ``dir()`` before the lazy names are loaded.
    """

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(modules[name], package), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(exported))

    return __getattr__, __dir__
