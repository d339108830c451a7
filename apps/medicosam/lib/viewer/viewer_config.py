"""``/ohif/app-config.js``: OHIF's configuration, written from the server's settings on every request.

The viewer reads the PACS through this server's DICOMweb proxy (``/proxy/dicom/...``) unless ``--conf
viewer_dicomweb URL`` names a DICOMweb root the browsers reach directly (a PACS with its own sign-in and CORS).
Through the proxy, the viewer's image requests carry the same sign-in cookie as its prompts.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

EXTENSION_URL = "/ohif/medicosam/index.js"
PROXY_ROOT = "/proxy/dicom"


def data_source(dicomweb_root: Optional[str]) -> Dict[str, Any]:
    if dicomweb_root:
        qido = wado = dicomweb_root.rstrip("/")
    else:
        qido, wado = f"{PROXY_ROOT}/qido", f"{PROXY_ROOT}/wado"
    return {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": "PACS (through MedicoSAM Label)" if not dicomweb_root else "PACS",
            "name": "pacs",
            "wadoUriRoot": wado,
            "qidoRoot": qido,
            "wadoRoot": wado,
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }


def viewer_app_config(dicomweb_root: Optional[str] = None) -> str:
    config = {
        "name": "MedicoSAM Label",
        "routerBasename": "/ohif",
        "extensions": [EXTENSION_URL],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": True,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "useSharedArrayBuffer": "FALSE",  # needs cross-origin isolation headers a PACS proxy cannot promise
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "showErrorDetails": "always",
        "defaultDataSourceName": "dicomweb",
        "dataSources": [data_source(dicomweb_root)],
        "medicosam": {"server": ""},  # same origin: the server that serves the viewer
    }
    return "// Written by MedicoSAM Label from its settings; edits here are lost.\nwindow.config = " + json.dumps(
        config, indent=1
    ) + ";\n"
