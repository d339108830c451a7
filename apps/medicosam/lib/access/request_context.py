"""What the code handling a request may know about it: who is calling, its row of the route table, and what
the audit line will say.

The access-control middleware (:mod:`.access_control`) sets them for each HTTP request. Context variables
reach the endpoint, the thread-pool worker that runs it (Starlette and anyio copy the context) and the
infer tasks below it, without changing MONAI Label's function signatures. Outside a request (a training
process, the command line) :func:`current_user` is None and :func:`add_audit_details` does nothing.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Dict, Iterator, Optional

from medicosam_app.security.permissions import Rule, may_act_on_others, others_role
from medicosam_app.security.users import Role, User

_USER: ContextVar[Optional[User]] = ContextVar("medicosam_user", default=None)
_RULE: ContextVar[Optional[Rule]] = ContextVar("medicosam_route_rule", default=None)
_AUDIT_DETAILS: ContextVar[Optional[Dict[str, Any]]] = ContextVar("medicosam_audit_details", default=None)


def current_user() -> Optional[User]:
    """The signed-in user of the request being handled; None when authentication is off."""
    return _USER.get()


def current_rule() -> Optional[Rule]:
    """The route table's row for the request being handled (None outside a request, or for a route not in it)."""
    return _RULE.get()


def may_act_for_others() -> bool:
    """Whether the caller may act on a label or session another user owns, as the route's row says (``others``).
    Always true without sign-in, and outside a request (background work, the command line)."""
    user = current_user()
    return user is None or may_act_on_others(user.role, current_rule())


def role_for_others() -> Role:
    """The role :func:`may_act_for_others` asks for on this request's route, for refusal messages."""
    return others_role(current_rule())


def add_audit_details(**fields: Any) -> None:
    """Fields for the request's audit line (``image``, ``prompts``, ``model``, ``result``, ``task``, ``user``
    when authentication is off). The dict is shared by reference, so worker threads fill it in too."""
    details = _AUDIT_DETAILS.get()
    if details is not None:
        details.update({key: value for key, value in fields.items() if value is not None})


@contextlib.contextmanager
def handling_request(user: Optional[User], rule: Optional[Rule] = None) -> Iterator[Dict[str, Any]]:
    """Within: :func:`current_user` is ``user``, :func:`current_rule` is ``rule`` and :func:`add_audit_details`
    writes into the yielded dict."""
    details: Dict[str, Any] = {}
    user_token = _USER.set(user)
    rule_token = _RULE.set(rule)
    details_token = _AUDIT_DETAILS.set(details)
    try:
        yield details
    finally:
        _AUDIT_DETAILS.reset(details_token)
        _RULE.reset(rule_token)
        _USER.reset(user_token)
