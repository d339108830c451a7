"""Who may use the server: sign-in and roles when a users file is configured, the audit trail always, CORS
limited to this server's own pages when signed in, and a loud warning for a server open to the network with
nobody signed in."""

from __future__ import annotations

import logging
from typing import Any

from monailabel.config import settings

from medicosam_app.security.audit import AuditLog
from medicosam_app.settings import Settings

from .access_control import SiteAccess, install_access_control
from ..http.network import is_loopback
from ..http.shutdown import serving_host
from .sign_in import add_sign_in_routes

logger = logging.getLogger(__name__)


def lock_down(fastapi_app: Any, ours: Settings, audit: AuditLog) -> SiteAccess:
    """Install access control on ``fastapi_app``; returns the site's access rules. MONAI Label's own Keycloak
    sign-in, when enabled, wins over a users file."""
    users_file = ours.users_file
    if users_file is not None and settings.MONAI_LABEL_AUTH_ENABLE:
        logger.warning("MONAI_LABEL_AUTH_ENABLE is set: MONAI Label's Keycloak sign-in is used, not %s", users_file)
        users_file = None
    access = SiteAccess(users_file, audit, api_prefix=settings.MONAI_LABEL_API_STR, token_lifetime_s=ours.token_lifetime_s)
    origins = ours.cors_origins
    if origins is None and access.enabled and not settings.MONAI_LABEL_CORS_ORIGINS:
        origins = ()  # signed-in browsers call from this server's own pages (OHIF) only
    if access.enabled:
        add_sign_in_routes(fastapi_app, access)
    install_access_control(fastapi_app, access, origins)
    host = serving_host()
    if not (access.enabled or settings.MONAI_LABEL_AUTH_ENABLE) and host is not None and not is_loopback(host):
        logger.warning(
            "\n*** MedicoSAM Label listens on %s without sign-in: anyone who can reach this port can read every "
            "image, save and delete labels, upload images and start training. Add users (python -m medicosam_app "
            "users add NAME --role admin) and start with --conf users_file PATH, or listen on 127.0.0.1 only "
            "(--host 127.0.0.1). ***", host,
        )
    return access
