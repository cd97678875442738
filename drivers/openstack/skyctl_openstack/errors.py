"""OpenStack's refusals -> skyctl's error tree: the one error mapper of this driver.

`error_for_status` maps an HTTP error answer (status and the service's message: Nova,
Keystone, Neutron, Glance) and is pure; `error_for_exception` maps what openstacksdk and
keystoneauth raise (transport, auth, discovery), importing them only when it is called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from skyctl.errors import AuthError, DriverError, InvalidRequest, NotFound, QuotaExceeded, Transient, Unsupported

QUOTA_RE = re.compile(r"Quota exceeded for (\w+): Requested (\d+), but already used (\d+) of (\d+) (\w+)")
NEUTRON_QUOTA_RE = re.compile(r"Quota exceeded for resources: \['?(\w+)")
# Nova's quotas counted per user say it without figures: "Quota exceeded, too many key pairs."
NOVA_COUNT_QUOTA_RE = re.compile(r"Quota exceeded, too many ([\w ]+?)\.?$")
# Nova's QuotaError subclasses without figures (nova/exception.py: PortLimitExceeded "Maximum
# number of ports exceeded", FloatingIpLimitExceeded, SecurityGroupLimitExceeded, ...): 403s.
NOVA_MAXIMUM_RE = re.compile(r"Maximum number of ([\w ]+?) exceeded")
# Unified limits (oslo.limit's OverLimitInfo, which Nova passes on in its 403): "Project X is
# over a limit for [Resource servers is over limit of 10 due to current usage 10 and delta 1]".
UNIFIED_LIMIT_RE = re.compile(r"Resource ([\w:.-]+) is over limit of (\d+) due to current usage (\d+) "
                              r"and delta (\d+)")
# Cinder's QuotaErrors (cinder/exception.py), 413s: VolumeLimitExceeded and
# VolumeSizeExceedsAvailableQuota.
CINDER_VOLUMES_RE = re.compile(r"Maximum number of volumes allowed \((\d+)\) exceeded for quota '(\w+)'")
CINDER_GIGABYTES_RE = re.compile(r"exceeds allowed (\w+) quota\. Requested (\d+)G, quota is (\d+)G and "
                                 r"(\d+)G has been consumed")
_UNIFIED_RESOURCES = {"servers": "instances", "class:VCPU": "cores", "class:MEMORY_MB": "ram",
                      "class:DISK_GB": "disk"}
# Nova's BootFromVolumeRequiredForZeroDiskFlavor (nova/exception.py), raised by
# nova/compute/api.py for a diskless flavor booted from an image: a 403 that is no refusal of
# the credentials.
ZERO_DISK = "Only volume-backed servers are allowed for flavors with zero disk"


def error_message(body: Any, text: str = "") -> str:
    """The one message in an OpenStack error body (Nova, Keystone, Neutron, Glance HTML)."""
    if isinstance(body, Mapping):
        for value in body.values():
            if isinstance(value, Mapping) and value.get("message"):
                return str(value["message"]).strip()
        if body.get("message"):
            return str(body["message"]).strip()
    if text:
        plain = re.sub(r"<[^>]+>", " ", text)
        plain = " ".join(plain.split())
        return plain[:300]
    return ""


_FIELD_PATTERNS = (
    (re.compile(r"Invalid input for field/attribute (\w+)"), None),
    (re.compile(r"^Flavor .* could not be found"), "flavor"),
    (re.compile(r"^Image .* could not be found"), "image"),
    (re.compile(r"key_name"), "key_name"),
    (re.compile(r"^Network .* could not be found"), "network"),
    (re.compile(r"^Security group"), "security_groups"),
    (re.compile(r"^Multiple security groups found"), "security_groups"),
    (re.compile(r"^Multiple possible networks found"), "network"),
)
# Nova's NetworkAmbiguous (nova/exception.py), a 409 when `networks` is "auto" and the project
# sees several: said with the field that settles it.
AMBIGUOUS_NETWORK = "Multiple possible networks found"


def bad_request_field(message: str) -> str | None:
    for pattern, field in _FIELD_PATTERNS:
        m = pattern.search(message)
        if m:
            return field or m.group(1)
    return None


def error_for_status(status: int, message: str, site: str, *, what: str = "",
                     service: str | None = None) -> DriverError:
    """Map an HTTP error answer to skyctl's error tree. Only Keystone (`service` "identity",
    or unknown) refuses credentials with a 403; Nova's and Neutron's 403s are quotas or
    requests the cloud will not serve, with its message."""
    where = f"{what}: " if what else ""
    m = QUOTA_RE.search(message)
    if m and status in (403, 413):
        resource, requested, used, limit = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        return QuotaExceeded(m.group(0), site=site, resource=resource, requested=requested, used=used,
                             limit=limit)
    m = NOVA_COUNT_QUOTA_RE.search(message)
    if m and status in (403, 413):
        return QuotaExceeded(f"{where}{message}", site=site, resource=m.group(1).replace(" ", "_"))
    m = NEUTRON_QUOTA_RE.search(message)
    if m and status == 409:
        return QuotaExceeded(f"{where}{message}", site=site, resource=m.group(1), requested=1)
    m = NOVA_MAXIMUM_RE.search(message)
    if m and status in (403, 413):
        return QuotaExceeded(f"{where}{message}", site=site, resource=m.group(1).replace(" ", "_"))
    m = CINDER_VOLUMES_RE.search(message)
    if m and status in (403, 413):
        return QuotaExceeded(f"{where}{message}", site=site, resource="volumes", requested=1, limit=int(m.group(1)))
    m = CINDER_GIGABYTES_RE.search(message)
    if m and status in (403, 413):
        return QuotaExceeded(f"{where}{message}", site=site, resource=m.group(1), requested=int(m.group(2)),
                             limit=int(m.group(3)), used=int(m.group(4)))
    m = UNIFIED_LIMIT_RE.search(message)
    if m and status in (403, 413):
        limit, used, delta = int(m.group(2)), int(m.group(3)), int(m.group(4))
        return QuotaExceeded(f"{where}{message}", site=site, resource=_UNIFIED_RESOURCES.get(m.group(1), m.group(1)),
                             requested=delta, used=used, limit=limit)
    text = message or f"HTTP {status}"
    if status == 401:
        return AuthError(f"{where}the cloud refused the credentials ({text})", site=site)
    if status == 403 and service not in (None, "identity"):
        field = "flavor" if ZERO_DISK in text else bad_request_field(text)
        return InvalidRequest(f"{where}{text}", site=site, field=field)
    if status == 403:
        return AuthError(f"{where}not allowed: {text}", site=site)
    if status == 404:
        return NotFound(f"{where}{text}", site=site)
    if status == 409 and AMBIGUOUS_NETWORK in text:
        return InvalidRequest(f"{where}the project sees several networks ({text}); set the site's network "
                              f"field to one of them", site=site, field="network")
    if status in (400, 409, 422):
        return InvalidRequest(f"{where}{text}", site=site, field=bad_request_field(text))
    if status in (408, 413, 429) or status >= 500:
        return Transient(f"{where}HTTP {status}: {text}", site=site)
    return InvalidRequest(f"{where}HTTP {status}: {text}", site=site)


def one_line(e: BaseException) -> str:
    """An exception's text on one line, bounded (never empty)."""
    return " ".join(str(e).split())[:300] or type(e).__name__


def error_for_exception(e: Exception, site: str, *, what: str) -> DriverError | None:
    """Map an openstacksdk/keystoneauth/requests failure; None for anything else (a bug: the
    caller re-raises it as it is)."""
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc
    import requests

    # The order is the order of precedence (keystoneauth's and openstacksdk's classes nest).
    if isinstance(e, ks_exc.Unauthorized):
        return AuthError(f"{what}: the cloud refused the credentials", site=site)
    if isinstance(e, ks_exc.HttpError):
        status = getattr(e, "http_status", None) or 500
        return error_for_status(int(status), one_line(e), site, what=what)
    if isinstance(e, (ks_exc.ConnectTimeout, ks_exc.ConnectFailure, ks_exc.RetriableConnectionFailure,
                      ks_exc.UnknownConnectionError, ks_exc.DiscoveryFailure, requests.RequestException)):
        return Transient(f"{what}: {type(e).__name__}: {one_line(e)}", site=site)
    if isinstance(e, ks_exc.EndpointNotFound):
        return Unsupported(f"{what}: {one_line(e)}", site=site)
    if isinstance(e, (ks_exc.MissingRequiredOptions, ks_exc.AuthorizationFailure, ks_exc.MissingAuthPlugin)):
        return AuthError(f"{what}: {one_line(e)}", site=site)
    if isinstance(e, os_exc.HttpException):
        return error_for_status(int(e.status_code or 500), one_line(e.details or e), site, what=what)
    if isinstance(e, os_exc.NotSupported):
        # Version discovery that got no usable answer (often a 5xx from an overloaded API).
        return Transient(f"{what}: {one_line(e)}", site=site)
    if isinstance(e, os_exc.SDKException):
        return InvalidRequest(f"{what}: {one_line(e)}", site=site)
    if isinstance(e, ks_exc.ClientException):
        return Transient(f"{what}: {type(e).__name__}: {one_line(e)}", site=site)
    return None
