"""DICOM in and out: image series checked and read as volumes, labels written and read as DICOM SEG."""
