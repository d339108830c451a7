"""Upload DICOM files to a DICOMweb server (STOW-RS), e.g. the Orthanc that scripts/start_orthanc.sh starts.

    .venv/bin/python scripts/upload_dicom.py [--dicomweb http://127.0.0.1:8042/dicom-web] [FOLDER_OR_FILE ...]

Without paths it builds the sample series (sample-data/build_dicom.py → sample-data/dicom/) and uploads
those: a CT and an MR series of one study. Uploading the same instances again changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, List

import pydicom
from dicomweb_client import DICOMwebClient
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]


def dicom_files(paths: Iterable[Path]) -> List[Path]:
    files: List[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [f for f in files if pydicom.misc.is_dicom(str(f))]


def upload(dicomweb: str, paths: Iterable[Path], batch: int = 32, progress: bool = True) -> int:
    """STOW-RS every DICOM file under ``paths`` in batches; returns how many instances were sent."""
    client = DICOMwebClient(url=dicomweb.rstrip("/"))
    files = dicom_files(paths)
    with tqdm(total=len(files), unit="instance", desc="Uploading", disable=not progress) as bar:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            client.store_instances([pydicom.dcmread(str(f)) for f in chunk])
            bar.update(len(chunk))
    return len(files)


def _sample_series() -> Path:
    sys.path.insert(0, str(REPO / "sample-data"))
    import build_dicom

    return build_dicom.build(REPO / "sample-data" / "dicom")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicomweb", default="http://127.0.0.1:8042/dicom-web", help="DICOMweb root URL")
    parser.add_argument("paths", nargs="*", type=Path, help="DICOM files or folders (default: the sample series)")
    args = parser.parse_args()
    paths = args.paths or [_sample_series()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    count = upload(args.dicomweb, paths)
    print(f"Uploaded {count} instances to {args.dicomweb}")


if __name__ == "__main__":
    main()
