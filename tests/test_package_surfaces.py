"""Each package's ``__all__`` names things that exist: every name resolves (the lazy ones load their module on first
use) and ``dir()`` lists it; a name outside the surface is an AttributeError, as for any module."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import medicosam_app

APP = Path(__file__).resolve().parents[1] / "apps" / "medicosam"
CORE_PACKAGES = ["medicosam_app"] + sorted(
    name for _, name, is_package in pkgutil.walk_packages(medicosam_app.__path__, "medicosam_app.") if is_package)
APP_PACKAGES = ["lib", "lib.access", "lib.datastore", "lib.guards", "lib.http", "lib.tasks", "lib.viewer"]


@pytest.mark.parametrize("name", CORE_PACKAGES + APP_PACKAGES)
def test_every_exported_name_resolves(name):
    if name.startswith("lib") and str(APP) not in sys.path:
        sys.path.insert(0, str(APP))
    package = importlib.import_module(name)
    assert package.__all__, f"{name} declares no public surface"
    for exported in package.__all__:
        assert getattr(package, exported) is not None, f"{name}.{exported}"
        assert exported in dir(package)
    with pytest.raises(AttributeError):
        getattr(package, "no_such_name_here")
