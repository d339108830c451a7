"""Health, metrics and sign-in back-off as a hospital's IT sees them, on the real server: /healthz and /readyz open
without sign-in and saying only which check failed, /metrics in Prometheus' format for an admin or a scraper on
this machine, and failed passwords that make the next try wait (429 + Retry-After, in the audit trail)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from medicosam_app.security.permissions import may_call
from medicosam_app.security.users import Role, UserStore

from .harness import running_server, wait_for_model
from .orthanc import running_orthanc


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("health")
    (root / "studies").mkdir()
    users = root / "users.json"
    store = UserStore(users, rounds=4)
    store.add("ann", "ann-pass-1", "annotator")
    store.add("bob", "bob-pass-1", "annotator")
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_USERS_FILE": str(users),
           "MEDICOSAM_AUDIT_DIR": str(root / "audit")}
    with running_server(root / "studies", root / "server.log", env=env, ready_path="/healthz") as url:
        yield url, root


def _token(url: str, user: str, password: str) -> dict:
    answer = requests.post(f"{url}/auth/token", data={"username": user, "password": password}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_health_and_readiness_need_no_sign_in_and_say_nothing_else(signed_in):
    url, root = signed_in
    alive = requests.get(f"{url}/healthz", timeout=10)
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    deadline = time.monotonic() + 60
    while (ready := requests.get(f"{url}/readyz", timeout=10)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)  # the model loads in the background after start-up
    assert ready.json() == {"ready": True, "checks": {"model": "ok", "datastore": "ok", "disk": "ok"}}
    assert str(root) not in ready.text
    assert requests.get(f"{url}/info/", timeout=10).status_code == 401  # everything else still needs sign-in


def test_metrics_for_a_scraper_on_this_machine_count_requests_by_route_and_model(signed_in):
    url, _ = signed_in
    annotator = _token(url, "ann", "ann-pass-1")
    for _ in range(2):
        requests.post(f"{url}/infer/medicosam_interactive", params={"image": "missing"}, headers=annotator,
                      files={"params": (None, json.dumps({"foreground": [[1, 1, 0]]}))}, timeout=60)
    scraped = requests.get(f"{url}/metrics", timeout=10)  # no token: the test runs on the server's machine
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert 'medicosam_http_requests_total{method="POST",route="/infer/{model}",status="4xx"} 2.0' in text
    assert 'medicosam_infer_seconds_count{model="medicosam_interactive"} 2.0' in text
    assert 'medicosam_model_ready{state="ready"} 1.0' in text
    assert "medicosam_embedding_cache_max_bytes" in text and "process_resident_memory_bytes" in text
    assert 'route="/infer/missing' not in text  # ids and paths never become labels


@pytest.mark.parametrize("role, local, allowed", [
    (None, True, True), (None, False, False), (Role.ANNOTATOR, False, False), (Role.ADMIN, False, True),
])
def test_metrics_are_for_an_admin_or_a_caller_on_this_machine(role, local, allowed):
    assert may_call(role, "GET", "/metrics", from_loopback=local) is allowed
    assert may_call(role, "GET", "/healthz", from_loopback=local) and may_call(role, "GET", "/readyz")


def test_a_pacs_that_stops_mid_session(tmp_path, tiny_checkpoint):
    """A PACS that stops: /readyz answers 503 with Retry-After within seconds (each probe asks the PACS again, so
    it is ready as soon as the PACS answers), /healthz still says alive, a series opened before keeps serving
    clicks from the cache, and a series never opened is a 503 with Retry-After within seconds, not a hang."""
    import build_dicom
    import pydicom

    from .orthanc import upload

    dicom = build_dicom.build(tmp_path / "dicom")
    series = {name: str(pydicom.dcmread(str(next((dicom / name).glob("*.dcm"))), stop_before_pixels=True)
                        .SeriesInstanceUID) for name in ("phantom_ct", "mni_mr")}
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0"}
    click = {"foreground": [[60, 40, 20]], "client_id": "c"}

    def infer(url, image):
        return requests.post(f"{url}/infer/medicosam_interactive", params={"image": image, "output": "json"},
                             files={"params": (None, json.dumps(click))}, timeout=60)

    with running_orthanc(tmp_path / "orthanc") as pacs:
        upload(pacs, dicom)
        with running_server(pacs, tmp_path / "server.log", env=env, ready_path="/healthz") as url:
            wait_for_model(url)
            assert requests.get(f"{url}/readyz", timeout=10).json()["checks"]["datastore"] == "ok"
            assert infer(url, series["phantom_ct"]).status_code == 200  # downloaded and cached
            port = int(pacs.split(":")[2].split("/")[0])
            pacs_stopped(pacs)
            started = time.monotonic()
            answer = requests.get(f"{url}/readyz", timeout=30)
            assert time.monotonic() - started < 6
            assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
            assert answer.json()["checks"]["datastore"] == "PACS unreachable"
            assert str(port) not in answer.text and "127.0.0.1" not in answer.text
            assert requests.get(f"{url}/healthz", timeout=10).status_code == 200  # alive, just not ready
            assert infer(url, series["phantom_ct"]).status_code == 200  # cached: clicks go on
            started = time.monotonic()
            unseen = infer(url, series["mni_mr"])
            assert time.monotonic() - started < 10
            assert unseen.status_code == 503 and unseen.headers["retry-after"] == "10"
            assert "the PACS is not answering" in unseen.json()["detail"]


def pacs_stopped(pacs_url: str) -> None:
    """Stop the Orthanc behind ``pacs_url`` through its REST API, and wait until it no longer answers."""
    from .orthanc import rest_root

    root = rest_root(pacs_url)
    requests.post(f"{root}/tools/shutdown", timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"{root}/system", timeout=1)
        except requests.ConnectionError:
            return
        time.sleep(0.2)
    raise AssertionError("Orthanc did not stop")


def test_failed_passwords_make_the_next_sign_in_wait(signed_in):
    url, root = signed_in
    for _ in range(3):
        wrong = requests.post(f"{url}/auth/token", data={"username": "bob", "password": "guess"}, timeout=30)
        assert wrong.status_code == 401
    throttled = requests.post(f"{url}/auth/token", data={"username": "bob", "password": "bob-pass-1"}, timeout=30)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert "try again in 1 s" in throttled.json()["detail"]  # even the right password waits: no probing
    form = requests.post(f"{url}/auth/signin", data={"username": "bob", "password": "bob-pass-1", "next": "/ohif/"},
                         allow_redirects=False, timeout=30)
    assert form.status_code == 429 and "try again in" in form.text  # the browser's sign-in page too
    time.sleep(1.2)  # the first wait is one second
    assert requests.post(f"{url}/auth/token", data={"username": "bob", "password": "bob-pass-1"}, timeout=30).ok
    records = [json.loads(line) for line in (root / "audit" / "audit.jsonl").read_text().splitlines()]
    bob = [r["status"] for r in records if r["event"] == "sign_in" and r.get("user") in ("bob", None)
           and r["status"] in (401, 429)]
    assert bob.count(429) >= 2 and bob.count(401) >= 3
