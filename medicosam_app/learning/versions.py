"""Every training run of the semantic decoder is kept as a version; one of them is served.

Layout under the versions root::

    versions/v0001/decoder.pt      state dict (loaded with weights_only=True)
    versions/v0001/metadata.json   time, images used, metrics, parent, encoder checkpoint hash, ...
    serving.json                   {"version": "v0001", "stack": [...], "events": [...]}

A version folder is assembled under a hidden name and renamed into place when complete, so a run that
crashes leaves no half version behind, and ``serving.json`` only ever changes by an atomic rename: the
server keeps serving what it served until a complete, promoted version replaces it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from filelock import FileLock, Timeout

from ..atomic_files import storage_full_as, write_json_atomic
from ..errors import InvalidRequestError, MedicoSamError

_VERSION_ID = re.compile(r"^v(\d{4,})$")


class TrainingBusyError(MedicoSamError):
    """Another training run holds the lock on this versions root."""


class VersionStore:
    """Versions of a trained model part on disk, the serving pointer, promotion and rollback.

    The semantic decoder and the interactive prompt encoder + mask decoder each have a store of their own;
    ``what`` names the model in messages."""

    def __init__(self, root: os.PathLike, what: str = "semantic model") -> None:
        self.root = Path(root)
        self.what = what
        self.versions_dir = self.root / "versions"
        self.serving_file = self.root / "serving.json"

    # -- reading ---------------------------------------------------------------------------------

    def ids(self) -> List[str]:
        if not self.versions_dir.is_dir():
            return []
        found = [p.name for p in self.versions_dir.iterdir() if _VERSION_ID.match(p.name) and (p / "metadata.json").is_file()]
        return sorted(found, key=lambda name: int(name[1:]))

    def metadata(self, version: str) -> Dict[str, Any]:
        path = self._folder(version) / "metadata.json"
        if not path.is_file():
            raise InvalidRequestError(f"No {self.what} version '{version}'; known: {', '.join(self.ids()) or 'none'}.", 404)
        return json.loads(path.read_text())

    def list(self) -> List[Dict[str, Any]]:
        serving = self.serving()
        return [dict(self.metadata(v), serving=(v == serving)) for v in self.ids()]

    def weights_path(self, version: str) -> Path:
        return self._folder(version) / "decoder.pt"

    def load_state(self, version: str) -> Dict[str, torch.Tensor]:
        return torch.load(self.weights_path(version), map_location="cpu", weights_only=True)

    def serving(self) -> Optional[str]:
        """The served version, or None before any promotion."""
        return self._pointer().get("version")

    def serving_token(self) -> Tuple[Optional[str], int]:
        """Changes whenever the serving pointer is rewritten: cheap to poll before each inference."""
        try:
            stamp = self.serving_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None, 0
        return self.serving(), stamp

    def learned_labels(self) -> Dict[str, str]:
        """image id → label hash of the data every stored version was trained on (latest wins)."""
        seen: Dict[str, str] = {}
        for version in self.ids():
            for item in self.metadata(version).get("data", []):
                seen[item["image_id"]] = item["label_hash"]
        return seen

    def new_labels(self, studies: Sequence[Any]) -> List[Any]:
        """The studies (with ``image_id`` and ``label_hash``) no version has learned from yet: new images, or
        labels saved again with changes."""
        seen = self.learned_labels()
        return [s for s in studies if seen.get(s.image_id) != s.label_hash]

    def latest(self) -> Optional[str]:
        ids = self.ids()
        return ids[-1] if ids else None

    # -- writing ---------------------------------------------------------------------------------

    def training_lock(self) -> FileLock:
        """One training run per versions root at a time (across processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".training.lock"))

    def acquire_training_lock(self) -> FileLock:
        lock = self.training_lock()
        try:
            lock.acquire(timeout=0)
        except Timeout as error:
            raise TrainingBusyError(f"Another training run is using {self.root}; try again when it has finished.") from error
        return lock

    def add(self, state: Dict[str, torch.Tensor], metadata: Dict[str, Any]) -> str:
        """Store a finished run as the next version; returns its id. Call while holding the training lock."""
        latest = self.latest()
        version = f"v{(int(latest[1:]) if latest else 0) + 1:04d}"
        # A full disk: the version is not stored, the one served goes on, the labels stay for the next round.
        with storage_full_as(f"The {self.what} trained in this round was not stored as {version}",
                             self.versions_dir / version, then="train again"):
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.versions_dir))
            try:
                with open(staging / "decoder.pt", "wb") as handle:  # a Python file: a full disk raises ENOSPC
                    torch.save(state, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                write_json_atomic(staging / "metadata.json", dict(metadata, version=version))
                os.rename(staging, self._folder(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return version

    def promote(self, version: str, reason: str) -> None:
        """Serve ``version`` from now on (the server picks it up at its next inference)."""
        self.metadata(version)  # must exist
        pointer = self._pointer()
        stack = [v for v in pointer.get("stack", []) if v != version] + [version]
        self._write_pointer(version, stack, pointer.get("events", []), f"promote {version}: {reason}")

    def rollback(self) -> str:
        """Serve the version that was served before the current one; returns it."""
        pointer = self._pointer()
        stack = list(pointer.get("stack", []))
        if len(stack) < 2:
            raise InvalidRequestError("Nothing to roll back to: fewer than two versions have been served.", 409)
        current = stack.pop()
        previous = stack[-1]
        self._write_pointer(previous, stack, pointer.get("events", []), f"rollback {current} → {previous}")
        return previous

    # -- internals -------------------------------------------------------------------------------

    def _folder(self, version: str) -> Path:
        if not isinstance(version, str) or not _VERSION_ID.match(version):
            raise InvalidRequestError(f"'{version}' is not a version id (like v0003).", 422)
        return self.versions_dir / version

    def _pointer(self) -> Dict[str, Any]:
        try:
            return json.loads(self.serving_file.read_text())
        except FileNotFoundError:
            return {}

    def _write_pointer(self, version: str, stack: List[str], events: List[Dict[str, Any]], what: str) -> None:
        events = list(events) + [{"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": what}]
        write_json_atomic(self.serving_file, {"version": version, "stack": stack, "events": events[-200:]})


def trained_on_checkpoint(meta: Dict[str, Any], checkpoint_hash: str) -> bool:
    """Whether a semantic version learned on this checkpoint's encoder. The precision is not compared: int8,
    bf16 and fp32 features of one encoder agree (``precision auto`` checks that before choosing), so a new
    precision choice must not retire every trained decoder."""
    trained_on = meta.get("encoder_checkpoint") or str(meta.get("encoder_key", "")).split("-")[0]
    return trained_on == checkpoint_hash
