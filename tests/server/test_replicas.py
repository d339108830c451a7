"""Two servers on one PACS behind HAProxy (scripts/start_balancer.sh), as a hospital scales out.

Orthanc holds a CT and an MR. Replicas A and B share the embedding cache and the model store (one
``MEDICOSAM_CACHE_DIR``, as on a shared volume) and keep their PACS downloads apart. Two annotators, each
pinned by the balancer (the Slicer module's ``client_id``), click and save at once, through the balancer
only. Then, asked directly, each replica gives both series' newest labels voxel for voxel (the PACS is the one
truth: nothing lost, nothing mixed), and a decoder version promoted in the shared store is served by both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

import build_dicom
from conftest import gdcm_series_image

from .harness import REPO, free_port, running_process, running_server, wait_for_model
from .orthanc import running_orthanc, upload
from .test_dicomweb import serve_checkpoint_decoder_as_a_version

pytestmark = pytest.mark.server
INTERACTIVE = "medicosam_interactive"
SAVES = 4


@dataclass
class Cluster:
    balancer: str
    replicas: Dict[str, str]  # HAProxy's server name → URL
    pacs: str
    series: Dict[str, str]  # "ct" / "mr" → series UID
    references: Dict[str, sitk.Image]
    shared: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, phantom_checkpoint) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    dicom = build_dicom.build(root / "dicom")
    shared = root / "shared"
    serve_checkpoint_decoder_as_a_version(phantom_checkpoint, shared / "interactive")  # v0001, served
    serve_checkpoint_decoder_as_a_version(phantom_checkpoint, shared / "interactive")  # v0002, then served
    subprocess.run([sys.executable, "-m", "medicosam_app", "models", "promote", "v0001", "--kind", "interactive",
                    "--cache-dir", str(shared)], check=True, cwd=REPO, capture_output=True)
    common = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_CACHE_DIR": str(shared),
              "MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0",
              "MEDICOSAM_PACS_LABEL_LISTING_S": "1"}
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, dicom)
        found = {str(pydicom.Dataset.from_json(s).get("SeriesDescription", "")): str(pydicom.Dataset.from_json(s).SeriesInstanceUID)
                 for s in DICOMwebClient(pacs).search_for_series()}
        series = {"ct": found["Phantom CT"], "mr": found["MNI152 T1"]}
        references = {"ct": gdcm_series_image(dicom / "phantom_ct"), "mr": gdcm_series_image(dicom / "mni_mr")}
        with running_server(pacs, root / "a.log", env={**common, "MEDICOSAM_DICOM_CACHE_DIR": str(root / "pacs_a")}) as a, \
                running_server(pacs, root / "b.log", env={**common, "MEDICOSAM_DICOM_CACHE_DIR": str(root / "pacs_b")}) as b:
            assert wait_for_model(a)["available"] and wait_for_model(b)["available"]
            port = free_port()
            command = [str(REPO / "scripts" / "start_balancer.sh"), "--port", str(port), "--config-dir", str(root / "balancer"),
                       "--replica", a.removeprefix("http://"), "--replica", b.removeprefix("http://")]
            balancer = f"http://127.0.0.1:{port}"
            with running_process("HAProxy", command, root / "haproxy.log", f"{balancer}/readyz", timeout=60):
                yield Cluster(balancer, {"replica1": a, "replica2": b}, pacs, series, references, shared)


def replica_of(cluster: Cluster, client_id: str) -> str:
    response = requests.get(f"{cluster.balancer}/info/", params={"client_id": client_id}, timeout=30)
    assert response.status_code == 200
    return response.headers["X-MedicoSAM-Replica"]


def random_label(reference: sitk.Image, seed: int) -> np.ndarray:
    """Boxes of classes 1 and 2 at random places, indexed [i, j, k] like the reference's voxels."""
    rng = np.random.default_rng(seed)
    size = reference.GetSize()
    label = np.zeros(size, np.uint8)
    for value in (1, 2):
        low = [int(rng.integers(0, n // 2)) for n in size]
        high = [lo + int(rng.integers(2, n // 2)) for lo, n in zip(low, size)]
        label[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = value
    return label


def label_file(label: np.ndarray, reference: sitk.Image, folder: Path) -> bytes:
    image = sitk.GetImageFromArray(label.transpose(2, 1, 0))
    image.CopyInformation(reference)
    path = folder / "label.nii.gz"
    sitk.WriteImage(image, str(path))
    return path.read_bytes()


def read_label(content: bytes) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.nii.gz"
        path.write_bytes(content)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


class Annotator(threading.Thread):
    """Clicks and saves a new label, ``SAVES`` times, on one series, through the balancer, as the Slicer
    module does (its client_id on every request); records which replica answered each request."""

    def __init__(self, cluster: Cluster, name: str, client_id: str, folder: Path) -> None:
        super().__init__(name=name)
        self.cluster, self.series, self.client_id, self.folder = cluster, name, client_id, folder
        self.served_by: List[str] = []
        self.statuses: List[int] = []
        self.saved: List[np.ndarray] = []

    def run(self) -> None:
        uid, reference = self.cluster.series[self.series], self.cluster.references[self.series]
        centre = [n // 2 for n in reference.GetSize()]
        for save in range(SAVES):
            click = requests.post(f"{self.cluster.balancer}/infer/{INTERACTIVE}",
                                  params={"image": uid, "output": "json", "client_id": self.client_id},
                                  files={"params": (None, json.dumps({"foreground": [centre], "background": []}))},
                                  timeout=300)
            label = random_label(reference, seed=save + (100 if self.series == "mr" else 0))
            stored = requests.put(f"{self.cluster.balancer}/datastore/label",
                                  params={"image": uid, "tag": "final", "client_id": self.client_id},
                                  data={"params": json.dumps({"label_info": [{"name": "organ", "idx": 1},
                                                                             {"name": "lesion", "idx": 2}]})},
                                  files={"label": ("label.nii.gz", label_file(label, reference, self.folder))},
                                  timeout=300)
            for response in (click, stored):
                self.statuses.append(response.status_code)
                self.served_by.append(response.headers.get("X-MedicoSAM-Replica", "none"))
            if stored.status_code == 200:
                self.saved.append(label)


def test_two_annotators_pinned_to_two_replicas_lose_and_mix_nothing(cluster, tmp_path):
    names = {}
    for n in range(64):  # two Slicer client ids the balancer pins to different replicas
        names.setdefault(replica_of(cluster, f"annotator-{n}"), f"annotator-{n}")
        if len(names) == 2:
            break
    assert set(names) == {"replica1", "replica2"}
    client_ids = list(names.values())
    for client_id in client_ids:  # pinned: the same replica every time
        assert len({replica_of(cluster, client_id) for _ in range(5)}) == 1
    annotators = [Annotator(cluster, "ct", client_ids[0], tmp_path), Annotator(cluster, "mr", client_ids[1], tmp_path)]
    for annotator in annotators:
        annotator.start()
    for annotator in annotators:
        annotator.join(timeout=900)
        assert not annotator.is_alive()
    for annotator, replica in zip(annotators, names):
        assert annotator.statuses == [200] * (2 * SAVES), annotator.statuses
        assert set(annotator.served_by) == {replica}  # pinned throughout
        assert len(annotator.saved) == SAVES

    # Every acknowledged save is a SEG in the PACS, referencing its own series.
    segs = DICOMwebClient(cluster.pacs).search_for_series(search_filters={"Modality": "SEG"})
    assert len(segs) == 2 * SAVES
    # Each replica, asked directly (not through the balancer), serves each series' newest label: the other
    # replica's saves included, once its listing of the PACS's labels has expired (1 s here, 60 s by default).
    time.sleep(1.5)
    for url in cluster.replicas.values():
        for annotator in annotators:
            response = requests.get(f"{url}/datastore/label",
                                    params={"label": cluster.series[annotator.series], "tag": "final"}, timeout=300)
            assert response.status_code == 200, response.text
            assert np.array_equal(read_label(response.content), annotator.saved[-1]), (url, annotator.series)


def test_a_version_promoted_in_the_shared_store_is_served_by_both_replicas(cluster):
    def served_version(url: str) -> str:
        response = requests.post(f"{url}/infer/{INTERACTIVE}", params={"image": cluster.series["ct"], "output": "json"},
                                  files={"params": (None, json.dumps({"foreground": [[64, 50, 20]], "background": []}))},
                                  timeout=300)
        assert response.status_code == 200, response.text
        return response.json()["interactive_version"]

    assert [served_version(url) for url in cluster.replicas.values()] == ["v0001", "v0001"]
    promoted = subprocess.run([sys.executable, "-m", "medicosam_app", "models", "promote", "v0002", "--kind",
                               "interactive", "--cache-dir", str(cluster.shared)], cwd=REPO, capture_output=True, text=True)
    assert promoted.returncode == 0, promoted.stderr
    assert [served_version(url) for url in cluster.replicas.values()] == ["v0002", "v0002"]  # at their next click
