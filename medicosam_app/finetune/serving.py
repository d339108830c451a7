"""Which interactive decoder the server uses: the serving version of the store, picked up without a restart.

Every request asks :meth:`ServedDecoder.predictor`; it costs one ``stat`` of the serving pointer unless a
promotion or rollback changed it, in which case the version's weights are loaded once into a predictor that
shares the loaded image encoder (cached embeddings stay valid), or carries its own changed encoder. Requests
already running finish with the predictor they started with, and requests arriving while a version loads
keep the previous one, so a promotion never stalls other annotators' clicks.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

from ..model.predictor import PromptPredictor
from ..learning.versions import VersionStore
from .decoder_weights import predictor_with_decoder

logger = logging.getLogger(__name__)


class ServedDecoder:
    def __init__(self, store: VersionStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._key: Optional[Tuple[Any, ...]] = None
        self._predictor: Optional[PromptPredictor] = None
        self._version: Optional[str] = None
        self._problem: Optional[str] = None
        self._loading: Optional[Tuple[Any, ...]] = None  # the pointer a request is loading now

    def predictor(self, base: PromptPredictor, checkpoint_hash: str) -> PromptPredictor:
        """The serving version's predictor. The request that first sees a new pointer loads it (outside the
        lock: a version with its own encoder takes seconds); requests meanwhile keep the previous predictor."""
        key = (self.store.serving_token(), id(base), checkpoint_hash)
        with self._lock:
            if key == self._key and self._predictor is not None:
                return self._predictor
            if self._loading == key:  # another request is loading this very pointer
                return self._predictor if self._predictor is not None else base
            self._loading = key
        try:
            loaded = self._load(base, checkpoint_hash, key[0][0])
        except BaseException:
            with self._lock:
                self._loading = None
            raise
        with self._lock:
            self._loading = None
            self._predictor, self._version, self._problem = loaded
            self._key = key
            return self._predictor

    def _load(self, base: PromptPredictor, checkpoint_hash: str, version: Optional[str]):
        if version is None:
            return base, None, None
        try:
            meta = self.store.metadata(version)
            if meta.get("encoder_checkpoint") != checkpoint_hash:
                problem = (f"interactive version {version} was trained for another checkpoint "
                           f"({str(meta.get('encoder_checkpoint'))[:16]}); serving the checkpoint's own decoder")
                logger.warning(problem)
                return base, None, problem
            predictor = predictor_with_decoder(base, self.store.load_state(version), version)
        except Exception as error:  # a damaged version must not take clicks down: serve the checkpoint's decoder
            problem = f"interactive version {version} could not be loaded ({error}); serving the checkpoint's own decoder"
            logger.error(problem)
            return base, None, problem
        logger.info("Serving interactive decoder %s", version)
        return predictor, version, None

    @property
    def version(self) -> Optional[str]:
        """The version in use after the last request (None: the checkpoint's own decoder)."""
        return self._version

    def status(self) -> Dict[str, Any]:
        encoder = self._predictor.encoder_tag if self._predictor is not None else None
        return {"serving": self._version, "pointer": self.store.serving(), "problem": self._problem,
                "encoder": encoder or "checkpoint"}  # a finetuned encoder's digest, or the checkpoint's own
