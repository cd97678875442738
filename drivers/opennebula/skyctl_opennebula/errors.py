"""oned error replies -> skyctl's error tree. Pure: a code and oned's message in, an error out.

oned answers `[false, message, code, ...]`; the message is kept (it never holds the session).
"""

from __future__ import annotations

import re

from skyctl.errors import (AuthError, DriverError, InvalidRequest, NotFound, QuotaExceeded, Transient)

AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000
LOCKED = 0x8000

# "... user [5] limit of 2 reached for VMS quota in VM." (group quotas say "group [gid]",
# per-cluster quotas append " with ID: <ids>")
QUOTA_RE = re.compile(r"limit of (?P<limit>-?\d+(?:\.\d+)?) reached for (?P<metric>[A-Z_]+) quota in (?P<kind>\w+)")

# oned quota metric -> the Capacity line it limits
QUOTA_RESOURCES = {
    "VMS": "instances", "RUNNING_VMS": "instances",
    "CPU": "cores", "RUNNING_CPU": "cores",
    "MEMORY": "ram_mib", "RUNNING_MEMORY": "ram_mib",
    "SYSTEM_DISK_SIZE": "disk_mib", "SIZE": "datastore_mib", "IMAGES": "images", "LEASES": "leases",
    "RVMS": "image_vms",
}


def map_error(code: int, message: str, *, site: str) -> DriverError:
    message = (message or "").strip() or f"OpenNebula error 0x{code:04x}"
    if code == AUTHORIZATION:
        m = QUOTA_RE.search(message)
        if m:
            metric = m.group("metric")
            limit = float(m.group("limit"))
            return QuotaExceeded(message, site=site, resource=QUOTA_RESOURCES.get(metric, metric.lower()),
                                 limit=int(limit))
        return AuthError(message, site=site)
    if code == AUTHENTICATION:
        return AuthError(message, site=site)
    if code == NO_EXISTS:
        return NotFound(message, site=site)
    if code in (INTERNAL, LOCKED):
        return Transient(message, site=site)
    # ACTION (wrong state), API (bad arguments), ALLOCATE (template rejected), anything else
    return InvalidRequest(message, site=site)
