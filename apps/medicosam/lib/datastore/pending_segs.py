"""Labels whose DICOM SEG the PACS did not take (it was away, or answered with an error) are kept on the server
and marked in their info (:data:`.dicomweb.PENDING_SEG`, with the SEG's author as at the save). A
daemon thread looks for them every ``every_s`` seconds and, once the PACS answers, sends each as the SEG it
would have been; a new save of the same label meanwhile replaces it (the newest label is sent, once)."""

from __future__ import annotations

import logging
import threading
from typing import List

import requests
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from medicosam_app.dicom.seg import SegmentationAuthor
from medicosam_app.errors import PacsError

from .dicomweb import PENDING_SEG, MedicoSAMDicomWebDatastore

logger = logging.getLogger(__name__)


class PendingSegs:
    """Sends the labels ``store`` keeps for the PACS; :meth:`start` runs it in the background."""

    def __init__(self, store: MedicoSAMDicomWebDatastore, every_s: float = 30.0) -> None:
        self.store = store
        self.every_s = every_s
        self._stop = threading.Event()

    def pending(self) -> List[str]:
        """Image series whose final label waits for the PACS."""
        tag = DefaultLabelTag.FINAL
        return [image_id for image_id, entry in self.store._datastore.objects.items()
                if tag in entry.labels and entry.labels[tag].info.get(PENDING_SEG)]

    def send(self) -> int:
        """Send what waits, if the PACS answers; returns how many SEGs were stored."""
        waiting = self.pending()
        if not waiting or self.store.reachable(timeout_s=5.0) is not None:
            return 0
        sent = 0
        for image_id in waiting:
            with self.store._label_locks.hold(image_id):
                info = dict(LocalDatastore.get_label_info(self.store, image_id, DefaultLabelTag.FINAL))
                author = info.get(PENDING_SEG)
                if not author:  # a save meanwhile stored it
                    continue
                path = LocalDatastore.get_label_uri(self.store, image_id, DefaultLabelTag.FINAL)
                try:
                    self.store.store_seg(image_id, path, info, SegmentationAuthor(**author))
                except (requests.RequestException, PacsError) as error:
                    logger.warning("The label of series %s still waits for the PACS: %s", image_id, error)
                    return sent
            logger.info("The label of series %s, kept while the PACS did not take it, is now in the PACS", image_id)
            sent += 1
        return sent

    def start(self) -> "PendingSegs":
        thread = threading.Thread(target=self._run, name="medicosam-pending-segs", daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.send()
            except Exception:  # noqa: BLE001 - the next round tries again; the labels stay marked
                logger.exception("Sending the labels kept for the PACS failed")
