"""medicosam_app.security.permissions: every route MONAI Label 0.8.5 serves has an explicit rule.

The routes are discovered from MONAI Label itself (its routers and the app object), here in the test only:
the core never imports monailabel.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Set, Tuple

import pytest

from medicosam_app.security.permissions import (
    DEFAULT_ROLE,
    RULES,
    markdown_table,
    may_call,
    required_role,
    rule_for,
)
from medicosam_app.security.users import Role

REPO = Path(__file__).resolve().parents[2]
SECURITY_DOC = REPO / "docs" / "security.md"
A, R, AD = Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN
# Rules with no MONAI Label route of their own: CORS preflight for any path.
EXTRA_RULES = {
    ("OPTIONS", "/{path:path}"),  # answered by the CORS middleware
    # the sign-in page for browsers (OHIF), added by apps/medicosam/lib/access_control.py
    ("GET", "/auth/signin"), ("POST", "/auth/signin"), ("POST", "/auth/signout"),
    # health and metrics, added by apps/medicosam/lib/health.py and lib/metrics.py (test_health_server.py)
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
}


def monai_label_routes() -> Set[Tuple[str, str]]:
    """(method, route template) of every route MONAI Label 0.8.5 serves, auth routes included."""
    import monailabel
    import monailabel.endpoints as endpoints
    from starlette.routing import Mount, Route

    assert monailabel.__version__.startswith("0.8.5"), "a new MONAI Label: review the permission table"
    routes: Set[Tuple[str, str]] = set()
    for module in pkgutil.iter_modules(endpoints.__path__):
        router = getattr(importlib.import_module(f"monailabel.endpoints.{module.name}"), "router", None)
        for route in getattr(router, "routes", []):
            routes.update((method, route.path) for method in route.methods)
    from monailabel.app import app  # the app-level routes: /, /docs, /openapi.json, /favicon.ico, /reload, /static

    for route in app.router.routes:
        if isinstance(route, Mount):
            routes.add(("GET", route.path + "/{path:path}"))
        elif isinstance(route, Route):
            routes.update((method, route.path) for method in route.methods)
    return routes


def concrete(template: str) -> str:
    """A real path for a route template: ``{x}`` → one segment, ``{x:path}`` → several."""
    return re.sub(r"\{[^}:]+\}", "some-id", template.replace("{path:path}", "dir/file.js"))


@pytest.fixture(scope="module")
def routes() -> Set[Tuple[str, str]]:
    return monai_label_routes()


def test_discovery_found_monai_labels_routes(routes):
    assert len(routes) > 50
    for expected in [("POST", "/infer/{model}"), ("PUT", "/datastore/label"), ("POST", "/auth/token"),
                     ("GET", "/ohif/{path:path}"), ("POST", "/reload"), ("GET", "/static/{path:path}")]:
        assert expected in routes


def test_every_monai_label_route_has_its_own_rule(routes):
    problems = []
    for method, template in sorted(routes):
        rule = rule_for(method, concrete(template))
        if rule is None:
            problems.append(f"{method} {template}: no rule (it would need {DEFAULT_ROLE.label} by default)")
        # The rule written for this very route, not a broader one that happens to match; HEAD may use GET's.
        elif rule.route != template or rule.method not in (method, "GET" if method == "HEAD" else method):
            problems.append(f"{method} {template}: answered by the rule for {rule.method} {rule.route}")
    assert not problems, "\n".join(problems)


def test_no_rule_without_a_route(routes):
    stale = {(rule.method, rule.route) for rule in RULES} - routes - EXTRA_RULES
    assert not stale, f"rules for routes MONAI Label does not serve: {sorted(stale)}"
    assert len({(rule.method, rule.route) for rule in RULES}) == len(RULES), "a route has two rules"


@pytest.mark.parametrize(
    "method,path,role",
    [
        # Public: the sign-in protocol and files without patient data.
        ("GET", "/auth/", None),
        ("POST", "/auth/token", None),
        ("GET", "/ohif/", None),
        ("GET", "/ohif", None),
        ("GET", "/ohif/assets/app.js", None),
        ("GET", "/favicon.ico", None),
        ("OPTIONS", "/infer/medicosam_interactive", None),
        # Annotator: info, infer, save label, next sample, own sessions.
        ("GET", "/auth/token/valid", A),
        ("GET", "/info/", A),
        ("GET", "/info", A),
        ("POST", "/infer/medicosam_interactive", A),
        ("PUT", "/datastore/label", A),
        ("POST", "/activelearning/medicosam_uncertainty", A),
        ("PUT", "/session/", A),
        ("GET", "/session/abc", A),
        ("GET", "/datastore/image", A),
        ("GET", "/proxy/dicom/wado/studies/1.2/series/3.4", A),
        # Reviewer: scoring, approving.
        ("POST", "/scoring/medicosam_dice", R),
        ("PUT", "/datastore/label/info", R),
        # Admin: training, upload, deletion, dataset download, weights, logs.
        ("POST", "/train/medicosam_semantic", AD),
        ("POST", "/train/", AD),
        ("DELETE", "/train/", AD),
        ("PUT", "/datastore/image", AD),
        ("PUT", "/datastore/", AD),
        ("DELETE", "/datastore/image", AD),
        ("DELETE", "/datastore/label", AD),
        ("GET", "/datastore/dataset", AD),
        ("GET", "/model/medicosam_semantic", AD),
        ("GET", "/logs/", AD),
        ("POST", "/proxy/dicom/stow/studies", AD),
        ("POST", "/reload", AD),
    ],
)
def test_roles_as_the_issue_lists_them(method, path, role):
    assert required_role(method, path) is role


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/users"),  # not a route today: closed
        ("POST", "/info/"),  # a known path with another method
        ("GET", "/info/../train/"),  # dot segments are not normalised by the server either
        ("GET", "//info/"),
        ("GET", "/INFO/"),
        ("POST", "/infer/a/b"),  # a model id with a slash is no /infer/{model}
        ("GET", "/auth/token"),
        ("PATCH", "/datastore/label"),
    ],
)
def test_unknown_routes_need_admin(method, path):
    assert rule_for(method, path) is None
    assert required_role(method, path) is DEFAULT_ROLE is Role.ADMIN


def test_head_falls_back_to_get_and_has_its_own_rules():
    assert rule_for("HEAD", "/info/").method == "GET"
    assert rule_for("head", "/datastore/label").method == "HEAD"
    assert required_role("HEAD", "/datastore/dataset") is AD


def test_api_prefix():
    assert required_role("POST", "/api/v1/infer/x", api_prefix="/api/v1") is A
    assert required_role("GET", "/api/v1/auth/", api_prefix="/api/v1/") is None
    assert required_role("GET", "/infer/x", api_prefix="/api/v1") is AD  # outside the API prefix


def test_others_labels_and_sessions():
    assert may_call(A, "GET", "/datastore/label")
    assert not may_call(A, "GET", "/datastore/label", owner_is_other=True)
    assert may_call(R, "GET", "/datastore/label", owner_is_other=True)
    assert not may_call(A, "PUT", "/datastore/label", owner_is_other=True)  # overwriting another's label
    assert not may_call(R, "DELETE", "/session/s1", owner_is_other=True)
    assert may_call(AD, "DELETE", "/session/s1", owner_is_other=True)
    assert may_call(A, "POST", "/activelearning/x", owner_is_other=True)  # no owner: the plain rule
    assert not may_call(R, "POST", "/infer/x", owner_is_other=True)  # on another user's session
    assert may_call(AD, "POST", "/infer/x", owner_is_other=True)
    assert may_call(None, "POST", "/auth/token") and not may_call(None, "GET", "/info/")
    assert may_call(AD, "GET", "/anything-new") and not may_call(R, "GET", "/anything-new")


def test_markdown_table_has_a_row_per_rule():
    table = markdown_table()
    rows = table.strip().splitlines()
    assert len(rows) == 2 + len(RULES) + 1
    assert "| PUT | `/datastore/label` | annotator | reviewer |" in table
    assert rows[-1].startswith("| any other | | admin |")


def test_the_documented_table_matches_the_code():
    """docs/security.md keeps a copy of the table between markers; `python -m medicosam_app permissions` prints it.
    Markers that went missing fail the test: a moved table must be found again, not skipped."""
    text = SECURITY_DOC.read_text()
    begin, end = "<!-- permissions:begin -->", "<!-- permissions:end -->"
    assert begin in text and end in text, f"{SECURITY_DOC} lost its permission table markers"
    copy = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert copy == markdown_table().strip(), "docs/security.md's permission table differs: paste `python -m medicosam_app permissions`"


def test_the_security_core_never_imports_the_server():
    """medicosam_app never imports monailabel or fastapi (ARCHITECTURE): the CLI and notebooks use it alone."""
    import subprocess
    import sys

    code = (
        "import sys, medicosam_app.security.users, medicosam_app.security.tokens, "
        "medicosam_app.security.permissions, medicosam_app.security.audit; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('monailabel', 'fastapi', 'starlette')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result
