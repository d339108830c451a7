"""The encoder's large tensors stay in the heap: no page faults on every pass (medicosam_app/runtime/heap.py).

In a fresh process, a worker thread (as the server's request threads) allocates a 256 MiB tensor, and asks
malloc where it came from (``mallinfo2``: mapped on its own, or from the heap); then it mallocs, fills and
frees a 256 MiB block four times while the kernel counts minor page faults.

(A tensor freed and allocated again at the same size can still miss the heap's free block, by the few bytes
of the alignment torch asks for, so the repeated passes use malloc directly. The whole effect on the encoder is
measured by benchmarks/click_latency.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medicosam_app.runtime.heap import HeapTuning, glibc_tunables, is_glibc

REPO = Path(__file__).resolve().parents[2]
BLOCK = 256 * 2**20
PAGES_PER_PASS = BLOCK // 4096

WORKER_PASSES = textwrap.dedent(
    f"""
    import ctypes, json, resource, sys, threading
    import torch
    from medicosam_app.runtime.heap import keep_large_buffers

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    state = keep_large_buffers() if sys.argv[1] == "mallopt" else None
    result = {{"faults": [], "state": state}}

    def passes():
        tensor = torch.empty({BLOCK} // 4, dtype=torch.float32)
        result["tensor_mapped_alone"] = libc.mallinfo2().hblkhd >= {BLOCK}
        del tensor
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = libc.malloc({BLOCK})
            ctypes.memset(block, 1, {BLOCK})
            libc.free(block)
            result["faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    threading.Thread(target=lambda: [bytearray(2**20) for _ in range(4)]).start()  # an early thread, as torch's
    worker = threading.Thread(target=passes)
    worker.start()
    worker.join()
    print(json.dumps(result))
    """
)


def run_passes(mode: str, tunables: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MEDICOSAM_MALLOC_TUNING")}
    env["PYTHONPATH"] = str(REPO)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run([sys.executable, "-c", WORKER_PASSES, mode], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


glibc_only = pytest.mark.skipif(not is_glibc(), reason="malloc tuning is for glibc")


@glibc_only
def test_without_tuning_every_pass_of_a_worker_thread_faults_in_its_buffer_again():
    result = run_passes("none")
    assert result["tensor_mapped_alone"] is True
    assert min(result["faults"][1:]) > 0.9 * PAGES_PER_PASS, result  # the reason the tuning exists


@glibc_only
def test_started_with_the_servers_tunables_a_worker_thread_reuses_its_buffer():
    result = run_passes("none", glibc_tunables(environ={}))
    assert result["tensor_mapped_alone"] is False
    faults = result["faults"]
    assert faults[0] > 0.9 * PAGES_PER_PASS  # the first pass grows the heap
    assert max(faults[1:]) < 0.02 * PAGES_PER_PASS, faults


@glibc_only
def test_mallopt_at_start_up_reports_what_it_did_and_threads_started_after_it_reuse_the_heap():
    result = run_passes("mallopt")
    state = result["state"]
    assert state["applied"] is True and state["arena_max"] == 1 and state["mmap_threshold"] == 1 << 30
    assert state["all_threads"] is False  # no GLIBC_TUNABLES: threads with an arena of their own keep it
    assert result["tensor_mapped_alone"] is False
    assert max(result["faults"][1:]) < 0.02 * PAGES_PER_PASS, result["faults"]


def test_tunables_keep_what_is_set_and_follow_the_switch():
    tuning = HeapTuning().as_tunables()
    if not is_glibc():
        assert glibc_tunables(environ={}) == ""
        return
    assert glibc_tunables(environ={}) == tuning
    assert glibc_tunables(environ={"GLIBC_TUNABLES": "glibc.cpu.x86_ibt=on"}) == f"glibc.cpu.x86_ibt=on:{tuning}"
    assert glibc_tunables(environ={"MEDICOSAM_MALLOC_TUNING": "false"}) == ""
    assert glibc_tunables(["--port", "8000", "--conf", "malloc_tuning", "off"], environ={}) == ""
    assert glibc_tunables(["--conf", "malloc_tuning", "true"], environ={"MEDICOSAM_MALLOC_TUNING": "off"}) == tuning
    assert glibc_tunables(["--conf", "malloc_tuning"], environ={}) == tuning  # no value: the default


def test_start_server_script_exports_the_tunables_it_is_given(tmp_path):
    """The script's own lines, run with a stand-in for python's output: the export is what the server inherits."""
    script = (REPO / "scripts" / "start_server.sh").read_text()
    lines = [line for line in script.splitlines() if "tunables" in line and not line.lstrip().startswith("#")]
    assert len(lines) == 2, lines
    probe = "\n".join(lines).replace(".venv/bin/python -m medicosam_app.runtime.heap", 'echo "$FAKE"')
    probe += '\necho "[${GLIBC_TUNABLES:-}]"\n'
    for fake, expected in (("glibc.malloc.arena_max=1", "[glibc.malloc.arena_max=1]"), ("", "[]")):
        out = subprocess.run(["bash", "-c", "set -euo pipefail; args=(); " + probe], env={"FAKE": fake, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True)
        assert out.stdout.strip() == expected, out
