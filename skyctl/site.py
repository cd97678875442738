"""One site's configuration: the part of the federation file a driver sees.

Below both `config` (which validates the whole file) and `drivers` (which are built from one
site), so neither imports the other. No I/O, no SDK.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyctl.model import Tier

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshConfig(Strict):
    user: str | None = None          # login user; default from the context (cloud-user...)
    port: int = Field(22, ge=1, le=65535)
    jump_host: str | None = None     # bastion, "user@host[:port]"
    floating_ip: bool = False        # OpenStack: allocate and attach one per node
    # `launch --wait` also waits for SSH login and the context (cloud-init status); turn it
    # off for nodes this machine cannot reach.
    check_ready: bool = True


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
