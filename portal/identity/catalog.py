"""The service catalog: every service of DESIGN.md's URL table, for both token APIs.

Astakos (v2.0, what kamaki reads): one entry per service with ``publicURL`` =
``base/prefix/version``, or ``base/prefix`` where the version is not exposed (kamaki then
appends it); ``astakos_account`` must carry ``SNF:uiURL``.  Keystone v3 (what OpenStack
clients read): ``type`` and public endpoints with ``url``, ``region`` and ``region_id``.
"""

from __future__ import annotations

from typing import Any

REGION = "default"

#: (Astakos name, type, URL prefix, version, version exposed in the Astakos publicURL)
ASTAKOS_SERVICES = [
    ("astakos_identity", "identity", "identity", "v2.0", True),
    ("astakos_account", "account", "account", "v1.0", True),
    ("cyclades_compute", "compute", "compute", "v2.0", True),
    ("cyclades_network", "network", "network", "v2.0", False),
    ("cyclades_plankton", "image", "image", "v1.0", False),
    ("cyclades_volume", "volume", "volume", "v2.0", False),
    ("pithos_object-store", "object-store", "object-store", "v1", True),
]


def astakos_catalog(base_url: str) -> list[dict[str, Any]]:
    base = base_url.rstrip("/")
    out = []
    for name, kind, prefix, version, exposed in ASTAKOS_SERVICES:
        url = f"{base}/{prefix}/{version}" if exposed else f"{base}/{prefix}"
        endpoint = {"versionId": version, "publicURL": url, "SNF:exposeVersion": exposed,
                    "SNF:uiURL": f"{base}/ui/", "region": REGION}  # fmt: skip
        out.append({"name": name, "type": kind, "endpoints_links": [], "endpoints": [endpoint]})
    return out


def keystone_catalog(base_url: str, account: str) -> list[dict[str, Any]]:
    base = base_url.rstrip("/")
    services = [
        ("keystone", "identity", f"{base}/identity/v3"),
        ("nova", "compute", f"{base}/compute/v2.1"),
        ("neutron", "network", f"{base}/network"),
        ("glance", "image", f"{base}/image"),
        ("cinderv3", "block-storage", f"{base}/volume/v3"),
        ("cinderv3", "volumev3", f"{base}/volume/v3"),
        ("swift", "object-store", f"{base}/object-store/v1/{account}"),
        ("astakos", "account", f"{base}/account/v1.0"),
    ]
    return [
        {
            "id": f"{kind}-svc",
            "name": name,
            "type": kind,
            "endpoints": [
                {
                    "id": f"{kind}-public",
                    "interface": "public",
                    "region": REGION,
                    "region_id": REGION,
                    "url": url,
                }
            ],
        }
        for name, kind, url in services
    ]
