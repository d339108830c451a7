"""The route table drives the server: a route added to it and nowhere else is checked for its role, guarded by
the check its row names, audited under its event, served from the thread pool, bounded in body size, and decides
ownership.

These tests put the real middleware and wrappers (the ones the server installs at start-up) in front of a small
FastAPI app whose one route is new, with a table that is the real one plus that route's row.
"""

from __future__ import annotations

import json
import sys
import threading

import pytest

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from medicosam_app.security.audit import AuditLog
from medicosam_app.security.permissions import RULES, Rule, may_act_on_others, rule_for
from medicosam_app.security.users import Role, UserStore

from .harness import REPO

sys.path.insert(0, str(REPO / "apps" / "medicosam"))
from lib.access.access_control import SiteAccess, install_access_control  # noqa: E402
from lib.guards import guard_requests  # noqa: E402
from lib.http.body_limits import SMALL_BODY_BYTES, BodyLimits  # noqa: E402
from lib.access.request_context import may_act_for_others, role_for_others  # noqa: E402
from lib.http.responsive_server import serve_in_threads  # noqa: E402

NEW_ROW = Rule("POST", "/toy/{name}", Role.REVIEWER, "a route only this table knows", others=Role.ADMIN,
               audit="toy_event", guard="info_json", heavy=True, uploads=True)
UPLOAD_BYTES = 2 << 20  # the toy server's session_max_mb
LIGHT_ROW = Rule("POST", "/toy-light/{name}", Role.ANNOTATOR, "the same route, light and unchecked")
TABLE = RULES + (NEW_ROW, LIGHT_ROW)


def _served(tmp_path, rules=TABLE):
    """A FastAPI app with the two toy routes behind the server's access control, guards and thread pool, driven
    by ``rules``; the calls the routes saw; and a token per role."""
    seen = []
    app = FastAPI()

    async def toy(name: str, info: str = Form("{}"), upload: UploadFile = File(None)):
        seen.append({"name": name, "info": info, "upload": len(await upload.read()) if upload else 0, "thread": threading.current_thread().name,
                     "others": may_act_for_others(), "others_role": role_for_others().label})
        return {"name": name}

    app.post("/toy/{name}")(toy)
    app.post("/toy-light/{name}")(toy)
    users = UserStore(tmp_path / "users.json")
    for name, role in (("ann", Role.ANNOTATOR), ("rev", Role.REVIEWER), ("adm", Role.ADMIN)):
        users.add(name, "a long enough password", role)
    access = SiteAccess(tmp_path / "users.json", AuditLog(tmp_path / "audit"), rules=rules)
    app.user_middleware.insert(0, Middleware(BodyLimits, upload_bytes=lambda: UPLOAD_BYTES, rules=rules))
    install_access_control(app, access, cors_origins=None)
    guard_requests(app, lambda: None, rules)
    serve_in_threads(app, rules)
    tokens = {name: access.tokens.issue(access.users.get(name)) for name in ("ann", "rev", "adm")}
    return TestClient(app), seen, tokens, access


def _audit_lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "audit").glob("*.jsonl").__next__().read_text().splitlines()]


def _post(client, path, token, info="{}", upload=None):
    files = {"upload": ("image.nii.gz", upload)} if upload is not None else None
    return client.post(path, data={"info": info}, files=files, headers={"Authorization": f"Bearer {token}"})


def test_a_route_added_to_the_table_only_is_guarded_audited_and_threaded(tmp_path):
    client, seen, tokens, _ = _served(tmp_path)

    # Its role: an annotator is refused before the endpoint runs, a reviewer passes.
    refused = _post(client, "/toy/a", tokens["ann"])
    assert refused.status_code == 403 and "reviewer" in refused.json()["detail"]
    assert seen == []
    # Its guard (info_json): a body that is not a JSON object is a 422 before the endpoint runs.
    bad = _post(client, "/toy/b", tokens["rev"], info="[1, 2]")
    assert bad.status_code == 422 and "info" in bad.json()["detail"]
    assert seen == []
    good = _post(client, "/toy/c", tokens["rev"], info='{"k": 1}')
    assert good.status_code == 200 and good.json() == {"name": "c"}
    # Its row decides who may act on others' objects: a reviewer may not (the row asks for admin), an admin may.
    assert [call["others"] for call in seen] == [False] and seen[0]["others_role"] == "admin"
    assert _post(client, "/toy/d", tokens["adm"]).status_code == 200
    assert seen[-1]["others"] is True

    # Its audit event: every call leaves a line under it; the refused one is kept as refused.
    lines = [line for line in _audit_lines(tmp_path) if line["endpoint"].startswith("POST /toy/")]
    assert [(line["event"], line["status"], line["user"]) for line in lines] == [
        ("refused", 403, "ann"), ("toy_event", 422, "rev"), ("toy_event", 200, "rev"), ("toy_event", 200, "adm"),
    ]

    # Heavy: the same endpoint on a light row runs on the event loop's thread, on the heavy row in a worker.
    assert _post(client, "/toy-light/e", tokens["ann"]).status_code == 200
    heavy_thread, light_thread = seen[-2]["thread"], seen[-1]["thread"]
    assert heavy_thread != light_thread
    # The light row names no audit event and no guard: no line, and a malformed body reaches the endpoint.
    assert _post(client, "/toy-light/f", tokens["ann"], info="[1, 2]").status_code == 200
    assert not [line for line in _audit_lines(tmp_path) if line["endpoint"].startswith("POST /toy-light/")]

    # Uploads: the heavy row takes a body of files up to session_max_mb; the light row only a small one.
    big = b"x" * (SMALL_BODY_BYTES + 1000)
    assert _post(client, "/toy/g", tokens["rev"], upload=big).status_code == 200 and seen[-1]["upload"] == len(big)
    too_big = _post(client, "/toy-light/h", tokens["ann"], upload=big)
    assert too_big.status_code == 413, too_big.text
    assert _post(client, "/toy/i", tokens["rev"], upload=b"x" * (UPLOAD_BYTES + SMALL_BODY_BYTES)).status_code == 413


def test_without_its_row_the_route_is_closed_to_all_but_admins(tmp_path):
    client, seen, tokens, _ = _served(tmp_path, rules=RULES)
    assert _post(client, "/toy/a", tokens["rev"]).status_code == 403
    assert _post(client, "/toy/a", tokens["adm"]).status_code == 200
    assert seen[-1]["others"] is True  # admin, on a route outside the table


def test_a_row_naming_an_unknown_check_stops_the_start(tmp_path):
    rules = RULES + (Rule("POST", "/toy/{name}", Role.ANNOTATOR, "mistyped check", guard="no_such_check"),)
    app = FastAPI()
    app.post("/toy/{name}")(lambda name: name)
    with pytest.raises(KeyError, match="no_such_check"):
        guard_requests(app, lambda: None, rules)


def test_ownership_follows_the_others_column():
    label_save = rule_for("PUT", "/datastore/label")
    session_delete = rule_for("DELETE", "/session/abc")
    assert label_save.others is Role.REVIEWER and session_delete.others is Role.ADMIN
    assert not may_act_on_others(Role.ANNOTATOR, label_save) and may_act_on_others(Role.REVIEWER, label_save)
    assert not may_act_on_others(Role.REVIEWER, session_delete) and may_act_on_others(Role.ADMIN, session_delete)
    assert not may_act_on_others(Role.REVIEWER, None)  # a route outside the table: admin
