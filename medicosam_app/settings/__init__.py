"""Settings shared by the server and the command line: ``--conf key value`` (or a CLI flag), else environment
variables (``MEDICOSAM_*``), else defaults. One place, so ``precompute`` fills the cache the server reads.

:mod:`.keys` declares every key once (a pydantic-settings model), :mod:`.values` parses each kind of value,
:mod:`.resolved` builds :class:`Settings` from them, and :mod:`.reference` prints the keys' reference table."""

from .keys import ConfigKeys
from .resolved import Settings

__all__ = ["ConfigKeys", "Settings"]
