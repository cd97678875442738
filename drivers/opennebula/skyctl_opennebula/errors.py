"""OpenNebula's refusals -> skyctl's error tree: the one error mapper of this driver.

`error_for_code` maps oned's error replies and is pure: oned answers `[false, message, code,
...]`; the message is kept (it never holds the session). `error_for_exception` maps what the
wire raises (requests, xmlrpc.client, pyone), importing them only when it is called.
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


# oned's own words for refusals a site's configuration explains (source file in oned's tree).
NO_ONEGATE = "onegate endpoint was not defined"          # src/vm/VirtualMachineContext.cc
NOT_OWNER_RE = re.compile(r"User (?P<uid>\d+) does not own an? (?P<what>network|image) with name: (?P<name>.*?) \. "
                          r"Set (?P<attr>NETWORK|IMAGE)_UNAME")   # src/vnm/VirtualNetworkPool.cc, src/image/ImageManager.cc
WRONG_STATE = "wrong state"                              # src/dm/DispatchManagerActions.cc ("Could not terminate VM")
NOT_AVAILABLE_FOR_STATE = "This action is not available for state"   # src/rm/RequestManagerVirtualMachine.cc
# A template oned cannot parse comes back as INTERNAL: no retry will parse it.
PARSE_ERROR_RE = re.compile(r"syntax error|parse error|error parsing", re.IGNORECASE)


def error_for_code(code: int, message: str, *, site: str) -> DriverError:
    message = (message or "").strip() or f"OpenNebula error 0x{code:04x}"
    if NO_ONEGATE in message:
        return _with_hint(InvalidRequest(message, site=site, field="onegate"),
                          f"this site has no OneGate: set `onegate: false` in sites.{site} (skyctl then sends no "
                          "TOKEN/REPORT_READY and waits on SSH)")
    m = NOT_OWNER_RE.search(message)
    if m:
        field_ = "network" if m.group("what") == "network" else "image"
        return _with_hint(InvalidRequest(message, site=site, field=field_),
                          f"name the owner in sites.{site}.{field_}: {{name: {m.group('name')}, owner: oneadmin}} "
                          "(or its id)")
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
    if code == INTERNAL and PARSE_ERROR_RE.search(message):
        return InvalidRequest(message, site=site)
    if code in (INTERNAL, LOCKED):
        return Transient(message, site=site)
    # ACTION (wrong state), API (bad arguments), ALLOCATE (template rejected), anything else
    return InvalidRequest(message, site=site)


def _with_hint(err: DriverError, hint: str) -> DriverError:
    err.hint = hint
    return err


def error_for_exception(e: Exception, call: str, *, endpoint: str, timeout: float, site: str) -> DriverError | None:
    """Map a failure of the XML-RPC request `call` to `endpoint` (the public form, no secret);
    None for anything else (a bug: the caller re-raises it as it is)."""
    import xml.parsers.expat
    import xmlrpc.client

    import pyone
    import requests

    # The order is the order of precedence (Timeout and ConnectionError are RequestExceptions).
    if isinstance(e, requests.exceptions.SSLError):
        # an untrusted certificate stays untrusted: no retry helps
        return _with_hint(InvalidRequest(f"{call}: TLS with {endpoint} failed: certificate not trusted or "
                                         "handshake refused", site=site, field="ca_bundle"),
                          f"set ca_bundle: in sites.{site} to the PEM file of the site's CA")
    if isinstance(e, requests.Timeout):
        return Transient(f"{call}: no answer from {endpoint} within {timeout:g}s", site=site)
    if isinstance(e, requests.ConnectionError):
        return Transient(f"{call}: cannot reach {endpoint} (connection refused or dropped)", site=site)
    if isinstance(e, requests.RequestException):
        return Transient(f"{call}: HTTP error talking to {endpoint}: {e.__class__.__name__}", site=site)
    if isinstance(e, xmlrpc.client.ProtocolError):
        if e.errcode in (401, 403):
            return AuthError(f"{call}: {endpoint} answered HTTP {e.errcode}", site=site)
        if e.errcode >= 500 or e.errcode in (408, 429):
            return Transient(f"{call}: {endpoint} answered HTTP {e.errcode}", site=site)
        return InvalidRequest(f"{call}: {endpoint} answered HTTP {e.errcode} "
                              "(is this an OpenNebula XML-RPC endpoint?)", site=site)
    if isinstance(e, (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError)):
        return Transient(f"{call}: malformed XML-RPC reply from {endpoint}", site=site)
    if isinstance(e, pyone.OneException):
        # an XML-RPC fault (unknown method, wrong argument types): not retryable
        return InvalidRequest(f"{call}: {e}", site=site)
    return None
