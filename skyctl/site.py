"""One site's configuration: the part of the federation file a driver sees.

Below both `config` (which validates the whole file) and `drivers` (which are built from one
site), so neither imports the other. No I/O, no SDK.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyctl.model import Tier

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshConfig(Strict):
    user: str | None = None          # login user; default from the context (cloud-user...)
    port: int = Field(22, ge=1, le=65535)
    jump_host: str | None = None     # bastion, "user@host[:port]"
    # OpenStack: attach a floating IP to every node (true), never (false), or where the node's
    # network is not reachable: not external, and a router joins it to an external one (auto).
    floating_ip: bool | Literal["auto"] = "auto"
    # OpenStack: who may reach SSH; skyctl makes (once per site) a security group allowing it
    # and attaches it to every node. null: make none (the site's own groups must allow SSH).
    cidr: str | None = "0.0.0.0/0"
    # OpenStack: which address of a dual-stack node SSH uses: ipv4 or ipv6 first; auto: a
    # floating IP first, then IPv4, then IPv6 (clients without IPv6 are the common case).
    address_family: Literal["auto", "ipv4", "ipv6"] = "auto"
    # `launch --wait` also waits for SSH login and the context (cloud-init status); turn it
    # off for nodes this machine cannot reach.
    check_ready: bool = True
    # Seconds an SSH connection may take (TCP, handshake, login), and a readiness probe's
    # command; none: 10 s. Guests under software emulation on a busy host need minutes.
    connect_timeout: float | None = Field(None, gt=0)


    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError("must be an address range such as 0.0.0.0/0 or 192.0.2.0/24") from None


class SiteConfig(BaseModel):
    """One site. Fields below are common; the rest belong to its driver (options_model)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = ""
    driver: str
    tier: Tier = Tier.REMOTE
    cost: float = Field(0.0, ge=0)
    max_parallel: int = Field(8, ge=1, le=256, description="concurrent creates/deletes on this site")
    request_timeout: float = Field(30.0, gt=0, description="seconds per API request")
    ready_timeout: float = Field(600.0, gt=0, description="seconds a node may take to become ready")
    ssh: SshConfig = SshConfig()
    # Energy, price and carbon: checked by skyctl.policy.energy when the file loads (config.py).
    timezone: Any = None
    pue: Any = None
    watts_per_vcpu: Any = None
    price: Any = None
    carbon: Any = None
    # Filled after validation with the driver's own options model instance.
    options: Any = None

    @field_validator("driver")
    @classmethod
    def _driver_name(cls, v: str) -> str:
        if not re.fullmatch(r"^[a-z][a-z0-9_-]*$", v):
            raise ValueError("must be a driver name such as openstack or opennebula")
        return v

    def driver_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
