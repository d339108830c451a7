"""Where images and labels live: a folder (:class:`CheckedLocalDatastore`) or a PACS over DICOMweb
(:class:`MedicoSAMDicomWebDatastore`), with every write atomic and every label checked against its image."""

from .choice import folder_datastore, pacs_datastore, segmentation_author
from .dicomweb import MedicoSAMDicomWebDatastore
from .local import CheckedLocalDatastore
from .pacs_calls import bound_pacs_calls
from .pacs_values import search_filters
from .pending_segs import PendingSegs

__all__ = ["CheckedLocalDatastore", "MedicoSAMDicomWebDatastore", "PendingSegs", "bound_pacs_calls", "folder_datastore",
           "pacs_datastore", "search_filters", "segmentation_author"]
