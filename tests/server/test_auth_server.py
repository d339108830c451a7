"""Sign-in, roles and the audit trail on the real server with a users file (issue 12).

The Slicer module's own client library signs in through MONAI Label's protocol (``GET /auth/``,
``POST /auth/token``, bearer token on every call), clicks, saves and asks for the next sample. Everything
else is plain HTTP as any client would send it; the audit trail is read back from disk and through the
``python -m medicosam_app audit`` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import SEMANTIC_TRAINING, asymmetric_array, write_volume
from medicosam_app.security.tokens import TokenIssuer, secret_file_for
from medicosam_app.security.users import UserStore

from .harness import REPO, running_server, slicer_client

pytestmark = pytest.mark.server
SHAPE = (40, 30, 12)
PASSWORDS = {"ann": "ann-pass-1", "ann2": "ann2-pass-1", "rev": "rev-pass-1", "adm": "adm-pass-1"}
ROLES = {"ann": "annotator", "ann2": "annotator", "rev": "reviewer", "adm": "admin"}
CLICK = {"foreground": [[30, 7, 5]], "background": [], "slice": 5, "label": "organ"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny256_checkpoint):
    root = tmp_path_factory.mktemp("auth")
    studies = root / "studies"
    studies.mkdir()
    write_volume(studies / "oblique.nii.gz", asymmetric_array(SHAPE))
    write_volume(studies / "second.nii.gz", asymmetric_array(SHAPE, seed=7))
    users_file = root / "users.json"
    store = UserStore(users_file, rounds=4)
    for name, password in PASSWORDS.items():
        store.add(name, password, ROLES[name])
    audit_dir = root / "audit"
    env = {
        "MEDICOSAM_CHECKPOINT": str(tiny256_checkpoint),
        "MEDICOSAM_USERS_FILE": str(users_file),
        "MEDICOSAM_AUDIT_DIR": str(audit_dir),
        "MEDICOSAM_RETRAIN_AFTER_LABELS": "0",
        "MEDICOSAM_TRAIN_EPOCHS": "1",
        "MONAI_LABEL_SESSIONS": "true",
        **{f"MEDICOSAM_TRAIN_{key.upper()}": str(value) for key, value in SEMANTIC_TRAINING.items()},
    }
    with running_server(studies, root / "server.log", env=env, ready_path="/auth/") as url:
        yield {"url": url, "root": root, "studies": studies, "users_file": users_file, "audit": audit_dir,
               "log": root / "server.log"}


def token(site, name: str) -> str:
    response = requests.post(f"{site['url']}/auth/token", data={"username": name, "password": PASSWORDS[name]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(site, name: str) -> dict:
    return {"Authorization": f"Bearer {token(site, name)}"}


def audit_records(site) -> list:
    path = site["audit"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_model(site, headers, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = requests.get(f"{site['url']}/info/", headers=headers, timeout=10).json()
        if info["models"]["medicosam_interactive"]["model_status"]["state"] != "loading":
            return
        time.sleep(0.2)


def test_slicers_client_signs_in_clicks_saves_and_gets_the_next_sample(site, tmp_path):
    client = slicer_client(site["url"], tmp_path / "client", client_id="slicer-ann")
    assert client.auth_enabled() is True
    client.update_auth(client.auth_token("ann", PASSWORDS["ann"]))
    assert client.auth_valid_token() is True
    wait_for_model(site, client._headers)
    assert "medicosam_interactive" in client.info()["models"]

    result_file, params = client.infer("medicosam_interactive", "oblique", dict(CLICK, client_id="slicer-ann"))
    assert params["slice"] == 5 and Path(result_file).exists()
    label = tmp_path / "label.nii.gz"
    write_volume(label, (asymmetric_array(SHAPE) > 60).astype(np.uint8))
    client.save_label("oblique", str(label), params={"label_info": [{"name": "organ", "idx": 1}]})
    sample = client.next_sample("random", {})
    assert sample["id"] in {"oblique", "second"}

    records = audit_records(site)
    click = [r for r in records if r["event"] == "infer" and r["user"] == "ann"][-1]
    assert click["status"] == 200 and click["role"] == "annotator" and click["image"] == "oblique"
    assert click["task"] == "medicosam_interactive" and click["prompts"]["foreground"] == [[30, 7, 5]]
    assert click["prompts"]["slice"] == 5 and click["model"]["checkpoint_xxh128"]
    assert click["result"]["slice_range"] in ([5, 5], None) and "label_hash" in click["result"]
    saved = [r for r in records if r["event"] == "label_save" and r["user"] == "ann"][-1]
    assert saved["status"] == 200 and saved["image"] == "oblique"
    assert saved["result"]["voxels"] == int((asymmetric_array(SHAPE) > 60).sum())
    listing = requests.get(f"{site['url']}/datastore/", params={"output": "all"}, headers=client._headers, timeout=10)
    assert listing.json()["objects"]["oblique"]["labels"]["final"]["info"]["annotator"] == "ann"


@pytest.mark.parametrize("method, path", [
    ("GET", "/info/"), ("GET", "/datastore/"), ("POST", "/infer/medicosam_interactive?image=oblique"),
    ("GET", "/datastore/image?image=oblique"), ("GET", "/datastore/dataset"), ("POST", "/train/medicosam_semantic"),
    ("DELETE", "/datastore/image?id=oblique"), ("GET", "/proxy/dicom/qido/studies"), ("GET", "/logs/"),
    ("GET", "/some/route/nobody/declared"),
])
def test_without_a_token_every_route_answers_401(site, method, path):
    response = requests.request(method, f"{site['url']}{path}", timeout=30)
    assert response.status_code == 401, response.text
    assert "sign" in response.json()["detail"].lower() and response.headers["WWW-Authenticate"] == "Bearer"
    assert (site["studies"] / "oblique.nii.gz").exists()


def test_wrong_password_is_401_and_recorded(site):
    before = len(audit_records(site))
    response = requests.post(f"{site['url']}/auth/token", data={"username": "ann", "password": "guess"}, timeout=30)
    assert response.status_code == 401 and "Wrong user name or password" in response.json()["detail"]
    unknown = requests.post(f"{site['url']}/auth/token", data={"username": "nobody", "password": "x"}, timeout=30)
    assert unknown.status_code == 401
    records = audit_records(site)[before:]
    assert [(r["event"], r["status"]) for r in records] == [("sign_in", 401), ("sign_in", 401)]
    assert "guess" not in json.dumps(records)  # passwords never reach the trail


def test_expired_forged_and_revoked_tokens_are_401(site):
    secret = secret_file_for(site["users_file"])
    store = UserStore(site["users_file"])
    expired = TokenIssuer(secret, lifetime_s=60, clock=lambda: time.time() - 3600).issue(store.get("ann"))
    forged = TokenIssuer(site["root"] / "another-secret", lifetime_s=60).issue(store.get("adm"))
    for bad, why in ((expired, "expired"), (forged, "not valid"), ("not-a-token", "not valid")):
        response = requests.get(f"{site['url']}/info/", headers={"Authorization": f"Bearer {bad}"}, timeout=10)
        assert response.status_code == 401 and why in response.json()["detail"], response.text
    store.add("leaver", "leaver-pass-1", "annotator")
    signed_in = requests.post(f"{site['url']}/auth/token", data={"username": "leaver", "password": "leaver-pass-1"}, timeout=30)
    headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    assert requests.get(f"{site['url']}/info/", headers=headers, timeout=10).status_code == 200
    store.remove("leaver")
    response = requests.get(f"{site['url']}/info/", headers=headers, timeout=10)
    assert response.status_code == 401 and "no longer exists" in response.json()["detail"]


def test_roles_annotator_may_not_train_delete_or_download_the_dataset_admin_may(site):
    annotator, admin = bearer(site, "ann"), bearer(site, "adm")
    refused = [
        requests.post(f"{site['url']}/train/medicosam_semantic", json={"force": True}, headers=annotator, timeout=30),
        requests.delete(f"{site['url']}/datastore/image", params={"id": "second"}, headers=annotator, timeout=30),
        requests.get(f"{site['url']}/datastore/dataset", headers=annotator, timeout=30),
        requests.post(f"{site['url']}/scoring/medicosam_dice", headers=annotator, timeout=30),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert "needs the role" in response.json()["detail"] and "'ann' is annotator" in response.json()["detail"]
    assert (site["studies"] / "second.nii.gz").exists()
    assert requests.post(f"{site['url']}/scoring/medicosam_dice", headers=bearer(site, "rev"), timeout=30).status_code == 200
    response = requests.post(f"{site['url']}/train/medicosam_semantic", json={"epochs": 1}, headers=admin, timeout=30)
    assert response.status_code == 200, response.text
    records = audit_records(site)
    assert any(r["event"] == "refused" and r["status"] == 403 and r["endpoint"] == "POST /train/medicosam_semantic"
               and r["user"] == "ann" for r in records)
    assert any(r["event"] == "train" and r["status"] == 200 and r["user"] == "adm" for r in records)
    # The round itself runs in a process of its own and writes its line, under the admin's name, when done.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rounds = [r for r in audit_records(site) if r["event"] == "train" and r["status"] == "trained"]
        if rounds:
            break
        time.sleep(1)
    assert rounds and rounds[-1]["user"] == "adm" and rounds[-1]["model"]["semantic_version"] == "v0001"
    promotions = [r for r in audit_records(site) if r["event"] == "promote"]
    assert promotions and promotions[-1]["user"] == "adm" and "first version" in promotions[-1]["detail"]


def test_training_options_are_bounded(site):
    admin = bearer(site, "adm")
    for options, name in (({"epochs": 100000}, "epochs"), ({"max_slices_per_image": 10**6}, "max_slices_per_image"),
                          ({"batch_size": 4096}, "batch_size"), ({"learning_rate": 50}, "learning_rate"),
                          ({"nproc": 512}, "nproc"), ({"val_fraction": 0.99}, "val_fraction")):
        response = requests.post(f"{site['url']}/train/medicosam_semantic", json=options, headers=admin, timeout=30)
        assert response.status_code == 422 and name in response.json()["detail"], (options, response.text)


def test_another_annotators_label_needs_a_reviewer(site, tmp_path):
    label = tmp_path / "label.nii.gz"
    write_volume(label, np.ones(SHAPE, dtype=np.uint8))
    files = lambda: {"label": ("label.nii.gz", label.read_bytes())}  # noqa: E731
    form = {"params": json.dumps({"label_info": [{"name": "x", "idx": 1}]})}
    url = f"{site['url']}/datastore/label"
    saved = requests.put(url, params={"image": "second", "tag": "draft"}, data=form, files=files(),
                         headers=bearer(site, "ann"), timeout=30)
    assert saved.status_code == 200, saved.text
    other = bearer(site, "ann2")
    replaced = requests.put(url, params={"image": "second", "tag": "draft"}, data=form, files=files(), headers=other, timeout=30)
    assert replaced.status_code == 403 and "saved by 'ann'" in replaced.json()["detail"]
    read = requests.get(url, params={"label": "second", "tag": "draft"}, headers=other, timeout=30)
    assert read.status_code == 403
    assert requests.get(url, params={"label": "second", "tag": "draft"}, headers=bearer(site, "ann"), timeout=30).ok
    assert requests.get(url, params={"label": "second", "tag": "draft"}, headers=bearer(site, "rev"), timeout=30).ok


def test_a_session_serves_only_the_user_who_uploaded_it(site):
    upload = {"files": ("mine.nii.gz", (site["studies"] / "oblique.nii.gz").read_bytes())}
    created = requests.put(f"{site['url']}/session/", files=upload, headers=bearer(site, "ann"), timeout=30)
    assert created.status_code == 200, created.text
    session_id = created.json()["session_id"]
    click = {"params": (None, json.dumps(CLICK))}
    infer = f"{site['url']}/infer/medicosam_interactive"
    other = requests.post(infer, params={"session_id": session_id, "output": "json"}, files=click,
                          headers=bearer(site, "ann2"), timeout=60)
    assert other.status_code == 404, other.text
    assert requests.get(f"{site['url']}/session/{session_id}", headers=bearer(site, "ann2"), timeout=10).status_code == 404
    own = requests.post(infer, params={"session_id": session_id, "output": "json"}, files=click,
                        headers=bearer(site, "ann"), timeout=60)
    assert own.status_code == 200, own.text


def test_fifty_mixed_requests_leave_fifty_audit_lines_that_parse_back(site):
    annotator = bearer(site, "ann")
    before = len(audit_records(site))
    sent = []
    for n in range(50):
        kind = n % 5
        if kind == 0:
            response = requests.post(f"{site['url']}/infer/medicosam_interactive", params={"image": "oblique", "output": "json"},
                                     files={"params": (None, json.dumps(dict(CLICK, foreground=[[20 + n % 10, 7, 5]])))},
                                     headers=annotator, timeout=60)
        elif kind == 1:
            # A made-up user: ten wrong passwords make that name wait (the back-off), not "ann" in later tests.
            response = requests.post(f"{site['url']}/auth/token", data={"username": "mallory", "password": "wrong"},
                                     timeout=30)
        elif kind == 2:
            response = requests.get(f"{site['url']}/info/", timeout=10)  # no token
        elif kind == 3:
            response = requests.post(f"{site['url']}/train/medicosam_semantic", json={}, headers=annotator, timeout=30)
        else:
            response = requests.post(f"{site['url']}/infer/medicosam_interactive", params={"image": "no-such", "output": "json"},
                                     files={"params": (None, json.dumps(CLICK))}, headers=annotator, timeout=60)
        sent.append(response.status_code)
    assert sent[:5] == [200, 401, 401, 403, 404]
    records = audit_records(site)[before:]
    assert len(records) == 50
    assert [r["status"] for r in records] == sent
    assert all(r["time"].endswith("Z") and r["endpoint"] for r in records)
    command = [sys.executable, "-m", "medicosam_app", "audit", "--user", "ann", "--json"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"MEDICOSAM_AUDIT_DIR": str(site["audit"]), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    queried = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {r["user"] for r in queried} == {"ann"} and len(queried) >= 30


def test_ohif_pages_redirect_to_the_sign_in_page_and_the_cookie_opens_the_rest(site):
    page = requests.get(f"{site['url']}/ohif/", allow_redirects=False, timeout=10)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/signin?next=")
    form = requests.get(f"{site['url']}{page.headers['location']}", timeout=10)
    assert form.status_code == 200 and 'name="password"' in form.text
    with requests.Session() as browser:
        wrong = browser.post(f"{site['url']}/auth/signin", data={"username": "ann", "password": "x", "next": "/ohif/"},
                             allow_redirects=False, timeout=30)
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        signed = browser.post(f"{site['url']}/auth/signin",
                              data={"username": "ann", "password": PASSWORDS["ann"], "next": "https://evil.example/"},
                              allow_redirects=False, timeout=30)
        assert signed.status_code == 303 and signed.headers["location"] == "/ohif/"  # no open redirect
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert browser.get(f"{site['url']}/info/", timeout=10).status_code == 200
        assert browser.get(f"{site['url']}/ohif/", allow_redirects=False, timeout=10).status_code == 200
        assert browser.get(f"{site['url']}/datastore/dataset", timeout=10).status_code == 403  # still an annotator


def test_cors_allows_no_other_origin_when_sign_in_is_on(site):
    response = requests.options(f"{site['url']}/info/", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, timeout=10)
    assert response.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")


def test_listening_beyond_this_machine_without_sign_in_warns_what_is_exposed(tmp_path, tiny_checkpoint):
    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "oblique.nii.gz", asymmetric_array(SHAPE))
    log = tmp_path / "server.log"
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_AUDIT_DIR": str(tmp_path / "audit")}
    with running_server(studies, log, env=env, host="0.0.0.0") as url:  # the test only talks to 127.0.0.1
        assert requests.get(f"{url}/info/", timeout=10).status_code == 200  # no sign-in: open, as configured
        text = log.read_text()
    assert "listens on 0.0.0.0 without sign-in" in text and "users add" in text
    quiet = tmp_path / "quiet.log"
    with running_server(studies, quiet, env=env) as url:
        assert requests.get(f"{url}/info/", timeout=10).status_code == 200
        assert "without sign-in" not in quiet.read_text()
