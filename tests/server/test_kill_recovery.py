"""Nothing acknowledged is lost: label saves against the real server, with training, scoring and SIGKILL.

A label save that was answered 200 must survive whatever happens next:

- a training round (``POST /train/medicosam_semantic``) or a scoring run (``POST /scoring/medicosam_dice``),
  which MONAI Label runs as a separate process with its own copy of ``datastore_v2.json`` read when it
  started; when that process records its results it must not write back its old copy;
- ``SIGKILL`` of the server (and of the training and scoring processes) in the middle of a stream of saves:
  the server restarted on the same folder must start, list every acknowledged label with its contents
  byte for byte (so voxel for voxel), and list no half-written file.

Labels are random class maps in the image's geometry, a new one for every version, so a label from
another save or a truncated file cannot pass. One folder of MNI subjects (two with labels to train on)
serves the whole module; the server is restarted on it after each kill. The first tests exercise the
datastore alone, in this process and a second one.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import psutil
import pytest
import requests
import SimpleITK as sitk

from conftest import SEMANTIC_TRAINING, random_label_bytes, write_mni_subjects, write_volume

from .harness import REPO, running_server, slicer_client, wait_for_model

sys.path.insert(0, str(REPO / "apps" / "medicosam"))
from lib.datastore import CheckedLocalDatastore  # noqa: E402

pytestmark = pytest.mark.server
SEMANTIC = "medicosam_semantic"
INDEX = "datastore_v2.json"
LABEL_NAMES = [{"name": "grey_matter", "idx": 1}, {"name": "white_matter", "idx": 2}]


# -- the datastore alone --------------------------------------------------------------------------


@pytest.fixture()
def small_store(tmp_path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    for n in range(3):
        write_volume(folder / f"img{n}.nii.gz", np.zeros((6, 5, 4), np.float32))
    return folder


def _label_file(folder: Path, value: int) -> str:
    return str(write_volume(folder / f"label{value}.nii.gz", np.full((6, 5, 4), value, np.uint8)))


def test_a_datastore_with_an_old_copy_of_the_index_keeps_labels_saved_since(small_store, tmp_path):
    """Two datastores on one folder, as the server's and a scoring process's (each with its own lock handle,
    so flock separates them as it separates processes; the server tests below use real processes)."""
    server = CheckedLocalDatastore(str(small_store))
    scoring = CheckedLocalDatastore(str(small_store))  # reads the index now, as a scoring process does
    server.save_label("img0", _label_file(tmp_path, 1), "final", {"label_info": LABEL_NAMES})
    scoring.update_image_info("img1", {"medicosam_dice": {"mean": 0.5}})
    scoring._datastore.objects["img2"].image.info["old_style_change"] = True  # MONAI Label's in-place style
    scoring._update_datastore_file()
    index = json.loads((small_store / INDEX).read_text())["objects"]
    assert index["img0"]["labels"]["final"]["info"]["label_info"] == LABEL_NAMES  # not rolled back
    assert index["img1"]["image"]["info"]["medicosam_dice"] == {"mean": 0.5}  # the other copy's changes
    assert index["img2"]["image"]["info"]["old_style_change"] is True
    # and the server's own answers show the other copy's change without a restart
    assert server.get_image_info("img1")["medicosam_dice"] == {"mean": 0.5}
    assert server.get_labeled_images() == ["img0"]


def test_an_unreadable_index_is_set_aside_and_rebuilt_from_the_files(small_store, tmp_path):
    store = CheckedLocalDatastore(str(small_store))
    store.save_label("img0", _label_file(tmp_path, 2), "final", {})
    text = (small_store / INDEX).read_text()
    (small_store / INDEX).write_text(text[: len(text) // 2])  # what an in-place rewrite killed halfway leaves
    rebuilt = CheckedLocalDatastore(str(small_store))
    assert rebuilt.get_labeled_images() == ["img0"] and len(rebuilt.list_images()) == 3
    assert json.loads((small_store / INDEX).read_text())["objects"]["img0"]["labels"]["final"]
    aside = list(small_store.glob(f"{INDEX}.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == text[: len(text) // 2]


def test_temporary_files_of_killed_saves_are_removed_at_start_and_never_listed(small_store, tmp_path):
    store = CheckedLocalDatastore(str(small_store))
    store.save_label("img0", _label_file(tmp_path, 3), "final", {})
    leftovers = [small_store / "labels" / "final" / ".saving_k2j3h4.part", small_store / ".saving_x.part",
                 small_store / f".{INDEX}.abc123.part", small_store / "labels" / "final" / ".saving_old"]
    for path in leftovers:
        path.write_bytes(b"\x1f\x8b half a file")
    CheckedLocalDatastore(str(small_store))
    assert not any(path.exists() for path in leftovers)
    index = json.loads((small_store / INDEX).read_text())
    names = [label["info"]["name"] for obj in index["objects"].values() for label in obj["labels"].values()]
    assert names == ["img0.nii.gz"]


# -- the real server --------------------------------------------------------------------------------


@dataclass
class Save:
    image: str
    version: int
    data: bytes
    acknowledged: bool = False
    answered_at: float = 0.0


@dataclass
class Ledger:
    """Every save attempted in this module, per image, in the order each client sent them."""

    saves: List[Save] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: Dict[str, int] = field(default_factory=dict)

    def next_version(self, image: str) -> int:
        with self.lock:
            self.versions[image] = self.versions.get(image, 0) + 1
            return self.versions[image]

    def add(self, save: Save) -> None:
        with self.lock:
            self.saves.append(save)

    def acknowledged(self, since: float = 0.0) -> List[Save]:
        return [s for s in self.saves if s.acknowledged and s.answered_at >= since]


class Server:
    """The server on the module's folder, which tests kill with SIGKILL and start again."""

    def __init__(self, studies: Path, logs: Path, env: Dict[str, str]) -> None:
        self.studies, self.logs, self.env = studies, logs, env
        self.starts = 0
        self.url = ""
        self.log = Path()
        self._stack: Optional[contextlib.ExitStack] = None

    def start(self) -> str:
        self.starts += 1
        self.log = self.logs / f"server-{self.starts}.log"
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(running_server(self.studies, self.log, env=self.env))
        assert wait_for_model(self.url)["available"], self.log.read_text()[-2000:]
        return self.url

    def process(self) -> psutil.Process:
        port = self.url.rsplit(":", 1)[1]
        for child in psutil.Process().children():
            command = child.cmdline()
            if "start_server" in command and port in command:
                return child
        raise AssertionError(f"no server process on port {port}")

    def kill(self) -> List[str]:
        """SIGKILL the server and every process it started (training, scoring); names what was killed."""
        server = self.process()
        tasks = server.children(recursive=True)
        killed = ["server"] + [" ".join(t.cmdline()[3:6]) for t in tasks]
        server.kill()
        for task in tasks:
            with contextlib.suppress(psutil.NoSuchProcess):
                task.kill()
        psutil.wait_procs([server, *tasks], timeout=30)
        self._stack.close()
        return killed

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()


class Clients:
    """Annotators saving labels: each client corrects the label of its own image again and again, through
    the Slicer module's client or plain HTTP as the module speaks it, until told to stop or a save fails."""

    def __init__(self, module: "Module", images: List[str], pause: float = 0.05) -> None:
        self.module, self.images, self.pause = module, images, pause
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(image, n % 2 == 0), daemon=True)
                        for n, image in enumerate(images)]

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self, image: str, as_slicer: bool) -> None:
        url = self.module.server.url
        folder = Path(tempfile.mkdtemp(prefix=f"client-{image}-"))
        slicer = slicer_client(url, folder, client_id=f"annotator-{image}") if as_slicer else None
        reference = self.module.references[image]
        while not self.stop.is_set():
            version = self.module.ledger.next_version(image)
            save = Save(image, version, random_label_bytes(reference, seed=hash((image, version)) % 2**32))
            self.module.ledger.add(save)
            params = {"label_info": LABEL_NAMES, "version": version}
            try:
                if slicer is not None:
                    path = folder / "label.nii.gz"
                    path.write_bytes(save.data)
                    slicer.save_label(image, str(path), tag="final", params=params)
                else:
                    response = requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                                            data={"params": json.dumps(params)},
                                            files={"label": ("label.nii.gz", save.data)}, timeout=60)
                    response.raise_for_status()
            except Exception:  # the server was killed under this save (or before it): not acknowledged
                return  # this client stops, as an annotator would, until the server is back
            save.acknowledged, save.answered_at = True, time.time()
            time.sleep(self.pause)


@dataclass
class Module:
    studies: Path
    server: Server
    references: Dict[str, sitk.Image]
    ledger: Ledger = field(default_factory=Ledger)
    figures: Dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def module(tiny256_checkpoint, mni_template, tmp_path_factory) -> Iterator[Module]:
    root = tmp_path_factory.mktemp("kill_recovery")
    studies = write_mni_subjects(root / "studies", mni_template, count=2, unlabelled=4)
    env = {"MEDICOSAM_CHECKPOINT": str(tiny256_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_TRAIN_EPOCHS": "1", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0", "OMP_NUM_THREADS": "1",
           # kept across restarts: the trained decoder versions live here
           "MEDICOSAM_CACHE_DIR": str(root / "cache"),
           # MONAI Label would start a scoring process after every round by itself; here the tests start them
           "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    env.update({f"MEDICOSAM_TRAIN_{k.upper()}": str(v) for k, v in SEMANTIC_TRAINING.items()})
    env["MEDICOSAM_TRAIN_MAX_SLICES_PER_IMAGE"] = "4"  # training and Dice scoring read 4 slices per image
    references = {f"subject_{n}": sitk.ReadImage(str(studies / f"subject_{n}.nii.gz")) for n in range(6)}
    server = Server(studies, root, env)
    server.start()
    state = Module(studies, server, references)
    try:
        yield state
    finally:
        server.stop()
        print("\nkill-recovery figures:", json.dumps(state.figures, indent=1))


# -- what every check after a run or a restart verifies ------------------------------------------------


def verify_every_acknowledged_label(module: Module) -> Dict[str, int]:
    """Each image's label is its last acknowledged version, or a later one that was being saved when the
    server died (its file was complete but the answer never left); the index parses, lists only whole
    files, and no temporary file is left. Returns the counts."""
    url, studies = module.server.url, module.studies
    index = json.loads((studies / INDEX).read_text())  # parses: never half written
    listed = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    # newer_unacknowledged: images whose label is a save the server never answered (killed after the file
    # was complete): allowed, the client saw an error and will save again.
    counts = {"attempted": 0, "acknowledged": 0, "recovered": 0, "newer_unacknowledged": 0}
    by_image: Dict[str, List[Save]] = {}
    for save in module.ledger.saves:
        by_image.setdefault(save.image, []).append(save)
    for image, saves in by_image.items():
        counts["attempted"] += len(saves)
        acknowledged = [s for s in saves if s.acknowledged]
        counts["acknowledged"] += len(acknowledged)
        if not acknowledged:
            continue
        last = max(s.version for s in acknowledged)
        allowed = {s.data: s.version for s in saves if s.version >= last}
        assert "final" in listed[image]["labels"], f"{image}: acknowledged label version {last} is not listed"
        assert "final" in index["objects"][image]["labels"], f"{image}: not in {INDEX}"
        response = requests.get(f"{url}/datastore/label", params={"label": image, "tag": "final"}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.content in allowed, f"{image}: the label read back is none of versions >= {last}"
        assert (studies / "labels" / "final" / f"{image}.nii.gz").read_bytes() == response.content
        assert listed[image]["labels"]["final"]["info"]["version"] >= last
        counts["recovered"] += sum(1 for s in acknowledged if allowed[response.content] >= s.version)
        counts["newer_unacknowledged"] += allowed[response.content] > last
    for entry in index["objects"].values():
        for tag, label in entry["labels"].items():
            name = label["info"]["name"]
            assert not name.startswith(".") and not name.endswith(".part")
            assert (studies / "labels" / tag / name).is_file(), f"{INDEX} lists a missing file {tag}/{name}"
    leftovers = [p.name for p in studies.rglob(".saving_*")] + [p.name for p in studies.glob(f".{INDEX}.*")]
    assert not leftovers, f"temporary files left: {leftovers}"
    assert counts["recovered"] == counts["acknowledged"]
    return counts


# -- task helpers -------------------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[(\d+)\] .*Datastore index read:")


def index_reads(log: Path, server_pid: int) -> List[float]:
    """When the training and scoring processes (any pid but the server's) read their copy of the index."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        found = _LOG_LINE.match(line)
        if found and int(found.group(2)) != server_pid:
            times.append(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def task_status(url: str, kind: str) -> str:
    response = requests.get(f"{url}/{kind}/", timeout=10)
    return response.json().get("status", "") if response.ok else ""


def run_task_while_saving(module: Module, kind: str, path: str, body: dict, images: List[str]) -> Dict[str, object]:
    """Start a training or scoring process, keep saving labels from the moment it has read the index until
    it ends; returns figures (saves acknowledged inside that window, the task's final status)."""
    url, server_pid = module.server.url, module.server.process().pid
    reads_before = len(index_reads(module.server.log, server_pid))
    started = time.time()
    response = requests.post(f"{url}/{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    read_at = wait_until(lambda: index_reads(module.server.log, server_pid)[reads_before:], 120,
                         f"the {kind} process to read the index")[0]
    with Clients(module, images, pause=0.25):  # leave the task most of the two cores
        status = wait_until(lambda: task_status(url, kind) in ("DONE", "ERROR", "STOPPED") and task_status(url, kind),
                            240, f"the {kind} run to end")
    assert status == "DONE", f"{kind} ended {status}:\n{module.server.log.read_text()[-3000:]}"
    window = [s for s in module.ledger.acknowledged(since=read_at)]
    return {"status": status, "seconds": round(time.time() - started, 1), "saved_while_running": len(window)}


# -- the tests, in the order a day goes: train, score, crash, crash again -------------------------------


def test_labels_saved_during_a_training_round_stay_in_the_index(module):
    figures = run_task_while_saving(module, "train", f"train/{SEMANTIC}", {}, ["subject_2", "subject_3"])
    module.figures["training"] = figures
    assert figures["saved_while_running"] >= 3, figures
    index = json.loads((module.studies / INDEX).read_text())["objects"]
    # The training process wrote the index after those saves (its Dice scores of the promoted version) ...
    assert all("medicosam_dice" in index[f"subject_{n}"]["image"]["info"] for n in (0, 1)), index
    # ... and every label acknowledged meanwhile is still there, byte for byte.
    module.figures["after_training"] = verify_every_acknowledged_label(module)


def _dice_scores(module: Module) -> Dict[str, object]:
    objects = json.loads((module.studies / INDEX).read_text())["objects"]
    return {image: entry["image"]["info"].get("medicosam_dice") for image, entry in objects.items()}


def test_labels_saved_during_a_scoring_run_stay_in_the_index(module):
    before = _dice_scores(module)
    images = ["subject_2", "subject_3", "subject_4", "subject_5"]
    figures = run_task_while_saving(module, "scoring", "scoring/medicosam_dice", {}, images)
    module.figures["scoring"] = figures
    assert figures["saved_while_running"] >= 3, figures
    # The scoring process wrote the index after those saves: new scores (of labels that changed since the
    # training round scored them, or that are new) ...
    after = _dice_scores(module)
    assert any(after[image] and after[image] != before[image] for image in images), (before, after)
    # ... and every label acknowledged meanwhile is still there, byte for byte.
    module.figures["after_scoring"] = verify_every_acknowledged_label(module)


def test_sigkill_during_training_and_scoring_loses_no_acknowledged_label(module):
    url, server_pid = module.server.url, module.server.process().pid
    reads_before = len(index_reads(module.server.log, server_pid))
    assert requests.post(f"{url}/train/{SEMANTIC}", json={"force": True}, timeout=30).status_code == 200
    assert requests.post(f"{url}/scoring/medicosam_dice", json={}, timeout=30).status_code == 200
    wait_until(lambda: len(index_reads(module.server.log, server_pid)) >= reads_before + 2, 120,
               "the training and scoring processes to read the index")
    acknowledged = len(module.ledger.acknowledged())
    with Clients(module, ["subject_2", "subject_3", "subject_4", "subject_5"]) as clients:
        wait_until(lambda: len(module.ledger.acknowledged()) >= acknowledged + 8, 60, "8 more acknowledged saves")
        running = {kind: task_status(url, kind) for kind in ("train", "scoring")}
        killed = module.server.kill()
        clients.stop.set()
    module.figures["killed_during_tasks"] = {"killed": killed, "task_status_when_killed": running}
    assert "RUNNING" in running.values(), running
    module.server.start()
    module.figures["after_kill_during_tasks"] = verify_every_acknowledged_label(module)


def test_sigkill_in_a_stream_of_label_saves_loses_no_acknowledged_label(module):
    """Six clients (three through the Slicer module's client) correct labels as fast as they can; the
    server is killed while they do."""
    acknowledged = len(module.ledger.acknowledged())
    images = [f"subject_{n}" for n in range(6)]
    started = time.monotonic()
    with Clients(module, images, pause=0.0) as clients:
        wait_until(lambda: len(module.ledger.acknowledged()) >= acknowledged + 30, 90, "30 more acknowledged saves",
                   every=0.01)
        killed = module.server.kill()
        clients.stop.set()
    module.figures["stream"] = {"seconds": round(time.monotonic() - started, 1), "killed": killed,
                                "acknowledged_in_stream": len(module.ledger.acknowledged()) - acknowledged}
    module.server.start()
    module.figures["after_stream_kill"] = verify_every_acknowledged_label(module)
