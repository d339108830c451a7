"""The route table: one row per route MONAI Label 0.8.5 serves, and ours, saying who may call it and what the
server does around it.

Each :class:`Rule` has the columns the server is driven by: the role a caller needs (the access middleware), the
role needed to act on another user's label or session (ownership, decided with :func:`may_act_on_others`), the
audit event it leaves (the audit trail), the request check run before MONAI Label's endpoint (``guard``: a name
the app resolves to its check), whether it runs in the thread pool (``heavy``) and whether its body may hold
files (``uploads``: the body-size limit). The permission table in
``docs/security.md`` is printed from it (``python -m medicosam_app permissions``). A route added here and
nowhere else is guarded, audited and served as its row says.

Roles are ordered (:class:`~medicosam_app.security.users.Role`): a role may call everything the roles below
it may. A route missing from the table needs **admin** (closed by default): a route added by a new MONAI
Label release or by us stays shut until someone decides who may use it and writes it here.

Some routes act on something that belongs to one user: a label (saved by its annotator) or a session
(created by one client). For those the table gives a second role, ``others``, needed when the resource is
another user's; the caller (the server wiring) knows the owner and makes that check, since a path alone
cannot tell whose label it names.

Paths are matched as the server sees them, relative to ``MONAI_LABEL_API_STR`` (empty by default; pass it
as ``api_prefix``), with the same route templates FastAPI uses, so a path meets the rule of the route that
will answer it. A trailing ``/`` is optional, as FastAPI redirects between the two. ``HEAD`` falls back to
the ``GET`` rule where no ``HEAD`` rule exists.

Usage by the server (the wiring)::

    rule = rule_for(request.method, request.url.path)      # None → not in the table: admin
    needed = required_role(request.method, request.url.path)
    if needed is not None and (user is None or user.role < needed): 401 / 403
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Pattern, Sequence, Tuple

from .users import Role

PUBLIC: Optional[Role] = None  # a rule's role for routes anyone may call, signed in or not
DEFAULT_ROLE = Role.ADMIN  # for routes the table does not know
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


def route_pattern(template: str) -> Pattern[str]:
    """A regular expression matching the paths FastAPI routes to ``template`` (``{x}``: one segment,
    ``{x:path}``: the rest, slashes included), with the trailing ``/`` optional."""
    parts, position = [], 0
    for match in _PARAMETER.finditer(template):
        literal = template[position:match.start()]
        if match.group(2) and literal.endswith("/"):
            # "/ohif/{path:path}" also covers "/ohif", which FastAPI redirects to "/ohif/".
            parts.append(re.escape(literal[:-1]) + "(?:/.*)?")
        else:
            parts.append(re.escape(literal) + (".*" if match.group(2) else "[^/]+"))
        position = match.end()
    tail = template[position:]
    parts.append(re.escape(tail.removesuffix("/")))
    return re.compile("".join(parts) + "/?")


@dataclass(frozen=True)
class Rule:
    """One route and what the server does around it.

    Args:
        method: the HTTP method.
        route: the FastAPI route template (``{x}`` one path segment, ``{x:path}`` the rest).
        role: the least role that may call it; None: anyone, signed in or not.
        what: what it does, for the permission table.
        others: the role needed when the label or session it acts on belongs to another user (None: it acts
            on nothing that has an owner).
        loopback: callers on this machine need no sign-in (a Prometheus scraper beside the server).
        audit: the event of the audit line every call leaves, whatever its answer (None: only refusals do).
        guard: the name of the request check run before the endpoint (None: MONAI Label's endpoint as is).
        heavy: the endpoint computes or writes while the client waits, so it runs in the thread pool.
        uploads: it takes image or label files, so its body may reach the server's ``session_max_mb`` (every
            other route's body is bounded small: options, forms, prompts).
    """

    method: str
    route: str
    role: Optional[Role]
    what: str
    others: Optional[Role] = None
    loopback: bool = False
    audit: Optional[str] = None
    guard: Optional[str] = None
    heavy: bool = False
    uploads: bool = False
    _regex: Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", route_pattern(self.route))

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self._regex.fullmatch(path) is not None


A, R, AD = Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN

# In the order FastAPI tries the routes where two templates overlap (the stow/wado/qido proxies before
# the catch-all /proxy/dicom/{path:path}), so a path gets the rule of the route that will serve it.
RULES: Tuple[Rule, ...] = (
    # Sign-in (MONAI Label's auth protocol, REFERENCE §9) and assets without patient data.
    Rule("GET", "/auth/", PUBLIC, "is sign-in required? (clients ask before signing in)"),
    Rule("POST", "/auth/token", PUBLIC, "sign in: user name and password for a token", audit="sign_in"),
    Rule("GET", "/auth/token/valid", A, "is my token still valid?"),
    Rule("GET", "/auth/signin", PUBLIC, "the sign-in page for browsers (OHIF): sets an HttpOnly cookie"),
    Rule("POST", "/auth/signin", PUBLIC, "sign in from that page", audit="sign_in"),
    Rule("POST", "/auth/signout", PUBLIC, "sign out (removes the cookie)"),
    Rule("OPTIONS", "/{path:path}", PUBLIC, "CORS preflight (browsers send no credentials with it)"),
    Rule("GET", "/favicon.ico", PUBLIC, "icon"),
    Rule("GET", "/static/{path:path}", PUBLIC, "MONAI Label's static files (API page assets)"),
    Rule("GET", "/ohif/{path:path}", PUBLIC, "the OHIF viewer's code and pages (images come via /proxy)"),
    Rule("GET", "/healthz", PUBLIC, "is the process alive? (load balancers, systemd; says nothing else)"),
    Rule("GET", "/readyz", PUBLIC, "can it serve? model, datastore or PACS, disk (names of failed checks only)"),
    Rule("GET", "/metrics", AD, "Prometheus metrics (also open to callers on this machine)", loopback=True),
    Rule("GET", "/", A, "API documentation page"),
    Rule("GET", "/docs", A, "API documentation (ReDoc)"),
    Rule("GET", "/openapi.json", A, "API description"),
    # Annotating.
    Rule("GET", "/info/", A, "app info: models, labels, strategies"),
    Rule("POST", "/infer/{model}", A, "inference (clicks, boxes, automatic; another user's session: admin)",
         others=AD, audit="infer", guard="infer", heavy=True, uploads=True),
    Rule("POST", "/infer/wsi/{model}", A, "whole-slide inference (deprecated route)", uploads=True),
    Rule("POST", "/infer/wsi_v2/{model}", A, "whole-slide inference", uploads=True),
    Rule("POST", "/activelearning/{strategy}", A, "next sample", audit="next_sample", guard="strategy", heavy=True),
    Rule("GET", "/datastore/", A, "list images and labels"),
    Rule("HEAD", "/datastore/image", A, "does an image exist?"),
    Rule("GET", "/datastore/image", A, "download an image", audit="image_download"),
    Rule("GET", "/datastore/image/info", A, "image info", guard="image_info_read"),
Rule("PUT", "/datastore/label", A, "save a label (another user's label: reviewer)",
         others=R, audit="label_save", guard="label_save", heavy=True, uploads=True),
    Rule("HEAD", "/datastore/label", A, "does a label exist?"),
Rule("GET", "/datastore/label", A, "download a label (another user's: reviewer)",
         others=R, audit="label_download", guard="label_read"),
    Rule("GET", "/datastore/label/info", A, "label info (another user's: reviewer)", others=R, guard="label_read"),
    Rule("PUT", "/session/", A, "upload an image as a session",
         audit="session", guard="session_upload", heavy=True, uploads=True),
Rule("GET", "/session/{session_id}", A, "a session (another user's: admin)",
         others=AD, guard="session_read", heavy=True),
Rule("DELETE", "/session/{session_id}", A, "remove a session (another user's: admin)",
         others=AD, audit="session_delete", guard="session_id"),
    Rule("GET", "/train/", A, "training status"),
    Rule("GET", "/scoring/", A, "scoring status"),
    Rule("GET", "/batch/infer", A, "batch inference status"),
    Rule("GET", "/proxy/dicom/wado/{path:path}", A, "PACS images (WADO) for the viewer"),
    Rule("GET", "/proxy/dicom/qido/{path:path}", A, "PACS search (QIDO) for the viewer"),
    # Reviewing.
Rule("POST", "/scoring/", R, "run all scoring methods (deprecated route)",
         audit="scoring", guard="all_scoring", heavy=True),
    Rule("POST", "/scoring/{method}", R, "run a scoring method", audit="scoring", guard="scoring", heavy=True),
    Rule("DELETE", "/scoring/", R, "stop scoring"),
    Rule("PUT", "/datastore/label/info", R, "change label info (approve)", audit="label_info", guard="info_json"),
Rule("PUT", "/datastore/updatelabelinfo", R, "change label info (deprecated route)",
         audit="label_info", guard="params_json"),
    # Administering.
    Rule("POST", "/train/", AD, "train all models (deprecated route)", audit="train", guard="all_training", heavy=True),
    Rule("POST", "/train/{model}", AD, "train a model", audit="train", guard="training", heavy=True),
    Rule("DELETE", "/train/", AD, "stop training", audit="train_stop"),
    Rule("POST", "/batch/infer/{model}", AD, "batch inference over the datastore", guard="batch_infer", heavy=True),
    Rule("DELETE", "/batch/infer", AD, "stop batch inference"),
Rule("PUT", "/datastore/", AD, "upload an image (deprecated route)",
         audit="image_upload", guard="image_upload", heavy=True, uploads=True),
    Rule("PUT", "/datastore/image", AD, "upload an image",
         audit="image_upload", guard="image_upload", heavy=True, uploads=True),
    Rule("PUT", "/datastore/image/info", AD, "change image info", guard="info_json"),
    Rule("DELETE", "/datastore/", AD, "delete an image and its labels (deprecated route)", audit="delete"),
    Rule("DELETE", "/datastore/image", AD, "delete an image and its labels", audit="delete"),
    Rule("DELETE", "/datastore/label", AD, "delete a label", audit="delete", guard="label_delete"),
    Rule("GET", "/datastore/dataset", AD, "download the whole dataset (ZIP)", audit="dataset_download"),
    Rule("GET", "/model/info/{model}", AD, "model file checksum and details"),
    Rule("GET", "/model/{model}", AD, "download model weights"),
    Rule("PUT", "/model/{model}", AD, "replace model weights", uploads=True),
    Rule("DELETE", "/model/{model}", AD, "delete model weights"),
    Rule("GET", "/logs/", AD, "server log"),
    Rule("GET", "/logs/gpu", AD, "GPU status (nvidia-smi)"),
    Rule("POST", "/reload", AD, "reload the app"),
    Rule("GET", "/proxy/dicom/stow/{path:path}", AD, "PACS store (STOW) proxy"),
    Rule("POST", "/proxy/dicom/stow/{path:path}", AD, "PACS store (STOW): upload images", uploads=True),
    Rule("POST", "/proxy/dicom/wado/{path:path}", AD, "PACS proxy, POST"),
    Rule("POST", "/proxy/dicom/qido/{path:path}", AD, "PACS proxy, POST"),
    Rule("GET", "/proxy/dicom/{path:path}", A, "PACS proxy, other reads"),
    Rule("POST", "/proxy/dicom/{path:path}", AD, "PACS proxy, other writes"),
)


def _relative(path: str, api_prefix: str) -> Optional[str]:
    prefix = api_prefix.rstrip("/")
    if not prefix:
        return path
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix):] or "/"
    return None  # outside the API: only the table's own routes, nothing under another prefix


def rule_for(method: str, path: str, api_prefix: str = "", rules: Optional[Sequence[Rule]] = None) -> Optional[Rule]:
    """The rule of ``rules`` (default :data:`RULES`) for ``method`` on the URL path ``path`` (as the server received
    it, decoded, without the query), or None when the table has none (then :data:`DEFAULT_ROLE` applies)."""
    method = method.upper()
    relative = _relative(path, api_prefix)
    if relative is None:
        return None
    for candidate in (method, "GET") if method == "HEAD" else (method,):
        for rule in RULES if rules is None else rules:
            if rule.matches(candidate, relative):
                return rule
    return None


def required_role(method: str, path: str, api_prefix: str = "") -> Optional[Role]:
    """The least role that may call ``method`` on ``path``; None means anyone, signed in or not.
    Unknown routes need :data:`DEFAULT_ROLE` (admin)."""
    rule = rule_for(method, path, api_prefix)
    return DEFAULT_ROLE if rule is None else rule.role


def may_call(
    role: Optional[Role], method: str, path: str, owner_is_other: bool = False, api_prefix: str = "",
    from_loopback: bool = False,
) -> bool:
    """Whether a caller with ``role`` (None: not signed in) may call ``method`` on ``path``;
    ``owner_is_other``: the label or session it acts on belongs to another user; ``from_loopback``: the caller
    is on this machine."""
    rule = rule_for(method, path, api_prefix)
    if from_loopback and rule is not None and rule.loopback:
        return True
    needed = DEFAULT_ROLE if rule is None else rule.role
    if owner_is_other and rule is not None and rule.others is not None:
        needed = rule.others
    return needed is None or (role is not None and role >= needed)


def may_act_on_others(role: Optional[Role], rule: Optional[Rule]) -> bool:
    """Whether a caller with ``role`` may act on another user's label or session through ``rule``'s route (the
    ``others`` column; a route whose row names no such role, or one outside the table, needs admin)."""
    needed = rule.others if rule is not None and rule.others is not None else DEFAULT_ROLE
    return role is not None and role >= needed


def others_role(rule: Optional[Rule]) -> Role:
    """The role :func:`may_act_on_others` asks for on ``rule``'s route."""
    return rule.others if rule is not None and rule.others is not None else DEFAULT_ROLE


def routes_with(column: str, rules: Optional[Sequence[Rule]] = None) -> Tuple[Rule, ...]:
    """The rules of ``rules`` (default :data:`RULES`) whose ``column`` (``audit``, ``guard``, ``heavy``) is set."""
    return tuple(rule for rule in (RULES if rules is None else rules) if getattr(rule, column))


def _role_text(role: Optional[Role], loopback: bool = False) -> str:
    text = "public" if role is None else role.label
    return f"{text} (or this machine)" if loopback else text


def markdown_table() -> str:
    """The table as Markdown, one row per rule, for README (a test keeps README's copy equal to it)."""
    lines = [
        "| method | route | role | another user's label / session | audit event | what |",
        "|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        others = _role_text(rule.others) if rule.others is not None else "–"
        lines.append(
            f"| {rule.method} | `{rule.route}` | {_role_text(rule.role, rule.loopback)} | {others} "
            f"| {rule.audit or '–'} | {rule.what} |"
        )
    lines.append(f"| any other | | {DEFAULT_ROLE.label} | – | – | routes not in this table are closed by default |")
    return "\n".join(lines) + "\n"
