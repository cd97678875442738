"""The template skyctl sends to oned, as XML (oned parses XML or its own syntax; XML needs
no guessing about quoting). Pure.

oned's merge of an extra template replaces every attribute of the same name, so what is sent
is already merged with the site's template: its CONTEXT with skyctl's variables over it, its
NICs left alone unless the site names a network, its CPU ratio (CPU per VCPU) kept.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from skyctl.model import NodeSpec, RenderedContext

from skyctl_opennebula.convert import DISPLAY_ATTRS, LABEL_ATTR_PREFIX

# CONTEXT variables that need a OneGate server: oned refuses TOKEN=YES without
# ONEGATE_ENDPOINT in oned.conf (src/vm/VirtualMachineContext.cc), and READY is reported
# through OneGate. Sent only to sites that say `onegate: true`.
ONEGATE_VARIABLES = ("TOKEN", "REPORT_READY", "READY_SCRIPT", "READY_SCRIPT_PATH")


@dataclass(frozen=True)
class SiteTemplate:
    """What skyctl keeps of a site's VM template: its CONTEXT, CPU and VCPU."""

    context: Mapping[str, str] = field(default_factory=dict)
    cpu: float | None = None
    vcpu: int | None = None

    @property
    def cpu_ratio(self) -> float | None:
        """Physical CPU per virtual one (CPU=0.5 with VCPU=1: 0.5); None when CPU is unset."""
        if self.cpu is None or self.cpu <= 0:
            return None
        return self.cpu / (self.vcpu or 1)


def one_context(ctx: RenderedContext, *, onegate: bool = True) -> dict[str, str]:
    """skyctl's CONTEXT variables: the context layer's own rendering, or one built from the
    cloud-init user-data and keys when only those are given; OneGate's only when `onegate`."""
    if ctx.one_context:
        out = {str(k).upper(): str(v) for k, v in ctx.one_context.items()}
    else:
        out = {}
        if ctx.user_data or ctx.ssh_public_keys:
            out["NETWORK"] = "YES"
        if ctx.ssh_public_keys:
            out["SSH_PUBLIC_KEY"] = "\n".join(k.strip() for k in ctx.ssh_public_keys)
        if ctx.user_data:
            out["USER_DATA"] = base64.b64encode(ctx.user_data.encode("utf-8")).decode("ascii")
            out["USERDATA_ENCODING"] = "base64"
    if not onegate:
        for name in ONEGATE_VARIABLES:
            out.pop(name, None)
    return out


def merge_context(site: Mapping[str, str], ours: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The site's CONTEXT with skyctl's variables over it, and the names both set differently."""
    clashes = sorted(k for k, v in ours.items() if k in site and site[k] != v)
    return {**site, **ours}, clashes


def cpu_value(vcpus: int, ratio: float | None) -> str:
    """CPU for `vcpus` virtual CPUs at `ratio` (None: one physical CPU each), as oned reads it."""
    value = vcpus * (ratio if ratio is not None else 1.0)
    value = round(value, 2) or 0.01
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def label_attrs(labels: Mapping[str, str]) -> dict[str, str]:
    return {LABEL_ATTR_PREFIX + k.upper(): str(v) for k, v in labels.items()}


def _el(name: str, value: str | Mapping[str, str]) -> str:
    if isinstance(value, Mapping):
        return f"<{name}>" + "".join(_el(k, v) for k, v in value.items()) + f"</{name}>"
    return f"<{name}>{escape(str(value))}</{name}>"


def image_template(name: str, path: str, disk_format: str) -> str:
    """An OS image that oned's datastore driver fetches from `path` (one.image.allocate)."""
    return "<TEMPLATE>" + "".join(_el(k, v) for k, v in (("NAME", name), ("PATH", path), ("TYPE", "OS"),
                                                           ("FORMAT", disk_format))) + "</TEMPLATE>"


def vm_template(spec: NodeSpec, context: RenderedContext, *, nic: Mapping[str, str] | None,
                onegate: bool = False, site_template: SiteTemplate | None = None, cpu_ratio: float | None = None,
                name: str | None = None, image_id: str | None = None,
                disk: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """(extra template for one.template.instantiate, or with name and image_id a full one for
    one.vm.allocate; the CONTEXT variables skyctl overrode in the site's template)."""
    attrs: list[tuple[str, str | Mapping[str, str]]] = []
    if name is not None:
        attrs.append(("NAME", name))
    cpus = spec.flavor.cpus
    ratio = cpu_ratio if cpu_ratio is not None else (site_template.cpu_ratio if site_template else None)
    attrs += [("CPU", cpu_value(cpus, ratio)), ("VCPU", str(cpus)), ("MEMORY", str(spec.flavor.memory_mib))]
    if disk is not None:
        attrs.append(("DISK", dict(disk)))
    elif image_id is not None:
        attrs.append(("DISK", {"IMAGE_ID": image_id}))
    if nic:
        attrs.append(("NIC", dict(nic)))
    ctx = one_context(context, onegate=onegate)
    clashes: list[str] = []
    if site_template is not None and site_template.context:
        ctx, clashes = merge_context(site_template.context, ctx)
    if ctx:
        attrs.append(("CONTEXT", ctx))
    attrs += list(label_attrs(spec.labels).items())
    # The logical names the user asked for, so `ps` shows the same words on every cloud.
    attrs += [(k, v) for k, v in ((DISPLAY_ATTRS[0], spec.image_name), (DISPLAY_ATTRS[1], spec.size_name)) if v]
    return "<TEMPLATE>" + "".join(_el(k, v) for k, v in attrs) + "</TEMPLATE>", clashes
